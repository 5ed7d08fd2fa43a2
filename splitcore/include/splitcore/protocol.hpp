// The vocabulary of the splitbrain wire protocol (docs/protocol.md): the operations and the
// messages a peer sends (replies, error values, output events). The errors are in errors.hpp, the
// CBOR codec and the framing in wire.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "splitcore/errors.hpp"

namespace splitcore {

using json = nlohmann::json;

inline constexpr int protocol_version = 1;

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

// The ERROR map of a failure with an id: type "splitbrain.ProtocolError", msg, args, code (the
// id's bare name, as Python spells it).
[[nodiscard]] json error_value(const error& e);
[[nodiscard]] json error_value(errc code, std::string_view detail);

// Reply headers. A request whose id cannot be read is answered with id 0.
[[nodiscard]] json ok_reply(std::uint64_t id, json result);
[[nodiscard]] json error_reply(std::uint64_t id, json error);
[[nodiscard]] json output_event(int fd, const char* data, std::size_t size);

}  // namespace splitcore
