// The vocabulary of the splitbrain wire protocol (docs/protocol.md): the table of operations and
// the messages a peer sends (replies, error values, output events). The errors are in errors.hpp, the
// CBOR codec and the framing in wire.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>

#include <nlohmann/json.hpp>

#include "splitcore/errors.hpp"

namespace splitcore {

using json = nlohmann::json;

inline constexpr int protocol_version = 1;

// Who answers an operation.
enum class tier {
    supervisor,   // the agent's supervisor, even while the session's worker is busy
    io_thread,    // the worker's IO thread, even while its main thread runs a call
    main_thread,  // the worker's main thread, with the GIL: one request at a time, in id order
};

// As docs/protocol.md spells a tier: "supervisor", "worker IO thread", "worker main thread".
[[nodiscard]] constexpr std::string_view name(tier t) noexcept {
    switch (t) {
        case tier::supervisor:
            return "supervisor";
        case tier::io_thread:
            return "worker IO thread";
        case tier::main_thread:
            return "worker main thread";
    }
    return "";
}

struct operation {
    std::string_view name;  // the request's "op"
    tier answered_by;
    std::string_view request;  // its fields besides "id" and "op"
    std::string_view reply;    // the "r" of its ok reply
};

// Every operation of the protocol, once. docs/protocol.md lists the same names and tiers in the same
// order (tests/agent/test_operation_table.cpp compares them); the worker's handler table is checked
// against it at start-up. Adding an operation: a row here, its handler, its test (agent/README.md).
inline constexpr operation operations[] = {
    {"hello", tier::main_thread,
     "session: the client's token (the supervisor attaches the connection to it and adds resumed)",
     "{resumed, pid, platform, python, hostname, sep, flavour, executable, clock}"},
    {"ping", tier::supervisor, "none", "null"},
    {"import", tier::main_thread, "name: a module", "{mod: REF, callables: [names], consts: {$d}, modules: [names]}"},
    {"getattr", tier::main_thread, "o, name", "VALUE"},
    {"setattr", tier::main_thread, "o, name, v", "null"},
    {"delattr", tier::main_thread, "o, name", "null"},
    {"call", tier::main_thread, "o, path (names walked first), a (args), k ({$d} kwargs); all but o optional", "VALUE"},
    {"run", tier::main_thread, "src (a def), name, mods ({$d} name: module), free ({$d} name: VALUE), a, k",
     "VALUE of name(*a, **k)"},
    {"getitem", tier::main_thread, "o, k", "VALUE"},
    {"setitem", tier::main_thread, "o, k, v", "null"},
    {"delitem", tier::main_thread, "o, k", "null"},
    {"len", tier::main_thread, "o", "int"},
    {"bool", tier::main_thread, "o", "bool"},
    {"hash", tier::main_thread, "o", "int"},
    {"repr", tier::main_thread, "o", "str"},
    {"str", tier::main_thread, "o", "str"},
    {"dir", tier::main_thread, "o", "[str]"},
    {"cmp", tier::main_thread, "o, cmp (eq ne lt le gt ge), v", "VALUE"},
    {"iter", tier::main_thread, "o, n (batch size, optional)", "{it: REF or null, items: [VALUE], done: bool}"},
    {"next", tier::main_thread, "o (an iterator), n (optional)", "{items: [VALUE], done: bool}"},
    {"enter", tier::main_thread, "o", "VALUE of __enter__()"},
    {"exit", tier::main_thread, "o, exc: null or [type name, message]", "bool"},
    {"release", tier::main_thread, "ids: [[oid, count], ...]", "null"},
    {"cancel", tier::io_thread, "target: a request id", "bool: the target was running or queued and is interrupted"},
    {"ack", tier::io_thread, "at: the \"at\" of the last output event the client has written", "null"},
    {"stats", tier::main_thread, "none", "{objects: live objects held for the client}"},
    {"lease", tier::supervisor, "resources (names; none: the whole slave), for (seconds, optional), shared (bool)",
     "{leases: [{resource, shared, since, until}]}"},
    {"unlease", tier::supervisor, "resources (none: all of the session's), force (bool: an admin's, anyone's)",
     "{released: count}"},
    {"leases", tier::supervisor, "none", "[{resource, holder, shared, since, until, mine}]"},
    {"bye", tier::main_thread, "idle (optional)", "null; the session ends"},
    {"answer", tier::main_thread, "cb: the callback request's number, ok, r (VALUE) or e (ERROR)",
     "null; taken by the call waiting for it (a callback of the master's object)"},
};

namespace op {
// The operation called name, or null.
[[nodiscard]] constexpr const operation* find(std::string_view name) noexcept {
    for (const operation& o : operations) {
        if (o.name == name) return &o;
    }
    return nullptr;
}

[[nodiscard]] constexpr bool is_known(std::string_view name) noexcept { return find(name) != nullptr; }

[[nodiscard]] constexpr std::size_t count(tier t) noexcept {
    std::size_t n = 0;
    for (const operation& o : operations) n += o.answered_by == t ? 1 : 0;
    return n;
}

// The operation called name, for the code that treats it by name: a name not in the table does not
// compile (this is only called in constant expressions).
constexpr const operation& named(std::string_view name) {
    const operation* found = find(name);
    return found != nullptr ? *found : throw std::logic_error("not an operation of the table");
}

inline constexpr const operation& hello = named("hello");
inline constexpr const operation& ping = named("ping");
inline constexpr const operation& release = named("release");
inline constexpr const operation& cancel = named("cancel");
inline constexpr const operation& ack = named("ack");
inline constexpr const operation& bye = named("bye");
inline constexpr const operation& answer = named("answer");
inline constexpr const operation& lease = named("lease");
inline constexpr const operation& unlease = named("unlease");
inline constexpr const operation& leases = named("leases");
}  // namespace op

// The ERROR map of a failure with an id: type "splitbrain.ProtocolError", msg, args, code (the
// id's bare name, as Python spells it).
[[nodiscard]] json error_value(const error& e);
[[nodiscard]] json error_value(errc code, std::string_view detail);

// Reply headers. A request whose id cannot be read is answered with id 0.
[[nodiscard]] json ok_reply(std::uint64_t id, json result);
[[nodiscard]] json error_reply(std::uint64_t id, json error);
// Flow control of output (docs/protocol.md, "Output and back-pressure"). Each output event costs its
// bytes plus output_event_cost (what one message costs to hold, whatever its size); its "at" is the
// session's total cost of output sent up to and including it. The worker sends no more output while
// the cost sent exceeds the last "at" its client acknowledged (op "ack") by output_window: it stops
// reading the pipes, and the slave's writers block when they fill. A client acknowledges after
// writing, at the latest every output_ack_every units or once its liveness ping interval passed.
inline constexpr std::uint64_t output_window = std::uint64_t(8) << 20;
inline constexpr std::uint64_t output_ack_every = output_window / 8;
inline constexpr std::uint64_t output_event_cost = 512;

// {"ev": "out", "fd": fd, "d": bytes, "at": at}
[[nodiscard]] json output_event(int fd, const char* data, std::size_t size, std::uint64_t at);

}  // namespace splitcore
