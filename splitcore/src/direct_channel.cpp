// The client's direct connection to its session's worker (docs/protocol.md, "The direct
// connection"): a second DEALER, to the port the hello's reply names, on the agent's host, with the
// same CURVE keys. Requests the worker's main thread answers go there once its handshake succeeded;
// everything else, and everything while it is down, goes through the agent's port as before.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "direct_link.hpp"

namespace splitcore {

namespace {

// SPLITBRAIN_DEBUG=1: what the direct connection does, on stderr.
void debug(const std::string& text) {
    static const bool on = [] {
        const char* value = std::getenv("SPLITBRAIN_DEBUG");
        return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
    }();
    if (on) std::fprintf(stderr, "splitbrain: %s\n", text.c_str());
}

constexpr int max_handshake_failures = 3;
constexpr std::chrono::seconds connect_bound{3};  // no handshake by then: the relay it stays

}  // namespace

void channel::open_direct(const nlohmann::json& offer) {
    drop_direct();
    const auto port = offer.find("port");
    const auto colon = m_options.address.rfind(':');
    if (port == offer.end() || !port->is_number_unsigned() || colon == std::string::npos ||
        m_options.address.rfind("tcp://", 0) != 0) {
        return;
    }
    auto link = std::make_unique<direct_link>(direct_context());
    link->endpoint = m_options.address.substr(0, colon + 1) + std::to_string(port->get<unsigned>());
    try {
        zmq::socket_t& socket = link->socket;
        socket.set(zmq::sockopt::linger, 0);
        socket.set(zmq::sockopt::immediate, 1);  // nothing is queued for a connection not made
        socket.set(zmq::sockopt::heartbeat_ivl, 0);
        socket.set(zmq::sockopt::reconnect_ivl, 100);
        socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
        if (m_options.server_key) {
            socket.set(zmq::sockopt::curve_serverkey, *m_options.server_key);
            socket.set(zmq::sockopt::curve_publickey, m_options.public_key);
            socket.set(zmq::sockopt::curve_secretkey, m_options.secret_key);
        }
        static std::atomic<unsigned> monitors{0};
        const std::string monitor_address = "inproc://splitbrain-direct-monitor-" + std::to_string(++monitors);
        if (zmq_socket_monitor(socket.handle(), monitor_address.c_str(),
                               ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                   ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
            throw zmq::error_t();
        }
        link->monitor = zmq::socket_t(direct_context(), zmq::socket_type::pair);  // the channel's context
        link->monitor.set(zmq::sockopt::linger, 0);
        link->monitor.connect(monitor_address);
        socket.connect(link->endpoint);
        link->socket_state = socket_watch(socket);
        link->monitor_state = socket_watch(link->monitor);
    } catch (const zmq::error_t& e) {
        debug("no direct connection to " + link->endpoint + " (" + e.what() + "): requests go through " +
              m_options.address);
        return;
    }
    link->opened = channel_clock::now();
    debug("direct connection to the session's worker at " + link->endpoint);
    m_direct = std::move(link);
}

void channel::drop_direct() {
    if (!m_direct) return;
    // What was in flight there gets no reply that way any more.
    for (const std::uint64_t id : m_direct->in_flight) m_direct->broken.insert(id);
    for (const std::uint64_t id : m_direct->broken) {
        if (m_waiting.count(id) != 0) m_direct_lost.emplace(id, m_direct->acknowledged >= id);
    }
    zmq_socket_monitor(m_direct->socket.handle(), nullptr, 0);
    m_direct.reset();
}

bool channel::read_monitors_if_signalled() {
    socket_watch* monitors[] = {&m_monitor_watch, m_direct ? &m_direct->monitor_state : nullptr};
    bool ready[std::size(monitors)] = {};
    try {
        (void)poll_watched(monitors, std::size(monitors), ready, nullptr, 0, 0);
    } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        ready[0] = ready[1] = true;  // interrupted: read them as before
    }
    if (ready[0]) read_monitor();
    return read_direct_monitor(ready[1]);
}

bool channel::read_direct_monitor(bool readable) {
    direct_link* link = m_direct.get();
    if (link == nullptr) return true;
    if (readable) link->monitor_state.used();
    while (readable) {
        auto parts = recv_parts(link->monitor, zmq::recv_flags::dontwait);
        if (!parts) {
            link->monitor_state.drained();
            break;
        }
        if (parts->empty() || parts->front().size() < sizeof(std::uint16_t)) continue;
        std::uint16_t event;
        std::memcpy(&event, parts->front().data(), sizeof event);
        std::lock_guard<std::mutex> lock(m_mutex);
        switch (event) {
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                link->up = link->ever_up = true;
                link->failures = 0;
                link->resync_due = !link->broken.empty();
                break;
            case ZMQ_EVENT_DISCONNECTED:
                if (link->up) debug("the direct connection to " + link->endpoint + " broke; reconnecting");
                link->up = false;
                if (!link->in_flight.empty()) {
                    link->broken.insert(link->in_flight.begin(), link->in_flight.end());
                    link->in_flight.clear();
                    link->broken_at = channel_clock::now();
                }
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                link->up = false;
                ++link->failures;
                break;
            default:
                break;
        }
    }
    std::unique_lock<std::mutex> lock(m_mutex);
    if (link->resync_due) {
        // As a ping after a reconnect to the agent's port: the worker sends again the replies it kept,
        // and says which it cannot; a call still running there answers over this connection.
        link->resync_due = false;
        nlohmann::json waiting = nlohmann::json::array();
        for (const std::uint64_t id : link->broken) {
            if (m_waiting.count(id) != 0 && waiting.size() < 64) waiting.push_back(id);
        }
        link->in_flight.insert(link->broken.begin(), link->broken.end());
        link->broken.clear();
        const nlohmann::json ping{
            {"op", "ping"}, {"id", m_next_id++}, {"session", m_options.session}, {"waiting", std::move(waiting)}};
        lock.unlock();
        zmq::message_t message = encode_header(ping);
        link->socket_state.used();
        (void)link->socket.send(message, zmq::send_flags::dontwait);
        lock.lock();
    }
    if (link->failures >= max_handshake_failures ||
        (!link->ever_up && channel_clock::now() - link->opened > connect_bound)) {
        debug("the direct connection to " + link->endpoint + " " +
              (link->failures > 0 ? "failed its handshake" : "did not connect") + ": requests go through " +
              m_options.address);
        return false;
    }
    return true;
}

bool channel::direct_up() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_direct && m_direct->up;
}

bool channel::goes_direct(const nlohmann::json& header) const {
    if (!m_direct || !m_direct->up) return false;
    const auto name = header.find("op");
    if (name == header.end() || !name->is_string()) return false;
    const operation* op = op::find(name->get<std::string>());
    return op != nullptr && op->answered_by == tier::main_thread && op != &op::hello && op != &op::bye;
}

void channel::direct_settle(std::uint64_t id, bool direct, const nlohmann::json& header) {
    if (!m_direct) return;
    if (direct) m_direct->acknowledged = std::max(m_direct->acknowledged, id);
    m_direct->in_flight.erase(id);
    m_direct->broken.erase(id);
    // An ack's reply names the request the worker's main thread runs: those sent before it reached it.
    if (const auto running = header.find("running");
        !direct && running != header.end() && running->is_number_unsigned()) {
        m_direct->acknowledged = std::max(m_direct->acknowledged, running->get<std::uint64_t>());
    }
    // Down for the liveness timeout with calls in flight: their replies are not coming that way.
    if (!m_direct->broken.empty() && !m_direct->up && channel_clock::now() - m_direct->broken_at > m_options.liveness) {
        for (const std::uint64_t lost : m_direct->broken) {
            if (m_waiting.count(lost) != 0) m_direct_lost.emplace(lost, m_direct->acknowledged >= lost);
        }
        m_direct->broken.clear();
    }
}

nlohmann::json channel::direct_waiting() {
    std::lock_guard<std::mutex> lock(m_mutex);
    nlohmann::json ids = nlohmann::json::array();
    if (!m_direct) return ids;
    for (const auto* set : {&m_direct->in_flight, &m_direct->broken}) {
        for (const std::uint64_t id : *set) {
            if (m_waiting.count(id) != 0 && ids.size() < 64) ids.push_back(id);
        }
    }
    return ids;
}

bool channel::was_sent_direct(std::uint64_t id) const {
    return m_direct && (m_direct->in_flight.count(id) != 0 || m_direct->broken.count(id) != 0);
}

std::uint64_t channel::acknowledged_for(std::uint64_t id) const {
    return was_sent_direct(id) ? m_direct->acknowledged : m_acknowledged;
}

void channel::direct_arrived(std::vector<message>& into) {
    if (!m_direct) return;
    m_direct->socket_state.used();
    while (auto parts = recv_parts(m_direct->socket, zmq::recv_flags::dontwait)) {
        message arrived;
        try {
            arrived.header = decode_header(parts->front());
        } catch (const splitcore::error&) {
            continue;
        }
        arrived.frames.reserve(parts->size() - 1);
        std::move(parts->begin() + 1, parts->end(), std::back_inserter(arrived.frames));
        into.push_back(std::move(arrived));
    }
    m_direct->socket_state.drained();  // it would block now
}

}  // namespace splitcore
