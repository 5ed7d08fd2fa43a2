#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <thread>

#include "splitcore/protocol.hpp"
#include "splitcore/socket_watch.hpp"
#include "splitcore/wire.hpp"

using splitcore::json;

namespace {
std::string code_of(const std::function<void()>& action) {
    try {
        action();
    } catch (const splitcore::error& e) {
        return std::string(splitcore::name(e.code()));
    }
    return "no error";
}

json decode_bytes(const std::vector<std::uint8_t>& bytes) {
    return splitcore::decode_header(bytes.data(), bytes.size());
}

// In a child (EXPECT_EXIT): decodes with the address space held to what the process has plus
// 256 MiB, and exits 0 for a bad_request, 3 for std::bad_alloc, 1 for another error, 2 for none.
[[noreturn]] void decode_within_a_memory_limit(const std::vector<std::uint8_t>& cbor) {
    long pages = 0;
    if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(statm, "%ld", &pages) != 1) pages = 0;
        std::fclose(statm);
    }
    const rlim_t room = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (256u << 20);
    const rlimit limit{room, room};
    if (pages == 0 || ::setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(4);
    try {
        (void)decode_bytes(cbor);
    } catch (const splitcore::error& e) {
        std::_Exit(e.code() == splitcore::errc::bad_request ? 0 : 1);
    } catch (const std::bad_alloc&) {
        std::_Exit(3);
    }
    std::_Exit(2);
}
}  // namespace

TEST(protocol, header_round_trips_through_cbor) {
    const json header = {{"id", 7}, {"op", "call"}, {"a", {1, "two", nullptr}}, {"d", json::binary({1, 2, 3})}};
    EXPECT_EQ(splitcore::decode_header(splitcore::encode_header(header)), header);
}

TEST(protocol, a_header_that_is_not_a_map_is_a_bad_request) {
    EXPECT_EQ(code_of([] { (void)decode_bytes(json::to_cbor(json::array({1, 2}))); }), "bad_request");
    EXPECT_EQ(code_of([] { (void)decode_bytes(json::to_cbor(42)); }), "bad_request");
}

TEST(protocol, malformed_cbor_is_a_bad_request) {
    EXPECT_EQ(code_of([] { (void)decode_bytes({}); }), "bad_request");
    EXPECT_EQ(code_of([] { (void)decode_bytes({0xa1, 0x61}); }), "bad_request");        // truncated
    EXPECT_EQ(code_of([] { (void)decode_bytes({0xa0, 0x00}); }), "bad_request");        // trailing byte
    EXPECT_EQ(code_of([] { (void)decode_bytes({0xbf, 0x61, 0x61}); }), "bad_request");  // no break
    EXPECT_EQ(code_of([] { (void)decode_bytes({0x1c}); }), "bad_request");              // reserved
    EXPECT_EQ(code_of([] { (void)decode_bytes({0xa1, 0x01, 0x02}); }), "bad_request");  // int key
    EXPECT_EQ(code_of([] { (void)decode_bytes({0xc1, 0xa0}); }), "bad_request");        // tag
    EXPECT_EQ(code_of([] {
                  (void)decode_bytes({0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
              }),
              "bad_request");  // a length beyond the frame
}

TEST(protocol, deep_nesting_is_refused_before_the_recursive_parser_sees_it) {
    std::vector<std::uint8_t> deep(500000, 0x81);  // [[[[...
    deep.push_back(0x00);
    EXPECT_EQ(splitcore::cbor_depth(deep.data(), deep.size()).value(), 500000u);
    EXPECT_EQ(code_of([&] { (void)decode_bytes(deep); }), "bad_request");
    std::vector<std::uint8_t> tags(500000, 0xc6);
    tags.push_back(0x00);
    EXPECT_EQ(code_of([&] { (void)decode_bytes(tags); }), "bad_request");
}

TEST(protocol, cbor_depth_measures_definite_and_indefinite_containers) {
    const auto definite = json::to_cbor(json{{"a", {1, {2, 3}}}});
    EXPECT_EQ(splitcore::cbor_depth(definite.data(), definite.size()).value(), 3u);
    const std::vector<std::uint8_t> indefinite = {0xbf, 0x61, 0x61, 0x9f, 0x01, 0xff, 0xff};
    EXPECT_EQ(splitcore::cbor_depth(indefinite.data(), indefinite.size()).value(), 2u);
    const std::vector<std::uint8_t> scalar = {0x18, 0x64};
    EXPECT_EQ(splitcore::cbor_depth(scalar.data(), scalar.size()).value(), 0u);
}

namespace {
// What decode_header did before its own reader (issue 11 point 2): cbor_depth, then nlohmann's from_cbor.
std::optional<json> reference_decode(const std::vector<std::uint8_t>& bytes) {
    const auto depth = splitcore::cbor_depth(bytes.data(), bytes.size());
    if (!depth || *depth > splitcore::max_header_depth) return std::nullopt;
    try {
        json header = json::from_cbor(bytes.begin(), bytes.end());
        if (!header.is_object()) return std::nullopt;
        return header;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

std::optional<json> our_decode(const std::vector<std::uint8_t>& bytes) {
    try {
        return decode_bytes(bytes);
    } catch (const splitcore::error& e) {
        EXPECT_EQ(e.code(), splitcore::errc::bad_request);
        return std::nullopt;
    }
}

json random_value(std::mt19937& random, int depth) {
    const int kind = static_cast<int>(random() % (depth > 4 ? 8 : 11));
    switch (kind) {
        case 0:
            return nullptr;
        case 1:
            return random() % 2 == 0;
        case 2:
            return static_cast<std::uint64_t>(random()) << (random() % 40);
        case 3:
            return -static_cast<std::int64_t>(random() % 100000) - 1;
        case 4:
            return static_cast<double>(random()) / 7.0;
        case 5:
            return std::string(random() % 40, static_cast<char>('a' + random() % 26));
        case 6:
            return json::binary(std::vector<std::uint8_t>(random() % 30, static_cast<std::uint8_t>(random())));
        case 7:
            return std::string(random() % 300, 'x');
        case 8:
        case 9: {
            json object = json::object();
            for (unsigned i = random() % 5; i > 0; --i)
                object[std::string(1, static_cast<char>('a' + random() % 6))] = random_value(random, depth + 1);
            return object;
        }
        default: {
            json array = json::array();
            for (unsigned i = random() % 5; i > 0; --i) array.push_back(random_value(random, depth + 1));
            return array;
        }
    }
}

void expect_same_decoding(const std::vector<std::uint8_t>& bytes) {
    const std::optional<json> expected = reference_decode(bytes);
    const std::optional<json> got = our_decode(bytes);
    ASSERT_EQ(expected.has_value(), got.has_value()) << json::binary(bytes).dump();
    if (expected) {
        EXPECT_EQ(json::to_cbor(*expected), json::to_cbor(*got)) << json::binary(bytes).dump();
    }
}
}  // namespace

TEST(protocol, the_header_reader_decodes_what_nlohmann_from_cbor_decodes_and_refuses_the_rest) {
    // CBOR nlohmann's encoder never writes: chunked strings, indefinite containers, half and single
    // floats, a repeated key, simple values, tags, non-text keys.
    const std::vector<std::vector<std::uint8_t>> crafted = {
        {0xa1, 0x61, 0x61, 0x7f, 0x62, 0x68, 0x69, 0x61, 0x21, 0xff},        // {"a": "hi" "!"}
        {0xa1, 0x61, 0x62, 0x5f, 0x42, 0x01, 0x02, 0x41, 0x03, 0xff},        // {"b": h'01 02' h'03'}
        {0xbf, 0x61, 0x61, 0x9f, 0x01, 0x02, 0xff, 0x61, 0x62, 0xf6, 0xff},  // {_ "a": [_ 1, 2], "b": null}
        {0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02},                          // {"a": 1, "a": 2}
        {0xa3, 0x61, 0x68, 0xf9, 0x3c, 0x00, 0x61, 0x69, 0xf9, 0x7c, 0x00, 0x61, 0x6a, 0xfa, 0x3f, 0xc0, 0x00, 0x00},
        {0xa1, 0x61, 0x6e, 0xf9, 0x00, 0x01},                                      // a subnormal half
        {0xa1, 0x61, 0x6e, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},  // the most negative
        {0xa1, 0x61, 0x61, 0xf7},
        {0xa1, 0x61, 0x61, 0xf8, 0x20},
        {0xa1, 0x61, 0x61, 0xe0},  // simple values
        {0xa1, 0x61, 0x61, 0xc1, 0x00},
        {0xa1, 0x41, 0x61, 0x00},
        {0xa1, 0x01, 0x00},                          // tag, byte key, int key
        {0xa1, 0x61, 0x61, 0x7f, 0x41, 0x61, 0xff},  // a byte chunk in a text string
        {0xa1, 0x61, 0x61, 0x80},
        {0xa1, 0x61, 0x61, 0xa0},
        {0xa0},
        {0xbf, 0xff},
        {0xa1, 0x61, 0x61, 0xff},
        {0xa1, 0x61, 0x61, 0xfc},
        {0xa1, 0x61},
    };
    for (const auto& bytes : crafted) expect_same_decoding(bytes);
    // Nesting at the limit and one past it.
    for (const std::size_t levels : {splitcore::max_header_depth - 1, splitcore::max_header_depth}) {
        std::vector<std::uint8_t> deep = {0xa1, 0x61, 0x61};
        deep.insert(deep.end(), levels, 0x81);
        deep.push_back(0x00);
        expect_same_decoding(deep);
    }
    // Random headers, and the same cut short and with bytes changed.
    std::mt19937 random(11);
    for (int round = 0; round < 3000; ++round) {
        json header = json::object();
        for (unsigned i = random() % 6; i > 0; --i)
            header[std::string(1, static_cast<char>('a' + i))] = random_value(random, 0);
        const std::vector<std::uint8_t> bytes = json::to_cbor(header);
        expect_same_decoding(bytes);
        std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<long>(random() % bytes.size()));
        expect_same_decoding(cut);
        std::vector<std::uint8_t> changed = bytes;
        for (unsigned i = 1 + random() % 3; i > 0; --i)
            changed[random() % changed.size()] = static_cast<std::uint8_t>(random());
        expect_same_decoding(changed);
    }
}

TEST(protocol, counts_declared_at_every_level_reserve_no_memory_ahead_of_their_items) {
    // 200 nested arrays each declaring 983,040 items (each count is within the bytes left), padded to
    // the size limit: malformed, and refused as such, without first reserving 16 MiB per level (3 GiB
    // in all), which a memory limit would turn into std::bad_alloc.
    std::vector<std::uint8_t> cbor = {0xa1, 0x61, 'a'};  // {"a": [[[...
    for (int level = 0; level < 200; ++level) cbor.insert(cbor.end(), {0x9a, 0x00, 0x0f, 0x00, 0x00});
    cbor.resize(splitcore::max_header_size, 0x00);
    EXPECT_EXIT(decode_within_a_memory_limit(cbor), ::testing::ExitedWithCode(0), "");
}

TEST(protocol, an_oversized_header_is_a_bad_request) {
    std::vector<std::uint8_t> big(splitcore::max_header_size + 1, 0);
    EXPECT_EQ(code_of([&] { (void)decode_bytes(big); }), "bad_request");
}

TEST(protocol, fields_are_checked_by_type_and_named_in_the_error) {
    const json header = {{"id", 3}, {"op", "getattr"}, {"name", 5}};
    EXPECT_EQ(splitcore::request_id(header), 3u);
    EXPECT_EQ(splitcore::string_field(header, "op"), "getattr");
    try {
        (void)splitcore::string_field(header, "name");
        FAIL() << "a number was accepted as a string";
    } catch (const splitcore::error& e) {
        EXPECT_STREQ(e.what(), "[splitbrain.bad_request] field \"name\" must be a string");
    }
    EXPECT_EQ(code_of([] { (void)splitcore::request_id(json{{"id", 0}}); }), "bad_request");
    EXPECT_EQ(code_of([] { (void)splitcore::request_id(json{{"id", -1}}); }), "bad_request");
    EXPECT_EQ(code_of([] { (void)splitcore::request_id(json{{"id", "1"}}); }), "bad_request");
    EXPECT_EQ(code_of([] { (void)splitcore::field(json::object(), "o"); }), "bad_request");
}

TEST(protocol, every_operation_of_the_spec_is_known) {
    for (const char* name :
         {"hello",   "ping",  "import", "getattr", "setattr", "delattr", "call", "getitem", "setitem",
          "delitem", "len",   "bool",   "hash",    "repr",    "str",     "dir",  "cmp",     "iter",
          "next",    "enter", "exit",   "release", "cancel",  "stats",   "bye"}) {
        EXPECT_TRUE(splitcore::op::is_known(name)) << name;
    }
    EXPECT_FALSE(splitcore::op::is_known("exec"));
}

TEST(protocol, protocol_errors_carry_the_stable_id_in_msg_and_code) {
    const json value = splitcore::error_value(splitcore::error(splitcore::errc::unknown_op, "no op \"x\""));
    EXPECT_EQ(value["type"], "splitbrain.ProtocolError");
    EXPECT_EQ(value["msg"], "[splitbrain.unknown_op] no op \"x\"");
    EXPECT_EQ(value["code"], "unknown_op");  // one spelling: the wire says what Python compares
    const json reply = splitcore::error_reply(9, value);
    EXPECT_EQ(reply["id"], 9);
    EXPECT_EQ(reply["ok"], false);
}

TEST(protocol, multipart_messages_keep_header_and_frames_in_order) {
    zmq::context_t context;
    zmq::socket_t server(context, zmq::socket_type::pair);
    zmq::socket_t client(context, zmq::socket_type::pair);
    server.bind("inproc://framing");
    client.connect("inproc://framing");
    std::vector<zmq::message_t> frames;
    frames.emplace_back(std::string("first"));
    frames.emplace_back(std::string("second"));
    splitcore::send_message(client, json{{"id", 1}, {"op", "ping"}}, std::move(frames));
    auto parts = splitcore::recv_parts(server);
    ASSERT_TRUE(parts);
    ASSERT_EQ(parts->size(), 3u);
    EXPECT_EQ(splitcore::decode_header((*parts)[0])["op"], "ping");
    EXPECT_EQ((*parts)[1].to_string(), "first");
    EXPECT_EQ((*parts)[2].to_string(), "second");
    EXPECT_FALSE(splitcore::recv_parts(server, zmq::recv_flags::dontwait));
}

TEST(protocol, try_send_message_never_blocks_without_a_peer) {
    zmq::context_t context;
    zmq::socket_t lonely(context, zmq::socket_type::dealer);
    std::vector<zmq::message_t> frames;
    frames.emplace_back(std::string("kept"));
    EXPECT_FALSE(splitcore::try_send_message(lonely, json{{"id", 1}, {"op", "ping"}}, frames));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].to_string(), "kept");

    zmq::socket_t peer(context, zmq::socket_type::dealer);
    peer.bind("inproc://try-send");
    lonely.connect("inproc://try-send");
    EXPECT_TRUE(splitcore::try_send_message(lonely, json{{"id", 2}, {"op", "ping"}}, frames));
    EXPECT_TRUE(frames.empty());
    auto parts = splitcore::recv_parts(peer);
    ASSERT_TRUE(parts);
    EXPECT_EQ(parts->size(), 2u);
}

// socket_watch.hpp: one poll(2) per wait. Over TCP, as the channel's and the worker's sockets are:
// a message that comes after the socket was drained wakes the wait; one that came while the socket
// was being used (a send, a receive that got one) is found by asking it, though its descriptor may
// not signal again.
TEST(protocol, poll_watched_finds_every_message_whatever_was_done_with_the_socket_before) {
    zmq::context_t context;
    zmq::socket_t server(context, zmq::socket_type::router);
    server.bind("tcp://127.0.0.1:*");
    zmq::socket_t client(context, zmq::socket_type::dealer);
    client.connect(server.get(zmq::sockopt::last_endpoint));
    splitcore::socket_watch watch(client);
    splitcore::socket_watch* watched[] = {&watch};
    bool ready[1] = {};
    auto wait_and_read = [&](long timeout_ms) -> int {
        int got = 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (got == 0 && std::chrono::steady_clock::now() < until) {
            if (!splitcore::poll_watched(watched, 1, ready, nullptr, 0, timeout_ms) || !ready[0]) continue;
            while (auto parts = splitcore::recv_parts(client, zmq::recv_flags::dontwait)) ++got;
            watch.drained();
        }
        return got;
    };
    auto echo = [&](int count) {  // the server answers `count` messages after the client's next one
        auto request = splitcore::recv_parts(server);
        ASSERT_TRUE(request);
        for (int i = 0; i < count; ++i) {
            std::vector<zmq::message_t> reply;
            reply.emplace_back();
            reply.back().copy((*request)[0]);
            reply.emplace_back(std::string("reply"));
            splitcore::send_parts(server, reply);
        }
    };
    // Nothing to read: the wait times out, and leaves the socket drained.
    EXPECT_FALSE(splitcore::poll_watched(watched, 1, ready, nullptr, 0, 20));
    EXPECT_TRUE(watch.is_drained());
    for (int round = 0; round < 50; ++round) {
        watch.used();  // a send: what the socket holds is unknown after it
        splitcore::send_message(client, json{{"id", round + 1}});
        echo(1 + round % 3);
        if (round % 2 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // replies there before the wait
        int got = 0;
        while (got < 1 + round % 3) {
            const int now = wait_and_read(5000);
            ASSERT_GT(now, 0) << "round " << round;
            got += now;
        }
        EXPECT_EQ(got, 1 + round % 3);
    }
    // A plain descriptor wakes it too, and says so in its revents.
    int pipe_ends[2];
    ASSERT_EQ(::pipe(pipe_ends), 0);
    ASSERT_EQ(::write(pipe_ends[1], "x", 1), 1);
    pollfd extra{pipe_ends[0], POLLIN, 0};
    EXPECT_TRUE(splitcore::poll_watched(watched, 1, ready, &extra, 1, 1000));
    EXPECT_TRUE(extra.revents & POLLIN);
    EXPECT_FALSE(ready[0]);
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
}
