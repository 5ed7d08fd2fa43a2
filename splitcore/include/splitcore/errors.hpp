// The error vocabulary: every stable id splitbrain reports, the one builder of its tagged text
// (the id in brackets, then the detail), and the one C++ exception type that carries an id.
// docs/errors.md is the catalogue (tests/splitcore/test_error_ids.py keeps the two equal); Python
// sees the same list as splitbrain._core.error_ids and maps ids to exception types in one table
// (splitbrain/_errors.py).
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace splitcore {

// The ids, in the order of docs/errors.md. On the wire and in Python an id is spelled as its name
// here, without the "splitbrain." prefix: "session_lost".
enum class errc {
    // the agent's answers to a request (wire protocol)
    bad_request,
    unknown_op,
    bad_object,
    no_session,
    session_lost,
    too_many_sessions,
    // reaching an agent
    agent_unreachable,
    key_refused,
    agent_key_mismatch,
    nothing_listening,
    unknown_host,
    client_stalled,
    closed,
    timeout,
    transport,
    // values and contexts of the splitbrain package
    not_transferable,
    wrong_slave,
    slave_only_module,
    context,
    not_shippable,
    not_on_a_slave,
    // names, targets, keys, the registry, spawning
    unknown_slave,
    unknown_agent_key,
    bad_target,
    bad_key,
    bad_registry,
    spawn_failed,
    // the kernel's magics
    usage,
    fan_out_failed,
    slaves_down,
    // the demo instruments of notebooks/
    bench_failed,
    bench_started,
    // splitbrain-kernel's own
    kernel_usage,
    kernel_python_failed,
    kernel_start_failed,
    kernel_failed,
    kernel_extension_failed,
    kernel_internal_error,
    kernel_bad_message,
    kernel_bad_request,
    kernel_request_failed,
    kernel_output_lost,
    kernel_stopping,
    kernel_signal_wakeup,
    kernel_orphaned,
    kernel_threads_left_running,
    // flow control
    queue_full,
    arrived_late,
    // callbacks: the master's objects used on a slave
    callback_unavailable,
    local_io_in_slave_context,
    // a shared lab: key limits and leases
    key_limit,
    module_refused,
    leased,
    // a reply lost with a broken connection
    reply_lost,
    // pipelined writes
    not_run_after_failure,
    // labgrid places
    place_unavailable,
    place_busy,
    place_not_held,
};

// Every id's name, indexed by errc.
inline constexpr std::string_view error_names[] = {
    "bad_request",
    "unknown_op",
    "bad_object",
    "no_session",
    "session_lost",
    "too_many_sessions",
    "agent_unreachable",
    "key_refused",
    "agent_key_mismatch",
    "nothing_listening",
    "unknown_host",
    "client_stalled",
    "closed",
    "timeout",
    "transport",
    "not_transferable",
    "wrong_slave",
    "slave_only_module",
    "context",
    "not_shippable",
    "not_on_a_slave",
    "unknown_slave",
    "unknown_agent_key",
    "bad_target",
    "bad_key",
    "bad_registry",
    "spawn_failed",
    "usage",
    "fan_out_failed",
    "slaves_down",
    "bench_failed",
    "bench_started",
    "kernel_usage",
    "kernel_python_failed",
    "kernel_start_failed",
    "kernel_failed",
    "kernel_extension_failed",
    "kernel_internal_error",
    "kernel_bad_message",
    "kernel_bad_request",
    "kernel_request_failed",
    "kernel_output_lost",
    "kernel_stopping",
    "kernel_signal_wakeup",
    "kernel_orphaned",
    "kernel_threads_left_running",
    "queue_full",
    "arrived_late",
    "callback_unavailable",
    "local_io_in_slave_context",
    "key_limit",
    "module_refused",
    "leased",
    "reply_lost",
    "not_run_after_failure",
    "place_unavailable",
    "place_busy",
    "place_not_held",
};
inline constexpr std::size_t error_count = sizeof(error_names) / sizeof(error_names[0]);
static_assert(error_count == static_cast<std::size_t>(errc::place_not_held) + 1,
              "error_names must name every errc, in order");

[[nodiscard]] constexpr std::string_view name(errc code) noexcept {
    return error_names[static_cast<std::size_t>(code)];
}

// The errc spelled `name` ("session_lost"), or nullopt.
[[nodiscard]] std::optional<errc> errc_from_name(std::string_view name) noexcept;

// The one builder of an error's text: the id, tagged with the "splitbrain." prefix in brackets,
// then the detail.
[[nodiscard]] std::string tagged(errc code, std::string_view detail);
// Same for an id known only by its name (from Python); nullopt if it is not one of errc.
[[nodiscard]] std::optional<std::string> tagged(std::string_view name, std::string_view detail);

// The one C++ error type carrying a stable id. what() is tagged(code, detail).
class error : public std::runtime_error {
public:
    error(errc code, std::string_view detail);
    [[nodiscard]] errc code() const noexcept { return m_code; }
    // what() without the tagged id in front.
    [[nodiscard]] std::string_view detail() const noexcept;

private:
    errc m_code;
};

}  // namespace splitcore
