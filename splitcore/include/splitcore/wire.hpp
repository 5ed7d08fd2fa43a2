// The wire: the CBOR header codec, typed access to header fields, and multipart framing over
// ZeroMQ sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "splitcore/errors.hpp"

namespace splitcore {

using json = nlohmann::json;

// A header frame larger than this is refused with the bad_request id.
inline constexpr std::size_t max_header_size = 1 << 20;
// Nesting deeper than this in a header is refused before parsing (the CBOR parser recurses).
inline constexpr std::size_t max_header_depth = 256;
// bytes values at least this long travel as raw frames, never inside CBOR.
inline constexpr std::size_t frame_threshold = 64 * 1024;
// ... in frames of at most this size. CurveZMQ encrypts and decrypts each frame whole, so a 1 MiB
// value in one frame made the sender's IO thread encrypt all of it before the receiver's could
// decrypt any; in frames of 256 KiB the receiver decrypts one while the sender encrypts the next,
// on the other core (bench/face/README.md, "W5 by cost").
inline constexpr std::size_t bulk_frame_size = 256 * 1024;
// str and bytes values at least this long travel as raw frames too ({"$F"}, a str as {"$u": {"$F"}}),
// except inside an ERROR (which never has frames) where frame_threshold holds: the CBOR reader copies
// a string into the header byte by byte (≈ 7 ns a byte, 30 µs for 4 KiB), a frame costs a few µs
// whatever its size (issue 11 point 3: the 4 KiB of a write() and of a read()).
inline constexpr std::size_t inline_threshold = 1024;
// A value whose CBOR would be larger than this travels CBOR-encoded in a raw frame of its own
// ({"$H": index}), so that headers stay small whatever the data.
inline constexpr std::size_t spill_threshold = 256 * 1024;

// CBOR header codec. decode_header throws error{errc::bad_request} for an oversized frame,
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

// Typed access to request fields; a missing or wrong-typed field throws error{errc::bad_request}
// naming the field.
[[nodiscard]] std::uint64_t request_id(const json& header);  // uint > 0
[[nodiscard]] const std::string& string_field(const json& header, const char* name);
[[nodiscard]] std::uint64_t uint_field(const json& header, const char* name);
[[nodiscard]] const json& field(const json& header, const char* name);           // present, any type
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

// Sends parts as one multipart message, as they are (an envelope, a header, raw frames): how a
// received message is passed on. The parts are consumed. Interrupted system calls are retried.
void send_parts(zmq::socket_ref socket, std::vector<zmq::message_t>& parts);

// Receives every part of one multipart message; empty optional if it would block.
// Interrupted system calls are retried.
[[nodiscard]] std::optional<std::vector<zmq::message_t>> recv_parts(zmq::socket_ref socket,
                                                                    zmq::recv_flags flags = zmq::recv_flags::none);

}  // namespace splitcore
