#include <gtest/gtest.h>

#include "splitcore/protocol.hpp"
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
