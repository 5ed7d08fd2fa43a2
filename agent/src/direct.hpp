// The direct connection (docs/protocol.md, "The direct connection"): after the supervisor opened a
// session it offers the worker, in the hello it forwards, a port of its own; the worker binds a
// ROUTER there with the agent's CURVE key pair, admits only the session's client key (a ZAP handler
// on a thread of its own, woken at handshakes only), and its main thread reads that socket itself
// while idle. Requests that come that way skip the supervisor and the IO thread: no relay, no
// thread hop. What needs either (cancel, ack, ping, hello, bye, leases) still goes the relay.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

// Supervisor: what the forwarded hello's "direct" says, or null (--no-direct, --audit-log, an ipc
// listen address). bind: the listen address's host; ports: the range to try (0, 0: any).
struct direct_settings {
    bool enabled = true;
    unsigned first_port = 0;
    unsigned last_port = 0;
};
[[nodiscard]] splitcore::json direct_offer(const direct_settings& settings, const std::string& listen,
                                           const std::string& client_key, const std::string* public_key,
                                           const std::string* secret_key);

// "LO-HI" (or one port) as --worker-ports takes it; throws std::runtime_error if malformed.
[[nodiscard]] direct_settings parse_worker_ports(const std::string& text);

class direct_port {
public:
    // Binds as `offer` says; throws std::runtime_error (no free port in the range, a bad offer).
    direct_port(zmq::context_t& context, const splitcore::json& offer);
    ~direct_port();
    direct_port(const direct_port&) = delete;
    direct_port& operator=(const direct_port&) = delete;

    [[nodiscard]] unsigned port() const noexcept { return m_port; }
    [[nodiscard]] zmq::socket_t& socket() noexcept { return m_socket; }
    // CURVE with the ZAP handler (not --insecure); then admitted() once it let the client's key in,
    // so the connection's descriptor exists.
    [[nodiscard]] bool secure() const noexcept { return !m_client_key.empty(); }
    [[nodiscard]] bool admitted() const noexcept { return m_admitted.load(); }

private:
    void bind(const std::string& host, unsigned first, unsigned last);
    void serve_zap();

    zmq::context_t& m_context;
    std::string m_client_key;  // Z85; empty: no CURVE (--insecure, loopback only)
    std::optional<zmq::socket_t> m_zap;
    std::thread m_zap_thread;
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_admitted{false};
    zmq::socket_t m_socket;
    unsigned m_port = 0;
};

// Why a request that came directly is not run (an error reply), or null: the operations the relay
// must carry, and a request past its "until" (arrived_late, as the IO thread says it).
[[nodiscard]] splitcore::json refuse_direct(const splitcore::json& header, std::uint64_t id);

}  // namespace splitbrain::agent
