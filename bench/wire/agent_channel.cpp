#include "agent_channel.hpp"

#include <chrono>
#include <optional>
#include <random>
#include <stdexcept>

#include <splitcore/channel.hpp>
#include <splitcore/keys.hpp>
#include <splitcore/protocol.hpp>

namespace splitbench {
namespace {
using nlohmann::json;

void keep_buffer(void*, void*) {}

// 32 hex digits, as splitbrain's own client chooses its token.
std::string random_session() {
    static const char digits[] = "0123456789abcdef";
    std::random_device rd;
    std::string s(32, '\0');
    for (char& c : s) {
        c = digits[rd() & 15];
    }
    return s;
}

splitcore::channel_options channel_options(const agent_options& options) {
    splitcore::channel_options channel;
    channel.name = options.label;
    channel.address = options.address;
    if (!options.server_key.empty()) {
        channel.server_key = options.server_key;
        const auto keys = splitcore::key_pair::load(options.client_key_dir);
        channel.public_key = keys.public_key;
        channel.secret_key = keys.secret_key;
    }
    channel.session = random_session();
    return channel;
}

json call(const json& object, std::vector<std::string> path, json args) {
    return {{"op", "call"},
            {"o", {{"$r", object.at("$r")}}},
            {"path", path},
            {"a", std::move(args)},
            {"k", {{"$d", json::array()}}}};
}

std::uint64_t frames_bytes(const splitcore::message& reply) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < reply.frames.size(); ++i) {
        n += reply.frames[i].size();
    }
    return n;
}
}  // namespace

struct agent_peer::session {
    explicit session(splitcore::channel_options options) : channel(std::move(options)) {}

    // Sends one request and waits for its reply; a failure reply throws with the agent's error.
    splitcore::message request(json header, std::vector<zmq::message_t> frames = {}) {
        const std::uint64_t id = channel.send(std::move(header), std::move(frames));
        const auto until = splitcore::channel_clock::now() + std::chrono::seconds(60);
        std::vector<splitcore::message> events;
        for (;;) {
            std::optional<splitcore::message> reply = channel.wait(id, until, events);
            if (reply) {
                if (!reply->header.value("ok", false)) {
                    throw std::runtime_error(channel.options().name + ": " +
                                             reply->header.value("e", json::object()).dump());
                }
                return std::move(*reply);
            }
            events.clear();
            if (splitcore::channel_clock::now() >= until) {
                throw std::runtime_error(channel.options().name + ": no reply within 60 s");
            }
        }
    }

    json result(json header, std::vector<zmq::message_t> frames = {}) {
        return request(std::move(header), std::move(frames)).header.at("r");
    }

    splitcore::channel channel;
    json os;
    json reader;
    json writer;
    std::vector<char> buffer;
};

agent_peer::agent_peer(agent_options options)
    : m_options(std::move(options)), m_session(std::make_unique<session>(channel_options(m_options))) {
    session& s = *m_session;
    (void)s.result({{"op", "hello"}, {"session", s.channel.options().session}, {"direct", true}});
    s.os = s.result({{"op", "import"}, {"name", "os"}}).at("mod");
    const json builtins = s.result({{"op", "import"}, {"name", "builtins"}}).at("mod");
    s.reader = s.result(call(builtins, {"open"}, {m_options.read_path, "rb"}));
    s.writer = s.result(call(builtins, {"open"}, {m_options.write_path, "wb"}));
    s.buffer.assign(m_options.bulk_bytes, 'z');
}

agent_peer::~agent_peer() {
    try {
        session& s = *m_session;
        (void)s.result(call(s.reader, {"close"}, json::array()));
        (void)s.result(call(s.writer, {"close"}, json::array()));
        (void)s.result({{"op", "bye"}});
        s.channel.close();
    } catch (const std::exception&) {
    }
}

std::vector<workload> agent_peer::workloads() {
    session& s = *m_session;
    const std::string& label = m_options.label;
    const std::size_t bulk = m_options.bulk_bytes;
    const std::size_t chunk = m_options.chunk_bytes;
    const std::size_t nframes = (bulk + chunk - 1) / chunk;

    const json getcwd = call(s.os, {"getcwd"}, json::array());
    const json ping = {{"op", "ping"}};
    const json read = call(s.reader, {"read"}, json::array());
    const json rewind = call(s.reader, {"seek"}, {0});
    const json write = call(s.writer, {"write"}, {{{"$F", {0, nframes, bulk}}}});
    const json restart = call(s.writer, {"seek"}, {0});
    const json truncate = call(s.writer, {"truncate"}, json::array());

    std::vector<workload> all;
    all.push_back({label + ".rtt", 0, [&s, getcwd] { (void)s.result(getcwd); }, {}});
    all.push_back({label + ".ping", 0, [&s, ping] { (void)s.result(ping); }, {}});
    all.push_back({label + ".read_64MiB", bulk,
                   [&s, read, bulk] {
                       const splitcore::message got = s.request(read);
                       if (frames_bytes(got) != bulk) {
                           throw std::runtime_error("read(): expected " + std::to_string(bulk) +
                                                    " bytes in raw frames, got " + std::to_string(frames_bytes(got)) +
                                                    "; header " + got.header.dump().substr(0, 200));
                       }
                   },
                   [&s, rewind] { (void)s.result(rewind); }});
    all.push_back({label + ".write_64MiB", bulk,
                   [&s, write, bulk, chunk, nframes] {
                       std::vector<zmq::message_t> frames;
                       for (std::size_t f = 0; f < nframes; ++f) {
                           const std::size_t n = std::min(chunk, bulk - f * chunk);
                           frames.emplace_back(s.buffer.data() + f * chunk, n, keep_buffer);
                       }
                       const json written = s.result(write, std::move(frames));
                       if (written != bulk) {
                           throw std::runtime_error("write(): returned " + written.dump());
                       }
                   },
                   [&s, restart, truncate] {
                       (void)s.result(restart);
                       (void)s.result(truncate);
                   }});
    return all;
}
}  // namespace splitbench
