#include "splitcore/channel.hpp"

#include "direct_link.hpp"

#include <netdb.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <system_error>
#include <utility>

namespace splitcore {

namespace {

// One process-wide context, never terminated: zmq_ctx_term at exit would block on any socket a
// daemon thread still holds, and the OS reclaims everything anyway.
zmq::context_t& shared_context() {
    static auto* context = new zmq::context_t(1);
    return *context;
}

// Every {"$r": id} in a reply, one entry per occurrence (each is one reference the agent counts).
void collect_references(const nlohmann::json& value, std::vector<std::uint64_t>& into) {
    if (value.is_object()) {
        if (auto ref = value.find("$r"); ref != value.end() && ref->is_number_unsigned() && value.size() <= 3) {
            into.push_back(ref->get<std::uint64_t>());
            return;
        }
        for (const auto& item : value) collect_references(item, into);
    } else if (value.is_array()) {
        for (const auto& item : value) collect_references(item, into);
    }
}

// Throws unknown_host for a tcp:// address whose host is a name that does not resolve.
void resolve_host(const std::string& name, const std::string& address) {
    if (address.rfind("tcp://", 0) != 0) return;
    std::string host = address.substr(6, address.rfind(':') - 6);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty() || host == "*") return;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
    if (found != nullptr) ::freeaddrinfo(found);
    if (rc == 0) return;
    throw error(errc::unknown_host, "no such host " + host + " (" + address + ", the address of " + name +
                                        "): " + ::gai_strerror(rc) + "; check the name, or use an IP address");
}

std::string seconds_text(std::chrono::milliseconds ms) {
    char text[32];
    if (ms.count() % 1000 == 0) {
        std::snprintf(text, sizeof text, "%lld", static_cast<long long>(ms.count() / 1000));
    } else {
        std::snprintf(text, sizeof text, "%.1f", static_cast<double>(ms.count()) / 1000.0);
    }
    return text;
}

}  // namespace

zmq::context_t& direct_context() { return shared_context(); }

channel::channel(channel_options options)
    : m_options(std::move(options)), m_socket(shared_context(), zmq::socket_type::dealer) {
    // A ping must have time to come back before the agent counts as gone.
    m_options.ping_after = std::min(m_options.ping_after, m_options.liveness / 3);
    m_socket.set(zmq::sockopt::linger, 0);
    // No ZMQ_ROUTING_ID: the agent's ROUTER assigns one per connection, and every message names
    // its session instead (see docs/protocol.md, "Sessions").
    // With no connection (agent down, our key refused) a send would block for ever: give up after
    // the liveness timeout, as for a silent agent.
    m_socket.set(zmq::sockopt::sndtimeo, static_cast<int>(m_options.liveness.count()));
    m_socket.set(zmq::sockopt::reconnect_ivl, 100);
    m_socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
    // No ZMTP heartbeats: our pings while waiting are the liveness check, and a heartbeat timeout
    // would drop a connection (and the replies in its buffers) only because this process was
    // stopped or busy for a while. TCP holds what was sent until we read it.
    m_socket.set(zmq::sockopt::heartbeat_ivl, 0);
    if (m_options.server_key) {
        m_socket.set(zmq::sockopt::curve_serverkey, *m_options.server_key);
        m_socket.set(zmq::sockopt::curve_publickey, m_options.public_key);
        m_socket.set(zmq::sockopt::curve_secretkey, m_options.secret_key);
    }
    static std::atomic<unsigned> monitors{0};
    const std::string monitor_address = "inproc://splitbrain-channel-monitor-" + std::to_string(++monitors);
    if (zmq_socket_monitor(m_socket.handle(), monitor_address.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
        throw zmq::error_t();
    }
    m_monitor = zmq::socket_t(shared_context(), zmq::socket_type::pair);
    m_monitor.set(zmq::sockopt::linger, 0);
    m_monitor.connect(monitor_address);
    m_socket_watch = socket_watch(m_socket);
    m_monitor_watch = socket_watch(m_monitor);
    // libzmq resolves a host name in its IO thread and retries for ever: a name that does not
    // resolve is known now, and said now.
    resolve_host(m_options.name, m_options.address);
    m_socket.connect(m_options.address);

    m_wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m_wake_fd < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    const auto now = channel_clock::now();
    m_last_heard = m_last_sent = m_last_ping = m_last_listened = now;
    if (m_options.keepalive.count() > 0) {
        m_keepalive = std::thread([this] { keepalive_loop(); });
    }
}

channel::~channel() {
    close();
    if (m_wake_fd >= 0) {
        ::close(m_wake_fd);
    }
}

void channel::close() {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (m_closed) {
        return;
    }
    m_closed = true;
    m_changed.notify_all();
    m_keepalive_wake.notify_all();
    wake_reader();
    lock.unlock();
    if (m_keepalive.joinable()) {
        m_keepalive.join();
    }
    lock.lock();
    m_changed.wait(lock, [this] { return !m_socket_busy; });
    drop_direct();
    zmq_socket_monitor(m_socket.handle(), nullptr, 0);
    m_monitor.close();
    m_socket.close();
    m_waiting.clear();
    m_replies.clear();
    m_events_for.clear();
    m_changed.notify_all();
}

void channel::wake_reader() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(m_wake_fd, &one, sizeof one);
}

void channel::acquire_socket(std::unique_lock<std::mutex>& lock) {
    if (m_socket_busy) {
        ++m_senders_waiting;
        wake_reader();
        m_changed.wait(lock, [this] { return !m_socket_busy || m_closed; });
        --m_senders_waiting;
    }
    if (m_closed) {
        throw error(errc::closed, "the connection to " + m_options.name + " is closed");
    }
    m_socket_busy = true;
}

void channel::release_socket(std::unique_lock<std::mutex>&) {
    m_socket_busy = false;
    m_changed.notify_all();
}

void channel::send_now(const nlohmann::json& header, std::vector<zmq::message_t>& frames, bool direct) {
    // The direct way never blocks: a connection that cannot take it now leaves it to the relay.
    if (direct && m_direct) m_direct->socket_state.used();
    if (direct && m_direct && try_send_message(m_direct->socket, header, frames)) return;
    if (direct) {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_direct) m_direct->in_flight.erase(header.value("id", std::uint64_t(0)));
    }
    m_socket_watch.used();
    try {
        send_message(m_socket, header, std::move(frames));
    } catch (const zmq::error_t& e) {
        if (e.num() != EAGAIN) throw;
        const error silent = unreachable();
        throw error(silent.code(), std::string(silent.detail()) + " The call was not sent: it did not run.");
    }
}

// Pings are best effort: never wait for room to send one.
nlohmann::json channel::waiting_since_reconnect() {
    std::lock_guard<std::mutex> lock(m_mutex);
    nlohmann::json ids = nlohmann::json::array();
    if (m_handshakes < 2) return ids;
    for (const auto& [id, sent] : m_waiting) {
        // Not one sent the direct way: the supervisor never saw it, and would call it unseen.
        if (sent < m_reconnected && ids.size() < 64 && !was_sent_direct(id)) ids.push_back(id);
    }
    return ids;
}

void channel::try_ping(std::uint64_t id) {
    nlohmann::json header{{"op", "ping"}, {"id", id}, {"session", m_options.session}};
    if (nlohmann::json waiting = waiting_since_reconnect(); !waiting.empty()) header["waiting"] = std::move(waiting);
    if (nlohmann::json direct = direct_waiting(); !direct.empty()) header["direct"] = std::move(direct);
    zmq::message_t ping = encode_header(header);
    m_socket_watch.used();
    (void)m_socket.send(ping, zmq::send_flags::dontwait);
}

// Monitor events are two frames: {uint16 event, uint32 value} and the endpoint. A refused connect
// is a CONNECT_RETRIED that no DISCONNECTED announced; a handshake the agent cut short without a
// word (no ERROR command, as a refused key gets) is a CURVE server that could not read our HELLO:
// it does not hold the secret half of the key we pin.
void channel::read_monitor() {
    m_monitor_watch.used();
    while (auto parts = recv_parts(m_monitor, zmq::recv_flags::dontwait)) {
        if (parts->empty() || parts->front().size() < sizeof(std::uint16_t)) continue;
        std::uint16_t event;
        std::memcpy(&event, parts->front().data(), sizeof event);
        std::lock_guard<std::mutex> lock(m_mutex);
        const link_failure before = m_link_failure;
        switch (event) {
            case ZMQ_EVENT_CONNECTED:
                if (m_link_failure == link_failure::nothing_listening) m_link_failure = link_failure::none;
                break;
            case ZMQ_EVENT_DISCONNECTED:
                m_reconnect_scheduled = true;
                break;
            case ZMQ_EVENT_CONNECT_RETRIED:
                if (!std::exchange(m_reconnect_scheduled, false)) m_link_failure = link_failure::nothing_listening;
                break;
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                m_link_failure = link_failure::none;
                if (++m_handshakes > 1) m_reconnected = channel_clock::now();
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                m_link_failure = link_failure::key_refused;
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                if (m_link_failure != link_failure::key_refused) m_link_failure = link_failure::key_mismatch;
                break;
            default:
                break;
        }
        if (m_link_failure != link_failure::none && (m_link_failure != before || event != ZMQ_EVENT_CONNECTED)) {
            m_link_failed = channel_clock::now();
        }
    }
    m_monitor_watch.drained();  // it would block now
}

std::uint64_t channel::handshakes() {
    std::unique_lock<std::mutex> lock(m_mutex);
    const auto now = channel_clock::now();
    // Else the thread that polls reads the monitor, or it was read a moment ago: this is asked
    // at every routed attribute lookup.
    if (!m_socket_busy && !m_closed && now - m_monitor_read > std::chrono::milliseconds(50)) {
        m_monitor_read = now;
        m_socket_busy = true;
        lock.unlock();
        read_monitor();
        lock.lock();
        release_socket(lock);
    }
    return m_handshakes;
}

error channel::link_error() const {
    const std::string where = m_options.name + " (" + m_options.address + ")";
    switch (m_link_failure) {
        case link_failure::nothing_listening:
            return error(errc::nothing_listening,
                         "nothing listens on " + m_options.address + " (the connection to " + m_options.name +
                             " was refused); is splitbrain-agent running there, on that port?");
        case link_failure::key_refused:
            return error(errc::key_refused, where + " refused this client's key " + m_options.public_key +
                                                "; add it to the agent's --authorized-keys file");
        case link_failure::key_mismatch:
            return error(errc::agent_key_mismatch,
                         where + " ended the handshake: " +
                             (m_options.server_key ? "it does not hold the agent key " + *m_options.server_key +
                                                         " this client pins; compare `splitbrain-agent pubkey` there "
                                                         "with the registry entry or connection file"
                                                   : std::string("it expects CURVE, and this client connects in plain "
                                                                 "text; give the agent's public key")));
        case link_failure::none:
            break;
    }
    return unreachable();
}

error channel::unreachable() const {
    if (m_resumed > m_last_heard && m_stalled_for >= m_options.liveness &&
        channel_clock::now() - m_resumed < m_options.liveness * 2) {
        return error(errc::client_stalled, "this process stopped reading from " + m_options.name + " (" +
                                               m_options.address + ") for " + seconds_text(m_stalled_for / 100 * 100) +
                                               " s (stopped, or blocked writing output), and nothing came in the " +
                                               seconds_text(m_options.liveness) +
                                               " s after; the call may still have run there");
    }
    return error(errc::agent_unreachable, m_options.name + " (" + m_options.address + ") did not answer for " +
                                              seconds_text(m_options.liveness) +
                                              " s; is splitbrain-agent running there?");
}

std::uint64_t channel::send(nlohmann::json header, std::vector<zmq::message_t> frames) {
    std::unique_lock<std::mutex> lock(m_mutex);
    acquire_socket(lock);
    lock.unlock();
    const bool direct_usable = read_monitors_if_signalled();  // so that what they say next happened after it
    lock.lock();
    if (!direct_usable) drop_direct();
    // direct_later(): the hello that asks for the direct connection goes right before the request
    // that reaches the count, so that its reply (which opens the connection) comes before that
    // request's, while the caller waits: the worker holds that request until the handshake is in.
    std::optional<nlohmann::json> upgrade;
    if (m_direct_hello && !m_direct) {
        const auto name = header.find("op");
        const operation* op = name != header.end() && name->is_string() ? op::find(name->get<std::string>()) : nullptr;
        if (op != nullptr && op->answered_by == tier::main_thread && op != &op::hello && op != &op::bye &&
            (m_direct_after == 0 || --m_direct_after == 0)) {
            upgrade = std::move(m_direct_hello);
            m_direct_hello.reset();
            (*upgrade)["id"] = m_next_id++;
            (*upgrade)["session"] = m_options.session;
        }
    }
    // Numbered once the socket is ours, so ids go out in order: output is attributed by it.
    const std::uint64_t id = m_next_id++;
    header["id"] = id;
    header["session"] = m_options.session;
    // A bye while no other call waits: the agent may answer it without the worker (docs/protocol.md).
    if (m_waiting.empty() && header.value("op", "") == op::bye.name) header["idle"] = true;
    const auto now = channel_clock::now();
    m_waiting.emplace(id, now);
    const bool direct = goes_direct(header);
    if (direct) {
        m_direct->in_flight.insert(id);
    } else {
        m_last_sent = now;  // the supervisor hears from us: the keepalive can wait
    }
    stamp_deadline(header, now);
    lock.unlock();
    try {
        if (upgrade) {
            std::vector<zmq::message_t> none;
            send_now(*upgrade, none);  // its reply is dropped on arrival, after dispatch opened the link
        }
        send_now(header, frames, direct);
    } catch (...) {
        lock.lock();
        m_waiting.erase(id);
        release_socket(lock);
        throw;
    }
    lock.lock();
    release_socket(lock);
    return id;
}

void channel::direct_later(nlohmann::json hello, unsigned after) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_direct_hello = std::move(hello);
    m_direct_after = after;
}

std::uint64_t channel::post(nlohmann::json header, std::vector<zmq::message_t> frames) {
    std::unique_lock<std::mutex> lock(m_mutex);
    const std::uint64_t id = m_next_id++;
    header["id"] = id;
    header["session"] = m_options.session;
    acquire_socket(lock);
    const bool direct = goes_direct(header);
    if (!direct) m_last_sent = channel_clock::now();
    lock.unlock();
    try {
        send_now(header, frames, direct);
    } catch (...) {
        lock.lock();
        release_socket(lock);
        throw;
    }
    lock.lock();
    release_socket(lock);
    return id;
}

void channel::cancel(std::uint64_t id) {
    std::unique_lock<std::mutex> lock(m_mutex);
    const std::uint64_t cancel_id = m_next_id++;
    acquire_socket(lock);
    m_last_sent = channel_clock::now();
    lock.unlock();
    // Never blocks: an interrupt must return promptly even when the agent cannot be reached.
    zmq::message_t header = encode_header(
        nlohmann::json{{"op", "cancel"}, {"target", id}, {"id", cancel_id}, {"session", m_options.session}});
    m_socket_watch.used();
    try {
        (void)m_socket.send(header, zmq::send_flags::dontwait);
    } catch (...) {
        lock.lock();
        release_socket(lock);
        throw;
    }
    lock.lock();
    release_socket(lock);
}

namespace {
std::int64_t microseconds_of(channel_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
}  // namespace

// Read after the reply arrived, the agent's time is at most its time now: the offset errs low,
// so "until" is never later than the moment we may give up (the agent drops, rather than runs late).
void channel::agent_clock(std::uint64_t agent_now_us) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_agent_offset_us = static_cast<std::int64_t>(agent_now_us) - microseconds_of(channel_clock::now());
}

void channel::stamp_deadline(nlohmann::json& header, time_point sent) const {
    if (!m_agent_offset_us) return;
    const std::int64_t until = microseconds_of(sent + m_options.liveness) + *m_agent_offset_us;
    if (until > 0) header["until"] = static_cast<std::uint64_t>(until);
}

void channel::abandon(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(m_mutex);
    forget(id);
}

// Drops `id`'s reply; output of it nobody wrote yet goes to whoever writes unclaimed output.
void channel::forget(std::uint64_t id) {
    m_waiting.erase(id);
    m_unanswerable.erase(id);
    m_direct_lost.erase(id);
    m_direct_reached.erase(id);
    if (auto reply = m_replies.find(id); reply != m_replies.end()) {
        collect_references(reply->second.header, m_orphans);
        m_replies.erase(reply);
    }
    if (auto own = m_events_for.find(id); own != m_events_for.end()) {
        for (auto& event : own->second) m_events.push_back(std::move(event));
        m_events_for.erase(own);
    }
}

std::uint64_t channel::running_request() const {
    std::uint64_t oldest = 0;
    for (const auto& entry : m_waiting) {
        if ((oldest == 0 || entry.first < oldest) && m_replies.count(entry.first) == 0) oldest = entry.first;
    }
    return oldest;
}

std::vector<std::uint64_t> channel::pending() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    std::vector<std::uint64_t> ids;
    ids.reserve(m_waiting.size());
    for (const auto& entry : m_waiting) {
        ids.push_back(entry.first);
    }
    return ids;
}

std::vector<std::uint64_t> channel::take_orphans() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return std::exchange(m_orphans, {});
}

void channel::discard(const message& reply) {
    std::lock_guard<std::mutex> lock(m_mutex);
    collect_references(reply.header, m_orphans);
}

std::vector<message> channel::take_events() {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (const auto& event : m_events) note_taken(event);
    std::vector<message> events(std::make_move_iterator(m_events.begin()), std::make_move_iterator(m_events.end()));
    m_events.clear();
    return events;
}

void channel::read_available(std::vector<message>& into) {
    m_socket_watch.used();
    while (auto parts = recv_parts(m_socket, zmq::recv_flags::dontwait)) {
        message arrived;
        try {
            arrived.header = decode_header(parts->front());
        } catch (const splitcore::error&) {
            continue;  // a malformed header cannot be answered (we are the client) nor attributed
        }
        arrived.frames.reserve(parts->size() - 1);
        std::move(parts->begin() + 1, parts->end(), std::back_inserter(arrived.frames));
        into.push_back(std::move(arrived));
    }
    m_socket_watch.drained();  // it would block now
}

void channel::dispatch(std::vector<message>& arrived, time_point now, bool direct) {
    constexpr std::size_t max_unclaimed_events = 100000;
    for (auto& message : arrived) {
        m_last_heard = now;
        const auto& header = message.header;
        if (header.contains("ev")) {
            std::uint64_t owner = running_request();
            // A callback request names its call: while a callback runs, a nested call is the one
            // running there, but an outer call's request is still that outer call's.
            if (const auto call = header.find("for"); call != header.end() && call->is_number_unsigned() &&
                                                      m_waiting.count(call->get<std::uint64_t>()) != 0) {
                owner = call->get<std::uint64_t>();
            }
            if (owner != 0) {
                if (!was_sent_direct(owner)) m_acknowledged = std::max(m_acknowledged, owner);
                else m_direct->acknowledged = std::max(m_direct->acknowledged, owner);  // it reached the worker
                m_events_for[owner].push_back(std::move(message));
                continue;
            }
            if (m_events.size() >= max_unclaimed_events) {
                m_events.pop_front();
            }
            m_events.push_back(std::move(message));
            continue;
        }
        auto id = header.find("id");
        if (id == header.end() || !id->is_number_unsigned()) {
            continue;
        }
        const auto key = id->get<std::uint64_t>();
        if (auto known = header.find("known");
            known != header.end() && *known == false && key > m_session_gone_before) {
            if (m_session_gone_before == 0) m_acknowledged_before_loss = m_acknowledged;
            m_session_gone_before = key;
            for (const auto& entry : m_waiting) {
                if (was_sent_direct(entry.first) && acknowledged_for(entry.first) >= entry.first) {
                    m_direct_reached.insert(entry.first);
                }
            }
            drop_direct();  // its worker is gone
        }
        if (auto offer = header.find("direct"); !direct && offer != header.end() && offer->is_object()) {
            open_direct(*offer);  // a hello's reply: the session's worker has a port of its own
        }
        const bool sent_direct = direct || was_sent_direct(key);
        direct_settle(key, direct, header);
        for (const auto& [field, ran] : {std::pair{"lost", true}, std::pair{"unseen", false}}) {
            if (auto ids = header.find(field); ids != header.end() && ids->is_array()) {
                for (const auto& lost : *ids) {
                    if (lost.is_number_unsigned() && m_waiting.count(lost.get<std::uint64_t>()) != 0) {
                        m_unanswerable.emplace(lost.get<std::uint64_t>(), ran);
                    }
                }
            }
        }
        if (!sent_direct) m_acknowledged = std::max(m_acknowledged, key);
        if (m_waiting.count(key) != 0) {
            m_replies.insert_or_assign(key, std::move(message));
        } else if (!header.contains("again")) {  // a copy sent again of a reply that did arrive: nothing to release
            collect_references(header, m_orphans);
        }
    }
}

// Says whether the request had reached the agent, so that the caller knows if a retry could do
// the thing twice.
void channel::fail_unreachable(std::uint64_t id, std::unique_lock<std::mutex>&) {
    forget(id);
    throw unreachable_call(unreachable(), acknowledged_for(id) >= id);
}

error channel::unreachable_call(const error& silent, bool reached) const {
    std::string detail(silent.detail());
    if (silent.code() != errc::agent_unreachable) {
        // client_stalled says for itself that the call may have run
    } else if (reached) {
        detail += " The call reached " + m_options.name + " and may still be running there.";
    } else if (m_agent_offset_us) {
        detail += " The call was not delivered (" + m_options.name +
                  " acknowledged nothing sent after it), and is dropped if it arrives later: it did not run.";
    }
    return error(silent.code(), detail);
}

std::optional<message> channel::wait(std::uint64_t id, channel_clock::time_point until, std::vector<message>& events) {
    using std::chrono::milliseconds;
    std::unique_lock<std::mutex> lock(m_mutex);
    auto take_own_events = [&] {
        auto own = m_events_for.find(id);
        if (own == m_events_for.end()) return false;
        for (auto& event : own->second) {
            note_taken(event);
            events.push_back(std::move(event));
        }
        m_events_for.erase(own);
        return true;
    };
    for (;;) {
        if (take_own_events()) {
            return std::nullopt;
        }
        if (!m_events.empty()) {
            for (auto& event : m_events) {
                note_taken(event);
                events.push_back(std::move(event));
            }
            m_events.clear();
            return std::nullopt;
        }
        if (auto reply = m_replies.find(id); reply != m_replies.end()) {
            message message = std::move(reply->second);
            m_replies.erase(reply);
            m_waiting.erase(id);
            return message;
        }
        if (m_closed) {
            throw error(errc::closed, "the connection to " + m_options.name + " is closed");
        }
        auto waiting = m_waiting.find(id);
        if (waiting == m_waiting.end()) {
            throw error(errc::bad_request, "no request " + std::to_string(id) + " is waiting for a reply");
        }
        // The connection was lost with this request's reply in it, or with the request: the agent
        // kept no copy to send again, or never saw it.
        if (auto fate = m_unanswerable.find(id); fate != m_unanswerable.end()) {
            const bool ran = fate->second;
            m_unanswerable.erase(fate);
            forget(id);
            if (ran) {
                throw error(errc::reply_lost, "the call ran on " + m_options.name + " (" + m_options.address +
                                                  "), but its reply was lost with a connection that broke, and "
                                                  "was too large to keep for a resend (over 1 MiB); do not "
                                                  "simply retry it if running it twice matters");
            }
            throw error(errc::agent_unreachable, "the connection to " + m_options.name + " (" + m_options.address +
                                                     ") broke, and the call had not reached it: it did not run, "
                                                     "so one retry runs it once");
        }
        // The agent answered a ping sent after this request without knowing our session (it
        // restarted, or the session expired): no reply will come.
        if (id < m_session_gone_before) {
            const bool reached = m_acknowledged_before_loss >= id || m_direct_reached.count(id) != 0;
            forget(id);
            throw error(errc::session_lost,
                        m_options.name + " (" + m_options.address +
                            ") no longer has this session (the agent restarted, or the session expired), so no reply "
                            "will come; " +
                            (reached ? "the call had reached it and may have run there"
                                     : "whether the call had reached it is unknown (nothing sent after it was "
                                       "answered before), so it may have run there") +
                            ". Objects from before are gone; the next call opens a new session");
        }
        // Its direct connection broke with it in flight and did not come back within the liveness
        // timeout: as a relayed call whose agent fell silent, it is unreachable (reply_lost is only
        // for a reply the agent says it sent and kept no copy of).
        if (auto lost = m_direct_lost.find(id); lost != m_direct_lost.end()) {
            const bool reached = lost->second;
            forget(id);
            const auto now = channel_clock::now();
            const error silent =
                now - m_last_heard < m_options.liveness
                    ? error(errc::agent_unreachable,
                            "the direct connection to the session's worker on " + m_options.name + " (" +
                                m_options.address + ") was down for " + seconds_text(m_options.liveness) +
                                " s with this call in flight, though the agent's port answered")
                    : unreachable();
            throw unreachable_call(silent, reached);
        }
        // A failure the monitor reported after this request was sent is known: say it now. (A
        // failing link reports again at each reconnect, at least once a second.)
        if (m_link_failure != link_failure::none && m_link_failed > waiting->second) {
            forget(id);
            throw link_error();
        }
        auto now = channel_clock::now();
        // Time nobody here listened (this process stopped, or its caller blocked writing output)
        // is not the agent's silence: it gets the liveness timeout again from when we listen again.
        if (waiting->second < m_last_listened && now - m_last_listened > m_options.ping_after * 2) {
            m_resumed = now;
            m_stalled_for = std::chrono::duration_cast<std::chrono::milliseconds>(now - m_last_listened);
        }
        m_last_listened = std::max(m_last_listened, now);
        const auto silent_since = std::max({m_last_heard, waiting->second, m_resumed});
        const auto give_up = silent_since + m_options.liveness;
        if (now >= give_up) {
            fail_unreachable(id, lock);
        }
        if (now >= until) {
            return std::nullopt;
        }
        if (m_socket_busy || m_senders_waiting > 0) {
            m_changed.wait_until(lock, std::min(until, give_up));
            continue;
        }

        m_socket_busy = true;
        std::uint64_t ping = 0;
        const auto ping_at = std::max(silent_since, m_last_ping) + m_options.ping_after;
        if (now >= ping_at) {
            ping = m_next_id++;
            m_last_ping = m_last_sent = now;
        }
        const auto wake_at = std::min({until, give_up, ping ? now + m_options.ping_after : ping_at});
        // What was handed out before this thread listens again has been written: acknowledge it.
        // After a reconnect, output sent over the old connection may be lost: acknowledge all the
        // agent sent (it takes an "at" past it as that), or its window would stay closed for ever.
        const bool resync = m_handshakes > 1 && m_handshakes != m_resynced;
        const std::uint64_t ack_at =
            resync ? std::numeric_limits<std::uint64_t>::max() : (ack_due(now) ? m_output_taken : 0);
        const std::uint64_t ack_id = ack_at != 0 ? m_next_id++ : 0;
        const std::uint64_t handshakes_seen = m_handshakes;
        const std::uint64_t probe_id = ping != 0 && was_sent_direct(id) ? m_next_id++ : 0;
        const std::uint64_t probe_at = m_output_acked;
        lock.unlock();

        std::vector<message> arrived, arrived_direct;
        bool interrupted = false;
        bool ack_sent = false;
        bool direct_usable = true;
        try {
            // What the monitors hold is read after the poll below, which returns at once for it.
            direct_usable = read_direct_monitor(false);
            if (ping != 0) try_ping(ping);
            if (ack_at != 0) ack_sent = try_ack(ack_id, ack_at);
            // A call sent the direct way: the IO thread's answer to an ack says whether it reached the worker.
            if (ping != 0 && ack_at == 0 && probe_id != 0) (void)try_ack(probe_id, probe_at);
            const auto timeout = std::chrono::duration_cast<milliseconds>(wake_at - now) + milliseconds(1);
            // One poll(2) for all of them (socket_watch.hpp), not zmq_poll's two questions per socket.
            socket_watch* watched[] = {&m_socket_watch, &m_monitor_watch, m_direct ? &m_direct->socket_state : nullptr,
                                       m_direct ? &m_direct->monitor_state : nullptr};
            bool ready[std::size(watched)] = {};
            pollfd wake{m_wake_fd, POLLIN, 0};
            try {
                (void)poll_watched(watched, std::size(watched), ready, &wake, 1,
                                   static_cast<long>(std::max(timeout, milliseconds(0)).count()));
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR) throw;
                interrupted = true;  // a signal: let the caller look at it now
            }
            if (wake.revents & POLLIN) {
                std::uint64_t count;
                [[maybe_unused]] auto got = ::read(m_wake_fd, &count, sizeof count);
            }
            if (ready[0]) {
                read_available(arrived);
            }
            if (ready[1]) {
                read_monitor();
            }
            if (m_direct && ready[2]) direct_arrived(arrived_direct);
            if (m_direct && ready[3]) direct_usable = direct_usable && read_direct_monitor();
        } catch (...) {
            lock.lock();
            release_socket(lock);
            throw;
        }
        lock.lock();
        m_last_listened = channel_clock::now();
        if (ack_sent && resync) {
            m_resynced = handshakes_seen;
            m_last_ack = m_last_sent = now;
        } else if (ack_sent) {
            acked(ack_at, now);
        }
        if (m_last_listened - wake_at > m_options.ping_after * 2) {
            // The poll overslept: this process was stopped (Ctrl-Z, a debugger) meanwhile.
            m_resumed = m_last_listened;
            m_stalled_for = std::chrono::duration_cast<std::chrono::milliseconds>(m_last_listened - now);
        }
        dispatch(arrived_direct, m_last_listened, true);
        dispatch(arrived, m_last_listened);
        if (!direct_usable) drop_direct();
        release_socket(lock);
        if (interrupted && m_replies.count(id) == 0 && m_events.empty() && m_events_for.count(id) == 0) {
            return std::nullopt;
        }
    }
}

void channel::keepalive_loop() {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_closed) {
        // Its own condition: m_changed is notified several times a round trip, and each would wake it.
        m_keepalive_wake.wait_for(lock, std::min(m_options.keepalive / 2, m_options.ping_after));
        if (m_closed) {
            break;
        }
        const auto now = channel_clock::now();
        if (m_socket_busy || m_senders_waiting > 0) {
            continue;
        }
        if (!m_waiting.empty()) {
            keep_session_while_blocked(lock, now);
            continue;
        }
        if (ack_due(now)) {
            // Output a call wrote just before it returned: nobody listens again soon to say so.
            m_socket_busy = true;
            const std::uint64_t ack_id = m_next_id++;
            const std::uint64_t at = m_output_taken;
            lock.unlock();
            bool sent = false;
            try {
                sent = try_ack(ack_id, at);
            } catch (const std::exception&) {
            }
            lock.lock();
            if (sent) acked(at, now);
            release_socket(lock);
        }
        if (now - m_last_sent < m_options.keepalive) {
            continue;
        }
        m_socket_busy = true;
        const std::uint64_t ping = m_next_id++;
        m_last_sent = m_last_ping = now;
        lock.unlock();
        std::vector<message> arrived, arrived_direct;
        bool direct_usable = true;
        try {
            read_monitor();
            direct_usable = read_direct_monitor();
            read_available(arrived);  // replies nobody waits for, output printed after a call returned
            direct_arrived(arrived_direct);
            try_ping(ping);
        } catch (const std::exception&) {
            // the next request reports what is wrong; an idle ping has nobody to tell
        }
        lock.lock();
        dispatch(arrived_direct, channel_clock::now(), true);
        dispatch(arrived, channel_clock::now());
        if (!direct_usable) drop_direct();
        release_socket(lock);
    }
}

void channel::note_taken(const message& event) {
    if (const auto at = event.header.find("at"); at != event.header.end() && at->is_number_unsigned()) {
        m_output_taken = std::max(m_output_taken, at->get<std::uint64_t>());
    }
}

bool channel::ack_due(time_point now) const {
    if (m_output_taken <= m_output_acked) return false;
    // Often enough that the window never closes on a client that keeps up, and at least once per
    // ping interval: while output flows nothing else is sent, and these are the session's sign of life.
    return m_output_taken - m_output_acked >= output_ack_every || now - m_last_ack >= m_options.ping_after;
}

bool channel::try_ack(std::uint64_t id, std::uint64_t at) {
    nlohmann::json header{{"op", op::ack.name}, {"at", at}, {"id", id}, {"session", m_options.session}};
    if (nlohmann::json direct = direct_waiting(); !direct.empty()) header["direct"] = std::move(direct);
    zmq::message_t ack = encode_header(header);
    m_socket_watch.used();
    return m_socket.send(ack, zmq::send_flags::dontwait).has_value();
}

void channel::acked(std::uint64_t at, time_point now) {
    m_output_acked = std::max(m_output_acked, at);
    m_last_ack = m_last_sent = now;
}

// A caller waits for a reply but nobody listens (it blocks writing output: a pager, a full pipe):
// that is not a client gone, so the session hears from us. A ping only; what arrives stays in the
// socket for the caller, and the output it has not written is not acknowledged.
void channel::keep_session_while_blocked(std::unique_lock<std::mutex>& lock, time_point now) {
    if (now - m_last_listened < m_options.ping_after * 2 || now - m_last_sent < m_options.ping_after) return;
    m_socket_busy = true;
    const std::uint64_t ping = m_next_id++;
    m_last_sent = now;
    lock.unlock();
    try {
        try_ping(ping);
    } catch (const std::exception&) {
    }
    lock.lock();
    release_socket(lock);
}

}  // namespace splitcore
