// The physical limit: a bare cppzmq DEALER ↔ ROUTER pair in two processes on tcp://127.0.0.1,
// moving what the agent moves (a small header per request, 64 MiB as one frame or as 1 MiB frames).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "workload.hpp"

namespace splitbench {
struct raw_options {
    bool curve = false;  // CurveZMQ on the client's connection, as the agent uses it
    bool relay = false;  // through a relay process (ROUTER ↔ DEALER over ipc), as the agent's supervisor
    std::size_t bulk_bytes = std::size_t(64) << 20;
    std::size_t chunk_bytes = std::size_t(1) << 20;
};

// Forks the echo process (and the relay), connects a DEALER to it; the destructor stops them.
class raw_peer {
public:
    explicit raw_peer(raw_options options);
    ~raw_peer();
    raw_peer(const raw_peer&) = delete;
    raw_peer& operator=(const raw_peer&) = delete;

    // "<label>.rtt", "<label>.read_64x1MiB", "<label>.write_64x1MiB", and with `one_frame`
    // "<label>.read_1x64MiB", "<label>.write_1x64MiB"; label is raw, raw_curve, raw_relay, ...
    [[nodiscard]] std::vector<workload> workloads(bool one_frame);

private:
    raw_options m_options;
    std::string m_label;
    std::vector<pid_t> m_children;
    std::string m_ipc_path;  // the relay's ipc socket file, if any
    zmq::context_t m_context;
    zmq::socket_t m_dealer;
    std::vector<char> m_buffer;
};
}  // namespace splitbench
