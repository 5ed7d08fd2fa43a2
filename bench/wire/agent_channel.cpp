// The agent through the C++ client channel: os.getcwd() as one `call`, ping (answered by the
// supervisor alone), and 64 MiB read()/write() through a remote file object in ≈1 MiB raw frames.
#include "agent_channel.hpp"

#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <splitcore/channel.hpp>
#include <splitcore/keys.hpp>
#include <splitcore/protocol.hpp>

#include "figures.hpp"

namespace splitbench
{
    namespace
    {
        using nlohmann::json;

        void keep_buffer(void*, void*) {}

        std::string random_session()
        {
            std::random_device rd;
            std::string s(16, '\0');
            for (char& c : s)
            {
                c = static_cast<char>(rd() & 0xff);
            }
            return s;
        }

        std::string hex(const std::string& raw)
        {
            static const char digits[] = "0123456789abcdef";
            std::string out;
            for (unsigned char c : raw)
            {
                out += digits[c >> 4];
                out += digits[c & 15];
            }
            return out;
        }

        class client
        {
        public:

            explicit client(splitcore::channel_options options) : m_channel(std::move(options)) {}

            // Sends one request and waits for its reply; a failure reply throws with the agent's message.
            splitcore::message request(json header, std::vector<zmq::message_t> frames = {})
            {
                const std::uint64_t id = m_channel.send(std::move(header), std::move(frames));
                const auto until = splitcore::channel_clock::now() + std::chrono::seconds(60);
                std::vector<splitcore::message> events;
                for (;;)
                {
                    std::optional<splitcore::message> reply = m_channel.wait(id, until, events);
                    if (reply)
                    {
                        if (!reply->header.value("ok", false))
                        {
                            throw std::runtime_error("agent: " + reply->header.value("e", json::object()).dump());
                        }
                        return std::move(*reply);
                    }
                    events.clear();
                    if (splitcore::channel_clock::now() >= until)
                    {
                        throw std::runtime_error("agent: no reply within 60 s");
                    }
                }
            }

            json result(json header, std::vector<zmq::message_t> frames = {})
            {
                return request(std::move(header), std::move(frames)).header.at("r");
            }

            void close() { m_channel.close(); }

        private:

            splitcore::channel m_channel;
        };

        json call(const json& object, std::vector<std::string> path, json args)
        {
            return {{"op", "call"}, {"o", {{"$r", object.at("$r")}}}, {"path", path}, {"a", std::move(args)},
                    {"k", {{"$d", json::array()}}}};
        }

        std::uint64_t frames_bytes(const splitcore::message& reply)
        {
            std::uint64_t n = 0;
            for (std::size_t i = 1; i < reply.frames.size(); ++i)
            {
                n += reply.frames[i].size();
            }
            return n;
        }
    }

    void run_agent(const agent_options& options)
    {
        splitcore::channel_options channel;
        channel.name = "bench";
        channel.address = options.address;
        if (!options.server_key.empty())
        {
            channel.server_key = options.server_key;
            const auto keys = splitcore::key_pair::load(options.client_key_dir);
            channel.public_key = keys.public_key;
            channel.secret_key = keys.secret_key;
        }
        channel.session = random_session();
        client agent(channel);
        const std::string label = options.label;

        (void)agent.result({{"op", "hello"}, {"session", hex(channel.session)}});
        const json os = agent.result({{"op", "import"}, {"name", "os"}}).at("mod");
        const json builtins = agent.result({{"op", "import"}, {"name", "builtins"}}).at("mod");

        const json ping = {{"op", "ping"}};
        const json getcwd = call(os, {"getcwd"}, json::array());
        for (int i = 0; i < options.rtt_reps / 10 + 1; ++i)
        {
            (void)agent.result(getcwd);
            (void)agent.result(ping);
        }
        samples rtt;
        samples pings;
        for (int i = 0; i < options.rtt_reps; ++i)
        {
            auto start = bench_clock::now();
            (void)agent.result(getcwd);
            rtt.add(seconds_since(start));
            start = bench_clock::now();
            (void)agent.result(ping);
            pings.add(seconds_since(start));
        }
        report(label + ".rtt", rtt);
        report(label + ".ping", pings);

        const json reader = agent.result(call(builtins, {"open"}, {options.read_path, "rb"}));
        const json writer = agent.result(call(builtins, {"open"}, {options.write_path, "wb"}));
        const json read = call(reader, {"read"}, json::array());
        const json rewind = call(reader, {"seek"}, {0});
        const json restart = call(writer, {"seek"}, {0});
        const json truncate = call(writer, {"truncate"}, json::array());
        const std::vector<char> buffer(options.bulk_bytes, 'z');
        const std::size_t nframes = (options.bulk_bytes + options.chunk_bytes - 1) / options.chunk_bytes;
        const json write = call(writer, {"write"},
                                {{{"$F", {1, nframes, options.bulk_bytes}}}});

        samples reads;
        samples writes;
        for (int i = 0; i < options.bulk_reps + 1; ++i)
        {
            (void)agent.result(rewind);
            auto start = bench_clock::now();
            const splitcore::message got = agent.request(read);
            const double read_s = seconds_since(start);
            if (frames_bytes(got) != options.bulk_bytes)
            {
                throw std::runtime_error("agent read(): expected " + std::to_string(options.bulk_bytes)
                                         + " bytes in raw frames, got " + std::to_string(frames_bytes(got))
                                         + "; header " + got.header.dump().substr(0, 200));
            }

            (void)agent.result(restart);
            (void)agent.result(truncate);
            std::vector<zmq::message_t> frames;
            for (std::size_t f = 0; f < nframes; ++f)
            {
                const std::size_t offset = f * options.chunk_bytes;
                const std::size_t n = std::min(options.chunk_bytes, options.bulk_bytes - offset);
                frames.emplace_back(const_cast<char*>(buffer.data()) + offset, n, keep_buffer);
            }
            start = bench_clock::now();
            const json written = agent.result(write, std::move(frames));
            const double write_s = seconds_since(start);
            if (written != options.bulk_bytes)
            {
                throw std::runtime_error("agent write(): returned " + written.dump());
            }
            if (i > 0)  // the first lap pays for page faults in fresh buffers and files
            {
                reads.add(read_s);
                writes.add(write_s);
            }
        }
        report(label + ".read_64MiB", reads, options.bulk_bytes);
        report(label + ".write_64MiB", writes, options.bulk_bytes);

        (void)agent.result(call(reader, {"close"}, json::array()));
        (void)agent.result(call(writer, {"close"}, json::array()));
        (void)agent.result({{"op", "bye"}});
        agent.close();
    }
}
