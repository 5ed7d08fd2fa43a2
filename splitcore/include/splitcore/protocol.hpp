// The vocabulary of the splitbrain wire protocol (docs/protocol.md): operation names, error codes,
// the protocol_error exception, the CBOR header codec and multipart framing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

namespace splitcore {

using json = nlohmann::json;

inline constexpr int protocol_version = 1;

// A header frame larger than this is refused with [splitbrain.bad_request].
inline constexpr std::size_t max_header_size = 1 << 20;
// Nesting deeper than this in a header is refused before parsing (the CBOR parser recurses).
inline constexpr std::size_t max_header_depth = 256;
// bytes values at least this long travel as raw frames, never inside CBOR.
inline constexpr std::size_t frame_threshold = 64 * 1024;
// A value whose CBOR would be larger than this travels CBOR-encoded in a raw frame of its own
// ({"$H": index}), so that headers stay small whatever the data.
inline constexpr std::size_t spill_threshold = 256 * 1024;

namespace op {
inline constexpr std::string_view hello = "hello";
inline constexpr std::string_view ping = "ping";
inline constexpr std::string_view import_ = "import";
inline constexpr std::string_view getattr = "getattr";
inline constexpr std::string_view setattr = "setattr";
inline constexpr std::string_view delattr = "delattr";
inline constexpr std::string_view call = "call";
inline constexpr std::string_view getitem = "getitem";
inline constexpr std::string_view setitem = "setitem";
inline constexpr std::string_view delitem = "delitem";
inline constexpr std::string_view len = "len";
inline constexpr std::string_view bool_ = "bool";
inline constexpr std::string_view hash = "hash";
inline constexpr std::string_view repr = "repr";
inline constexpr std::string_view str = "str";
inline constexpr std::string_view dir = "dir";
inline constexpr std::string_view cmp = "cmp";
inline constexpr std::string_view iter = "iter";
inline constexpr std::string_view next = "next";
inline constexpr std::string_view enter = "enter";
inline constexpr std::string_view exit = "exit";
inline constexpr std::string_view release = "release";
inline constexpr std::string_view cancel = "cancel";
inline constexpr std::string_view stats = "stats";
inline constexpr std::string_view bye = "bye";

// Every operation of docs/protocol.md, in the order of its table.
inline constexpr std::string_view all[] = {
    hello, ping, import_, getattr, setattr, delattr, call, getitem, setitem, delitem, len, bool_,
    hash, repr, str, dir, cmp, iter, next, enter, exit, release, cancel, stats, bye};

[[nodiscard]] bool is_known(std::string_view name) noexcept;
}  // namespace op

// Stable error codes; a message carrying one starts with "[splitbrain.<code>]".
namespace code {
inline constexpr std::string_view bad_request = "bad_request";
inline constexpr std::string_view unknown_op = "unknown_op";
inline constexpr std::string_view bad_object = "bad_object";
inline constexpr std::string_view no_session = "no_session";
inline constexpr std::string_view session_lost = "session_lost";
inline constexpr std::string_view not_running = "not_running";
inline constexpr std::string_view agent_unreachable = "agent_unreachable";
}  // namespace code

// A violation of the protocol by a peer. what() is "[splitbrain.<code>] <detail>".
class protocol_error : public std::runtime_error {
public:
    protocol_error(std::string_view code, const std::string& detail);
    [[nodiscard]] const std::string& code() const noexcept { return m_code; }

private:
    std::string m_code;
};

// "[splitbrain.<code>] <detail>"
[[nodiscard]] std::string tagged_message(std::string_view code, std::string_view detail);

// The ERROR map of a protocol-level failure: type "splitbrain.ProtocolError", msg, code.
[[nodiscard]] json protocol_error_value(const protocol_error& e);
[[nodiscard]] json protocol_error_value(std::string_view code, std::string_view detail);

// Reply headers. A request whose id cannot be read is answered with id 0.
[[nodiscard]] json ok_reply(std::uint64_t id, json result);
[[nodiscard]] json error_reply(std::uint64_t id, json error);
[[nodiscard]] json output_event(int fd, const char* data, std::size_t size);

// CBOR header codec. decode_header throws protocol_error{bad_request} for an oversized frame,
// malformed or too deeply nested CBOR, or a value that is not a map.
[[nodiscard]] zmq::message_t encode_header(const json& header);
// limit: requests are held to max_header_size; a client may accept larger replies.
[[nodiscard]] json decode_header(const void* data, std::size_t size, std::size_t limit = max_header_size);
[[nodiscard]] json decode_header(const zmq::message_t& frame, std::size_t limit = max_header_size);

// Maximum nesting depth of one CBOR item, or nullopt if the bytes are not one well-formed CBOR
// item (truncated, reserved additional info, trailing bytes). Never recurses.
[[nodiscard]] std::optional<std::size_t> cbor_depth(const std::uint8_t* data, std::size_t size);

// A non-negative integer, however CBOR or a literal typed it; nullopt for anything else.
[[nodiscard]] std::optional<std::uint64_t> as_uint(const json& value) noexcept;

// Typed access to request fields; a missing or wrong-typed field throws protocol_error{bad_request}
// naming the field.
[[nodiscard]] std::uint64_t request_id(const json& header);  // uint > 0
[[nodiscard]] const std::string& string_field(const json& header, const char* name);
[[nodiscard]] std::uint64_t uint_field(const json& header, const char* name);
[[nodiscard]] const json& field(const json& header, const char* name);  // present, any type
[[nodiscard]] const json* optional_field(const json& header, const char* name);  // null if absent

// A whole message: the header plus raw frames 1..n.
struct message {
    json header;
    std::vector<zmq::message_t> frames;
};

// Sends header + frames as one multipart message (frames are consumed).
void send_message(zmq::socket_ref socket, const json& header, std::vector<zmq::message_t> frames = {});
// Same, preceded by an envelope frame (a ROUTER routing id).
void send_message(zmq::socket_ref socket, const zmq::message_t& routing_id, const json& header,
                  std::vector<zmq::message_t> frames = {});

// Same, but never blocks: false (nothing sent, frames untouched) if the socket cannot take the
// message now, e.g. a DEALER whose only peer refused the CURVE handshake.
[[nodiscard]] bool try_send_message(zmq::socket_ref socket, const json& header, std::vector<zmq::message_t>& frames);

// Receives every part of one multipart message; empty optional if it would block.
// Interrupted system calls are retried.
[[nodiscard]] std::optional<std::vector<zmq::message_t>> recv_parts(
    zmq::socket_ref socket, zmq::recv_flags flags = zmq::recv_flags::none);

}  // namespace splitcore
