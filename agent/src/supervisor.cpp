#include "supervisor.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "direct.hpp"
#include "log.hpp"

namespace splitbrain::agent {

namespace fs = std::filesystem;
using splitcore::json;
using splitcore::errc;

namespace {

std::string hostname() {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    return name;
}

// What a peer sent, safe to echo inside an error message.
std::string printable(const std::string& text) {
    std::string out;
    for (char c : text.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (text.size() > 64) out += "...";
    return out;
}

std::string short_token(const std::string& token) { return printable(token.substr(0, 12)); }

// The lease holder of a session without a client key (--insecure): its token in hex, so the worker,
// which reads the holder as text, gets valid UTF-8 whatever bytes the client chose for its token.
std::string keyless_holder(const std::string& token) {
    static const char digits[] = "0123456789abcdef";
    std::string out = "session:";
    for (const unsigned char c : token) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char* name = sigabbrev_np(sig);
        return "killed by SIG" + std::string(name ? name : std::to_string(sig).c_str());
    }
    return "status " + std::to_string(status);
}

void write_connection_file(const fs::path& file, const std::string& endpoint,
                           const std::optional<std::string>& public_key) {
    const json content = {{"address", endpoint}, {"public_key", public_key ? json(*public_key) : json(nullptr)}};
    const fs::path temporary = file.string() + ".tmp-" + std::to_string(::getpid());
    const std::string text = content.dump(2) + "\n";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot write " + temporary.string() + ": " + std::strerror(errno));
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written || ::rename(temporary.c_str(), file.c_str()) != 0) {
        const int err = errno;
        ::unlink(temporary.c_str());
        throw std::runtime_error("cannot write " + file.string() + ": " + std::strerror(err));
    }
}

std::string seconds_text(std::chrono::milliseconds duration) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", static_cast<double>(duration.count()) / 1000.0);
    return text;
}

zmq::message_t frame_of(const std::string& text) { return zmq::message_t(text.data(), text.size()); }

}  // namespace

std::string reachable_address(const std::string& endpoint) {
    if (endpoint.rfind("tcp://", 0) != 0) return endpoint;
    const auto colon = endpoint.rfind(':');
    const std::string host = endpoint.substr(6, colon - 6);
    if (host != "0.0.0.0" && host != "*" && host != "[::]" && host != "::") return endpoint;
    std::string address;
    ifaddrs* interfaces = nullptr;
    if (::getifaddrs(&interfaces) == 0) {
        for (const ifaddrs* i = interfaces; i != nullptr && address.empty(); i = i->ifa_next) {
            if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
            const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
            if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
            char text[INET_ADDRSTRLEN] = {};
            if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) != nullptr) address = text;
        }
        ::freeifaddrs(interfaces);
    }
    if (address.empty()) address = hostname();
    return "tcp://" + address + endpoint.substr(colon);
}

bool is_loopback_endpoint(const std::string& endpoint) {
    if (endpoint.rfind("ipc://", 0) == 0) return true;
    if (endpoint.rfind("tcp://", 0) != 0) return false;
    std::string host = endpoint.substr(6);
    if (host.rfind("[::1]:", 0) == 0) return true;
    const auto colon = host.rfind(':');
    if (colon == std::string::npos) return false;
    host = host.substr(0, colon);
    return host == "localhost" || host.rfind("127.", 0) == 0;
}

supervisor::supervisor(options opts) : m_options(std::move(opts)) {
    if (m_options.insecure) {
        if (!is_loopback_endpoint(m_options.listen)) {
            throw std::runtime_error("--insecure is only allowed on a loopback address (tcp://127.0.0.1:PORT), not " +
                                     m_options.listen);
        }
    } else {
        m_keys = splitcore::key_pair::load(m_options.key_dir);
        reload_authorized_keys();
    }

    std::string pattern = (fs::temp_directory_path() / "splitbrain-agent-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error(std::string("cannot create a private directory: ") + std::strerror(errno));
    }
    if (m_options.audit_log) {
        m_audit = audit_trail(
            std::make_unique<audit_log>(*m_options.audit_log, m_options.audit_max_bytes, m_options.audit_keep));
    }
    m_private_dir = pattern;  // mkdtemp makes it 0700
    m_leases.emplace(m_private_dir / "leases.json", hostname(), m_options.resources);
    start_janitor();
    // Workers forked by the zygote are re-parented here (zygote.hpp): we wait for them as for our own.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    m_backend_endpoint = "ipc://" + (m_private_dir / "workers").string();

    m_frontend = zmq::socket_t(m_context, zmq::socket_type::router);
    m_backend = zmq::socket_t(m_context, zmq::socket_type::router);
    if (m_keys) {
        // ZAP must be bound before a CURVE socket accepts anything, or libzmq lets clients in.
        m_zap = zmq::socket_t(m_context, zmq::socket_type::rep);
        m_zap.set(zmq::sockopt::linger, 0);
        m_zap.bind("inproc://zeromq.zap.01");
        m_frontend.set(zmq::sockopt::curve_server, 1);
        m_frontend.set(zmq::sockopt::curve_secretkey, m_keys->secret_key);
    }
    // Routing ids are ours: clients do not set one, the ROUTER assigns one per connection, and a
    // peer that claims an id already in use is refused rather than handed the route.
    m_frontend.set(zmq::sockopt::router_handover, 0);
    m_frontend.set(zmq::sockopt::router_mandatory, 1);
    // No ZMTP heartbeat: a fixed heartbeat timeout dropped the connection of a client that was
    // only stopped (Ctrl-Z) or cut off for a few seconds, with the replies in its buffers. The
    // client's liveness governs: its pings, and the session's grace period. TCP keepalive ends
    // connections to hosts that are gone; a reply whose connection is gone waits in the session
    // (deliver()) until its client sends again.
    m_frontend.set(zmq::sockopt::heartbeat_ivl, 0);
    m_frontend.set(zmq::sockopt::tcp_keepalive, 1);
    m_frontend.set(zmq::sockopt::tcp_keepalive_idle, 30);
    m_frontend.set(zmq::sockopt::tcp_keepalive_intvl, 10);
    m_frontend.set(zmq::sockopt::tcp_keepalive_cnt, 3);
    // --max-message is checked frame by frame in receive_client(), with a reply. libzmq's own
    // per-frame limit drops the connection without one, so it is only a backstop far above.
    const std::int64_t backstop =
        m_options.max_message > (std::int64_t(1) << 60) / 4
            ? -1
            : std::max(m_options.max_message * 4, m_options.max_message + (std::int64_t(64) << 20));
    m_frontend.set(zmq::sockopt::maxmsgsize, backstop);
    m_frontend.set(zmq::sockopt::sndhwm, 100000);
    m_frontend.set(zmq::sockopt::linger, 0);
    try {
        m_frontend.bind(m_options.listen);
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot listen on " + m_options.listen + ": " + e.what());
    }
    m_endpoint = m_frontend.get(zmq::sockopt::last_endpoint);

    m_backend.set(zmq::sockopt::sndhwm, 0);
    m_backend.set(zmq::sockopt::rcvhwm, 0);
    m_backend.set(zmq::sockopt::linger, 0);
    m_backend.bind(m_backend_endpoint);

    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&signals, sig);
    m_signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m_signal_fd < 0) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));

    if (m_options.connection_file) {
        const std::string advertised =
            m_options.advertise.empty() ? reachable_address(m_endpoint) : m_options.advertise;
        if (advertised != m_endpoint) log("clients reach it as " + advertised + " (written to the connection file)");
        write_connection_file(*m_options.connection_file, advertised,
                              m_keys ? std::optional<std::string>(m_keys->public_key) : std::nullopt);
    }
    log("listening on " + m_endpoint +
        (m_keys ? " (CURVE, " + std::to_string(m_limits.size()) + " authorized keys, public key " + m_keys->public_key +
                      ")"
                : " (INSECURE: no encryption, no authentication; loopback only)"));
    if (!m_options.labgrid_place.empty()) {
        const fs::path python = fs::is_directory(m_options.python) ? fs::path(m_options.python) / "bin" / "python"
                                                                   : fs::path(m_options.python);
        m_place.emplace(place_check::settings{m_options.labgrid_coordinator, m_options.labgrid_place, python,
                                              m_options.place_watch, m_options.labgrid_timeout});
    }
    ensure_spare();
}

void supervisor::start_janitor() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    const std::string directory = m_private_dir.string();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("cannot start the janitor: fork: ") + std::strerror(errno));
    if (pid == 0) {
        ::close(fds[1]);
        ::setpgid(0, 0);  // a Ctrl-C at the agent's terminal is for the supervisor, not for us
        ::signal(SIGINT, SIG_IGN);
        ::signal(SIGTERM, SIG_IGN);
        ::prctl(PR_SET_NAME, "sb-janitor");
        std::set<pid_t> groups;
        std::string pending;
        char buffer[512];
        for (;;) {
            const ssize_t got = ::read(fds[0], buffer, sizeof buffer);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;  // the supervisor is gone, however it ended
            pending.append(buffer, static_cast<std::size_t>(got));
            for (std::size_t end; (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
                const pid_t group = static_cast<pid_t>(std::strtol(pending.c_str() + 1, nullptr, 10));
                if (group <= 1) continue;
                if (pending[0] == '+') groups.insert(group);
                else groups.erase(group);
            }
        }
        for (const pid_t group : groups) ::kill(-group, SIGKILL);
        std::error_code ignored;
        fs::remove_all(directory, ignored);
        ::_exit(0);
    }
    ::close(fds[0]);
    m_janitor = fds[1];
    ::fcntl(m_janitor, F_SETFL, O_NONBLOCK);
    ::signal(SIGPIPE, SIG_IGN);  // a janitor that died must not take the supervisor with it
}

void supervisor::tell_janitor(char change, pid_t group) {
    if (m_janitor < 0) return;
    const std::string line = change + std::to_string(group) + "\n";
    // Lines are far below PIPE_BUF, so each write is whole or nothing; a full pipe (a janitor that
    // stopped reading) costs the record of one group, not a blocked supervisor.
    if (::write(m_janitor, line.data(), line.size()) < 0 && errno != EAGAIN) {
        log(std::string("the janitor is gone (") + std::strerror(errno) + "); workers may outlive a killed agent");
        ::close(m_janitor);
        m_janitor = -1;
    }
}

supervisor::~supervisor() {
    shutdown_workers();
    if (m_signal_fd >= 0) ::close(m_signal_fd);
    if (m_janitor >= 0) ::close(m_janitor);  // the janitor finds nothing left to do, and exits
    std::error_code ignored;
    fs::remove_all(m_private_dir, ignored);
}

int supervisor::run() {
    while (!m_stopping) {
        std::vector<zmq_pollitem_t> items = {
            {m_frontend.handle(), 0, ZMQ_POLLIN, 0},
            {m_backend.handle(), 0, ZMQ_POLLIN, 0},
            {nullptr, m_signal_fd, ZMQ_POLLIN, 0},
        };
        if (m_zap) items.push_back({m_zap.handle(), 0, ZMQ_POLLIN, 0});
        const std::size_t zygote_item = items.size();
        if (m_zygote_fd >= 0) items.push_back({nullptr, m_zygote_fd, ZMQ_POLLIN, 0});
        const std::size_t place_item = items.size();
        if (m_place && m_place->fd() >= 0) items.push_back({nullptr, m_place->fd(), ZMQ_POLLIN, 0});
        const int ready = zmq_poll(items.data(), static_cast<int>(items.size()), 500);
        if (ready < 0) {
            if (zmq_errno() == EINTR) continue;
            throw zmq::error_t();
        }
        try {
            if (m_zap && (items[3].revents & ZMQ_POLLIN)) handle_zap();
            if (zygote_item < items.size() && (items[zygote_item].revents & ZMQ_POLLIN)) read_zygote();
            // Worker messages before deaths: a worker's last replies must not be overtaken by its SIGCHLD.
            for (int i = 0; i < 256 && (items[1].revents & ZMQ_POLLIN); ++i) {
                if (m_backend.get(zmq::sockopt::events) & ZMQ_POLLIN) handle_worker();
                else break;
            }
            if (items[2].revents & ZMQ_POLLIN) handle_signals();
            for (int i = 0; i < 256 && (items[0].revents & ZMQ_POLLIN); ++i) {
                if (m_frontend.get(zmq::sockopt::events) & ZMQ_POLLIN) handle_client();
                else break;
            }
            for (auto& [token, s] : m_sessions) flush_held(s);  // a full pipe that drained meanwhile
            if (m_place) serve_place(place_item < items.size() && (items[place_item].revents & ZMQ_POLLIN));
            reap_silent_sessions();
            m_leases->expire();
            kill_stubborn_workers();
            ensure_spare();
            if (m_options.parent_pid > 0 && ::kill(m_options.parent_pid, 0) != 0 && errno == ESRCH) {
                log("process " + std::to_string(m_options.parent_pid) + " (--exit-with) has ended");
                m_stopping = true;
            }
        } catch (const std::exception& e) {
            // Whatever went wrong with one message or one worker, the other sessions go on.
            log(std::string("internal error: ") + e.what());
        }
    }
    log("shutting down");
    shutdown_workers();
    return 0;
}

void supervisor::reload_authorized_keys() { (void)m_limits.reload(m_options.authorized_keys); }

void supervisor::handle_zap() {
    auto request = splitcore::recv_parts(m_zap, zmq::recv_flags::dontwait);
    if (!request) return;
    reload_authorized_keys();  // one stat per handshake: `authorize` needs no restart
    auto text = [&](std::size_t i) { return i < request->size() ? (*request)[i].to_string() : std::string(); };
    bool allowed = false;
    std::string key;
    if (request->size() >= 7 && text(5) == "CURVE" && (*request)[6].size() == 32) {
        key = splitcore::z85_encode_key((*request)[6].data());
        allowed = m_limits.authorized(key);
    }
    if (!allowed) {
        // A refused client keeps reconnecting (every 100 ms or so): one line per key and minute.
        auto& [last_logged, suppressed] = m_refusals[key];
        const auto now = clock::now();
        if (last_logged == clock::time_point{} || now - last_logged > std::chrono::minutes(1)) {
            log("refused client key " + (key.empty() ? std::string("(none)") : key) + " from " + printable(text(3)) +
                ": not in " + m_options.authorized_keys.string() +
                (suppressed ? " (" + std::to_string(suppressed) + " more attempts since the last report)" : ""));
            last_logged = now;
            suppressed = 0;
        } else {
            ++suppressed;
        }
        if (m_refusals.size() > 10000) m_refusals.clear();  // bounded, whatever a scanner sends
    }
    std::vector<zmq::message_t> reply;
    reply.push_back(frame_of("1.0"));
    reply.push_back(frame_of(text(1)));
    reply.push_back(frame_of(allowed ? "200" : "400"));
    reply.push_back(frame_of(allowed ? "OK" : "client key not authorized"));
    reply.push_back(frame_of(allowed ? key : ""));
    reply.push_back(frame_of(""));
    splitcore::send_parts(m_zap, reply);
}

void supervisor::reply_error(const zmq::message_t& routing_id, std::uint64_t id, splitcore::errc error_code,
                             const std::string& detail) {
    reply_to(routing_id, splitcore::error_reply(id, splitcore::error_value(error_code, detail)));
}

void supervisor::reply_to(const zmq::message_t& routing_id, const json& header) {
    parts message;
    message.emplace_back(routing_id.data(), routing_id.size());
    message.push_back(splitcore::encode_header(header));
    (void)try_send_client(message);  // that connection is gone or not reading: it asks again
}

bool supervisor::try_send_client(parts& message) {
    // ZMQ_ROUTER_MANDATORY: an unknown route (the connection dropped) or a full pipe is an error
    // here, not a message silently thrown away. Only the first part can meet either.
    for (;;) {
        if (zmq_msg_send(message[0].handle(), m_frontend.handle(), ZMQ_DONTWAIT | ZMQ_SNDMORE) >= 0) break;
        if (zmq_errno() == EINTR) continue;
        if (zmq_errno() == EAGAIN || zmq_errno() == EHOSTUNREACH) return false;
        throw zmq::error_t();
    }
    for (std::size_t i = 1; i < message.size(); ++i) {
        for (;;) {
            if (zmq_msg_send(message[i].handle(), m_frontend.handle(), i + 1 < message.size() ? ZMQ_SNDMORE : 0) >= 0) {
                break;
            }
            if (zmq_errno() != EINTR) throw zmq::error_t();
        }
    }
    return true;
}

void supervisor::deliver(session& s, parts message, bool) {
    message[0] = frame_of(s.routing_id);
    if (s.held.empty() && try_send_client(message)) return;
    if (s.held.empty()) log("session " + short_token(s.token) + ": its client is not reachable; holding its replies");
    // Nothing is dropped: the output held is bounded by the worker's window (output_window), which
    // does not open again before the client acknowledges what it wrote.
    std::size_t size = 0;
    for (const auto& part : message) size += part.size();
    s.held_bytes += size;
    s.held.push_back(std::move(message));
}

void supervisor::remember_reply(session& s, parts& message, std::uint64_t id) {
    constexpr std::size_t max_ids = 1024, max_kept = 16, max_one = std::size_t(1) << 20, max_all = std::size_t(8) << 20;
    s.replied.push_back(id);
    if (s.replied.size() > max_ids) s.replied.pop_front();
    std::size_t size = 0;
    for (const auto& part : message) size += part.size();
    if (size > max_one) return;
    parts copy(message.size());  // zmq_msg_copy: a large part's buffer is shared, not copied
    for (std::size_t i = 0; i < message.size(); ++i) copy[i].copy(message[i]);
    s.recent.emplace_back(id, std::move(copy));
    s.recent_bytes += size;
    while (s.recent.size() > max_kept || s.recent_bytes > max_all) {
        for (const auto& part : s.recent.front().second) s.recent_bytes -= std::min(s.recent_bytes, part.size());
        s.recent.pop_front();
    }
}

void supervisor::answer_waiting(session& s, const json& waiting, json& pong) {
    if (!waiting.is_array()) return;
    json lost = json::array(), unseen = json::array();
    std::size_t asked = 0;
    for (const json& entry : waiting) {
        if (++asked > 64 || !entry.is_number_unsigned()) break;  // a client asks for at most 64
        const auto id = entry.get<std::uint64_t>();
        if (s.pending.count(id) != 0) continue;  // still running: its reply comes as usual
        const auto kept = std::find_if(s.recent.begin(), s.recent.end(), [id](const auto& r) { return r.first == id; });
        if (kept != s.recent.end()) {
            parts again(kept->second.size());
            for (std::size_t i = 0; i < again.size(); ++i) again[i].copy(kept->second[i]);
            json header = splitcore::decode_header(again.at(1));
            header["again"] = true;  // a copy: the client drops it if the first one did arrive
            again[1] = splitcore::encode_header(header);
            log("session " + short_token(s.token) + ": reply " + std::to_string(id) +
                " sent again (its client's connection was lost with it)");
            deliver(s, std::move(again), false);
        } else if (std::find(s.replied.begin(), s.replied.end(), id) != s.replied.end()) {
            lost.push_back(id);
        } else {
            unseen.push_back(id);
        }
    }
    if (!lost.empty()) pong["lost"] = std::move(lost);
    if (!unseen.empty()) pong["unseen"] = std::move(unseen);
}

void supervisor::flush_held(session& s) {
    while (!s.held.empty()) {
        parts& message = s.held.front();
        message[0] = frame_of(s.routing_id);
        std::size_t size = 0;
        for (const auto& part : message) size += part.size();
        if (!try_send_client(message)) return;
        s.held_bytes -= std::min(s.held_bytes, size);
        s.held.pop_front();
    }
}

std::optional<supervisor::parts> supervisor::receive_client(std::int64_t& oversized) {
    parts message;
    std::int64_t total = 0;  // bytes after the routing id
    oversized = 0;
    for (;;) {
        zmq::message_t part;
        const int rc = zmq_msg_recv(part.handle(), m_frontend.handle(), message.empty() ? ZMQ_DONTWAIT : 0);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == EAGAIN && message.empty()) return std::nullopt;
            throw zmq::error_t();
        }
        const bool more = part.more();
        if (!message.empty()) total += static_cast<std::int64_t>(part.size());
        if (total > m_options.max_message) {
            // Keep the routing id and the header (for the reply's id); drop the rest as it comes.
            oversized = total;
            if (message.size() > 2) message.resize(2);
            if (message.size() < 2) message.push_back(std::move(part));
        } else {
            message.push_back(std::move(part));
        }
        if (!more) return message;
    }
}

void supervisor::handle_client() {
    std::int64_t oversized = 0;
    auto received = receive_client(oversized);
    if (!received) return;
    serve_client(*received, oversized);
}

void supervisor::remember_refused_hello(const std::string& token, const std::string& client_key, const json& error) {
    constexpr std::size_t max_kept = 256;
    if (m_refused_hellos.size() >= max_kept && m_refused_hellos.count(token) == 0) {
        m_refused_hellos.erase(
            std::min_element(m_refused_hellos.begin(), m_refused_hellos.end(),
                             [](const auto& a, const auto& b) { return a.second.when < b.second.when; }));
    }
    m_refused_hellos[token] = refusal{client_key, error, clock::now()};
}

const json* supervisor::refused_hello(const std::string& token, const std::string& client_key) {
    const auto found = m_refused_hellos.find(token);
    if (found == m_refused_hellos.end()) return nullptr;
    if (clock::now() - found->second.when > std::chrono::seconds(30)) {
        m_refused_hellos.erase(found);
        return nullptr;
    }
    return found->second.client_key == client_key ? &found->second.error : nullptr;
}

bool supervisor::hold_behind_hello(const std::string& token, parts& message) {
    constexpr std::size_t max_held = 64;
    for (auto& waiting : m_deferred_hellos) {
        if (waiting.header.value("session", "") != token) continue;
        if (waiting.later.size() >= max_held) return false;
        waiting.later.push_back(std::move(message));
        return true;
    }
    return false;
}

void supervisor::serve_client(parts& message, std::int64_t oversized) {
    const zmq::message_t routing_id(message[0].data(), message[0].size());  // message moves on to a worker
    if (message.size() < 2) {
        reply_error(routing_id, 0, errc::bad_request, "empty message: a CBOR header frame was expected");
        return;
    }
    if (oversized) {
        std::uint64_t id = 0;
        try {
            id = splitcore::request_id(splitcore::decode_header(message[1]));
        } catch (const splitcore::error&) {
        }
        reply_error(routing_id, id, errc::bad_request,
                    "message of " + std::to_string(oversized) + " bytes exceeds --max-message " +
                        std::to_string(m_options.max_message));
        return;
    }
    std::string client_key;
    if (m_keys) {
        const char* user_id = zmq_msg_gets(message[1].handle(), "User-Id");
        if (user_id != nullptr) client_key = user_id;
    }

    std::uint64_t id = 0;
    std::string op_name, named_token;  // for the audit log of a refused request
    try {
        json header = splitcore::decode_header(message[1]);
        if (const json* raw_id = splitcore::optional_field(header, "id")) id = splitcore::as_uint(*raw_id).value_or(0);
        id = splitcore::request_id(header);
        const std::string& name = splitcore::string_field(header, "op");
        op_name = printable(name);
        const splitcore::operation* op = splitcore::op::find(name);
        if (op == nullptr) {
            throw splitcore::error(errc::unknown_op, "no operation \"" + printable(name) +
                                                         "\" in protocol version 1 (see docs/protocol.md)");
        }

        // Every request names its session; only the key that opened the session may name it. The
        // connection it came on becomes the session's route: after a transparent reconnect (a new
        // connection, a new routing id assigned by our ROUTER) the first message over it, queued
        // ones included, moves the replies there. A routing id never identifies a session.
        session* current = nullptr;
        if (const json* named = splitcore::optional_field(header, "session"); named && named->is_string()) {
            named_token = printable(named->get<std::string>());
            if (auto found = m_sessions.find(named->get<std::string>());
                found != m_sessions.end() && found->second.client_key == client_key) {
                current = &found->second;
            } else if (!m_expired.empty()) {
                tell_expired(routing_id, named->get<std::string>(), client_key);
            }
        }
        if (current && (op == &splitcore::op::ping || op == &splitcore::op::ack)) {
            current->direct_pending.clear();
            if (const json* direct = splitcore::optional_field(header, "direct"); direct && direct->is_array()) {
                for (const json& each : *direct) {
                    if (each.is_number_unsigned()) current->direct_pending.insert(each.get<std::uint64_t>());
                }
            }
        }
        if (current) {
            current->last_seen = clock::now();
            current->routing_id = routing_id.to_string();
            flush_held(*current);  // replies that waited for their client to come back
        } else if (op != &splitcore::op::ping && op != &splitcore::op::hello && !named_token.empty()) {
            // Sent right behind its hello (pipelined): it waits with it, or gets the hello's refusal.
            const std::string& token = splitcore::string_field(header, "session");
            if (const json* refused = refused_hello(token, client_key)) {
                m_audit.answered(named_token, m_limits.who(client_key), op_name, "",
                                 refused->value("code", std::string()));
                reply_to(routing_id, splitcore::error_reply(id, *refused));
                return;
            }
            if (hello_waits(token) && hold_behind_hello(token, message)) return;
        }

        if (op == &splitcore::op::ping) {
            json pong = splitcore::ok_reply(id, nullptr);
            // A client waiting across our restart (or its session's expiry) learns that no reply will come.
            // (A hello waiting for the labgrid coordinator's answer is a session on its way.)
            if (!current && splitcore::optional_field(header, "session") && !hello_waits(named_token)) {
                pong["known"] = false;
            }
            // Calls sent straight to a worker that died (direct.hpp): answered as its pending ones were.
            if (const json* direct = splitcore::optional_field(header, "direct"); current && current->lost && direct) {
                answer_lost_direct(*current, *direct);
            }
            if (const json* waiting = splitcore::optional_field(header, "waiting"); current && waiting) {
                answer_waiting(*current, *waiting, pong);
            }
            reply_to(routing_id, pong);
            return;
        }
        if (op->answered_by == splitcore::tier::supervisor) {
            static_assert(splitcore::op::count(splitcore::tier::supervisor) == 4,
                          "the supervisor answers ping and the lease operations");
            if (!current) throw splitcore::error(errc::no_session, "no session: send \"hello\" first");
            json result = m_leases->answer(op->name, header, lease_holder(*current));
            m_audit.answered(current->token, m_limits.who(client_key), op_name, "", "ok");
            current->replied.push_back(id);  // it ran: a waiting ping for it hears "lost", not "unseen"
            if (current->replied.size() > 1024) current->replied.pop_front();
            reply_to(routing_id, splitcore::ok_reply(id, std::move(result)));
            return;
        }
        if (op == &splitcore::op::hello) {
            const json* token = splitcore::optional_field(header, "session");
            const std::string named = token != nullptr && token->is_string() ? token->get<std::string>() : "";
            try {
                hello(routing_id, client_key, id, std::move(header), message);
            } catch (const splitcore::error& e) {
                if (!named.empty() && named.size() <= 128) {
                    remember_refused_hello(named, client_key, splitcore::error_value(e));
                }
                throw;
            }
            return;
        }
        if (!current) {
            throw splitcore::error(errc::no_session,
                                   "no session: send \"hello\" first, and name its token in field \"session\" of every "
                                   "request (a session is only its own client key's)");
        }
        if (current->lost) {
            throw splitcore::error(errc::session_lost,
                                   "the session's worker on " + hostname() + " " +
                                       (current->lost_why.empty() ? std::string("died") : current->lost_why) +
                                       "; its objects are gone. Reconnect to start a new session");
        }
        if (op != &splitcore::op::bye && op != &splitcore::op::release && op != &splitcore::op::cancel) {
            m_leases->check_request(current->token, lease_holder(*current).key, !current->direct);
            if (m_place) check_place_request(*current);
        }
        if (op == &splitcore::op::bye) current->bye_id = id;
        m_audit.begin(current->token, m_limits.who(client_key), id, header, message, 2);
        // A bye from a client that waits for nothing else ("idle": no call of it is in flight, either
        // way), with nothing of the session pending here, is answered at once: what it sent before
        // has been answered, so the worker's ending changes nothing the client can see, and its
        // close() returns a round trip through the worker sooner (issue 11 point 4). The worker
        // still ends in order, as asked; not with --audit-log, whose record of the bye is the worker's.
        const json* idle = op == &splitcore::op::bye ? splitcore::optional_field(header, "idle") : nullptr;
        const bool answer_now = idle != nullptr && idle->is_boolean() && idle->get<bool>() && !m_options.audit_log &&
                                current->pending.empty() && current->direct_pending.empty() && current->held.empty();
        forward_to_worker(*current, id, std::move(message));
        if (answer_now) {
            current->pending.erase(id);
            current->bye_answered = true;
            reply_to(routing_id, splitcore::ok_reply(id, nullptr));
        }
    } catch (const splitcore::error& e) {
        m_audit.answered(named_token, m_limits.who(client_key), op_name, "", std::string(splitcore::name(e.code())));
        reply_to(routing_id, splitcore::error_reply(id, splitcore::error_value(e)));
    } catch (const std::runtime_error& e) {  // e.g. fork failed: the agent is short of resources
        log(std::string("cannot serve a request: ") + e.what());
        reply_error(routing_id, id, errc::session_lost,
                    std::string("the agent on ") + hostname() + " cannot start a worker: " + e.what());
    }
}

void supervisor::hello(const zmq::message_t& routing_id, const std::string& client_key, std::uint64_t id, json header,
                       parts& message) {
    const std::string token = splitcore::string_field(header, "session");
    if (token.empty() || token.size() > 128) {
        throw splitcore::error(errc::bad_request, "field \"session\" must be a token of 1 to 128 characters");
    }
    bool resumed = false;
    if (auto found = m_sessions.find(token); found != m_sessions.end()) {
        if (found->second.client_key != client_key) {
            throw splitcore::error(errc::no_session,
                                   "session " + short_token(token) + " belongs to another client key");
        }
        if (found->second.lost || found->second.bye_id != 0) {
            end_session(token, nullptr);
        } else {
            resumed = true;
        }
    }
    if (!m_options.insecure) reload_authorized_keys();  // an edit applies from the next hello on
    const char* peer = zmq_msg_gets(message[1].handle(), "Peer-Address");
    if (!resumed) {
        const auto owned = std::count_if(m_sessions.begin(), m_sessions.end(), [&](const auto& entry) {
            return entry.second.client_key == client_key && !entry.second.lost;
        });
        m_limits.check_session(client_key, peer ? peer : "", static_cast<std::size_t>(owned),
                               m_options.max_sessions_per_key, hostname());
        m_leases->check_request(token, client_key.empty() ? keyless_holder(token) : client_key);
        std::optional<place_admission> place;
        if (m_place && !(place = admit_to_place(routing_id, client_key, id, header, message))) return;  // waits
        if (!m_spare) m_spare = spawn_worker();
        const std::string worker_id = *m_spare;
        m_spare.reset();
        session fresh;
        fresh.token = token;
        fresh.client_key = client_key;
        fresh.worker_id = worker_id;
        if (place) {
            fresh.place_user = place->user;
            fresh.place_release = place->release;
        }
        m_workers[worker_id].session = token;
        m_sessions[token] = std::move(fresh);
        log("session " + short_token(token) + " opened (worker pid " + std::to_string(m_workers[worker_id].pid) +
            (client_key.empty() ? std::string(")") : ", client key " + client_key + ")"));
        // Starting the next spare (a Python start-up, ~50 ms of CPU) right now would compete with
        // this session's hello and first imports on a small machine; it starts a moment later.
        // A fork of the zygote costs a few milliseconds, not a start-up: it starts at once.
        if (!zygote_ready()) {
            m_spare_not_before = std::max(m_spare_not_before, clock::now() + std::chrono::milliseconds(300));
        }
    } else if (m_sessions[token].routing_id == routing_id.to_string()) {
        // The Python client's hello again over the same connection, asking for the direct port
        // after its first requests (docs/protocol.md, "The direct connection").
        log("session " + short_token(token) + " resumed (its hello again, over the same connection)");
    } else {
        log("session " + short_token(token) + " resumed");
    }
    session& s = m_sessions[token];
    s.routing_id = routing_id.to_string();
    s.last_seen = clock::now();
    header["resumed"] = resumed;
    header["limits"] = m_limits.worker_limits(client_key);  // never what the client wrote there
    header["limits"]["key"] = lease_holder(s).key;
    header["limits"]["leases"] = m_leases->file().string();
    header["limits"]["slave_leases"] = m_leases->slave_file().string();
    message[1] = splitcore::encode_header(header);
    m_audit.begin(token, m_limits.who(client_key), id, header, message, 2);
    // Only to a client that asks for it (a raw client would leave the worker's low descriptors
    // reserved for a connection that never comes). Not with an audit log: every request must pass
    // here to be audited; nor with --labgrid-place: every request is checked against the place
    // here. Leases are the worker's to check then (slave_leases.hpp: the table's file).
    const json* wants = splitcore::optional_field(header, "direct");
    const bool asked = wants != nullptr && wants->is_boolean() && wants->get<bool>();
    header.erase("direct");  // the worker reads an offer there, never what the client wrote
    const direct_settings direct{asked && m_options.direct && !m_options.audit_log && !m_place,
                                 m_options.worker_ports[0], m_options.worker_ports[1]};
    s.offer_id = 0;
    if (json offer = direct_offer(direct, m_endpoint, client_key, m_keys ? &m_keys->public_key : nullptr,
                                  m_keys ? &m_keys->secret_key : nullptr);
        !offer.is_null()) {
        header["direct"] = std::move(offer);
        message[1] = splitcore::encode_header(header);
        s.offer_id = id;  // s.direct follows the worker's reply (handle_worker)
    } else {
        s.direct = false;
    }
    if (!resumed) s.hello_id = id;
    forward_to_worker(s, id, std::move(message));
}

void supervisor::forward_to_worker(session& s, std::uint64_t id, parts message) {
    s.pending.insert(id);
    message[0] = frame_of(s.worker_id);
    worker& w = m_workers[s.worker_id];
    if (!w.ready) {
        w.queued.push_back(std::move(message));
        return;
    }
    splitcore::send_parts(m_backend, message);
}

void supervisor::handle_worker() {
    auto received = splitcore::recv_parts(m_backend, zmq::recv_flags::dontwait);
    if (!received || received->size() < 2) return;
    parts& message = *received;
    const auto found = m_workers.find(message[0].to_string());
    if (found == m_workers.end()) return;
    worker& w = found->second;
    json header;
    try {
        header = splitcore::decode_header(message[1]);
    } catch (const splitcore::error& e) {
        log("worker pid " + std::to_string(w.pid) + " sent a bad header: " + e.what());
        return;
    }
    if (header.value("ev", "") == "ready") {
        w.ready = true;
        m_spare_backoff = std::chrono::seconds(0);
        for (auto& queued : w.queued) splitcore::send_parts(m_backend, queued);
        w.queued.clear();
        return;
    }
    const auto s = m_sessions.find(w.session);
    if (s == m_sessions.end()) return;
    const std::uint64_t id = header.contains("id") ? splitcore::as_uint(header["id"]).value_or(0) : 0;
    if (id != 0) s->second.pending.erase(id);
    if (id != 0 && id == s->second.hello_id && !header.contains("ev")) {
        // A worker's start (a cold one on a loaded machine) is not the client's silence: the grace
        // period counts from the hello's reply.
        s->second.hello_id = 0;
        s->second.last_seen = clock::now();
    }
    if (id != 0 && id == s->second.offer_id && !header.contains("ev")) {
        s->second.offer_id = 0;
        s->second.direct = header.value("ok", false) == true && header.contains("direct");
    }
    if (id != 0 && !header.contains("ev")) {
        m_audit.end(s->first, id, header);
        remember_reply(s->second, message, id);
    }
    if (id == 0 || id != s->second.bye_id || !s->second.bye_answered) {
        deliver(s->second, std::move(message), header.contains("ev"));
    }
    if (id != 0 && id == s->second.bye_id) {
        log("session " + short_token(s->first) + " closed by the client");
        w.session.clear();  // the worker exits by itself after "bye"
        end_session(s->first, nullptr);
    }
}

void supervisor::lose_session(session& s, const std::string& why) {
    s.lost = true;
    s.lost_why = why;
    log("session " + short_token(s.token) + " lost: its worker " + why);
    m_audit.forget(s.token, "session_lost");
    m_leases->end_session(s.token);
    for (const std::uint64_t id : s.pending) {
        parts reply;
        reply.emplace_back();
        reply.push_back(splitcore::encode_header(splitcore::error_reply(
            id, splitcore::error_value(errc::session_lost, "the session's worker on " + hostname() + " " + why +
                                                               "; its objects are gone. Reconnect to start a new "
                                                               "session"))));
        deliver(s, std::move(reply));
    }
    s.pending.clear();
}

void supervisor::answer_lost_direct(session& s, const json& ids) {
    if (!ids.is_array()) return;
    for (const json& id : ids) {
        if (!id.is_number_unsigned()) continue;
        parts reply;
        reply.emplace_back();
        reply.push_back(splitcore::encode_header(splitcore::error_reply(
            id.get<std::uint64_t>(),
            splitcore::error_value(errc::session_lost, "the session's worker on " + hostname() + " " + s.lost_why +
                                                           "; its objects are gone. Reconnect to start a new "
                                                           "session"))));
        deliver(s, std::move(reply));
    }
}

lease_table::holder supervisor::lease_holder(const session& s) const {
    // Without keys (--insecure) each session is its own holder.
    if (s.client_key.empty()) return {s.token, keyless_holder(s.token), "session " + short_token(s.token), true, false};
    const auto& options = m_limits.of(s.client_key);
    return {s.token, s.client_key, m_limits.who(s.client_key), options.lease, options.admin};
}

void supervisor::end_session(const std::string& token, const char* why) {
    const auto found = m_sessions.find(token);
    if (found == m_sessions.end()) return;
    if (why) log("session " + short_token(token) + " " + why);
    m_audit.forget(token, "session ended");
    m_leases->end_session(token);
    if (auto w = m_workers.find(found->second.worker_id); w != m_workers.end() && w->second.session == token) {
        terminate_worker(w->first);
    }
    m_sessions.erase(found);
}

void supervisor::reap_silent_sessions() {
    // A live client is never silent for the grace period, busy or idle: it pings while it waits for
    // a reply, acknowledges the output it writes (at least once a second while output flows), pings
    // while its caller is blocked writing, and pings every few seconds while idle. A session expires
    // only when its client sent nothing at all for the grace period: it is gone, or stopped.
    const auto now = clock::now();
    std::vector<std::string> silent;
    for (const auto& [token, s] : m_sessions) {
        if (s.hello_id == 0 && now - s.last_seen > m_options.grace) silent.push_back(token);
    }
    for (const auto& token : silent) {
        session& s = m_sessions[token];
        const auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.last_seen);
        remember_expired(s);
        if (m_place && !s.place_release.empty()) m_place->release_from(s.place_release);
        const std::string why = "expired: its client sent nothing for " + seconds_text(quiet) + " s (--grace " +
                                seconds_text(m_options.grace) + " s), with " +
                                std::to_string(s.pending.size() + s.direct_pending.size()) +
                                (s.pending.size() + s.direct_pending.size() == 1 ? " call" : " calls") + " pending";
        end_session(token, why.c_str());
    }
}

void supervisor::remember_expired(const session& s) {
    if (s.pending.empty() && s.direct_pending.empty()) return;
    constexpr std::size_t max_remembered = 1000;
    if (m_expired.size() >= max_remembered) m_expired.erase(m_expired.begin());
    m_expired[s.token] = expired{s.client_key, {s.pending.begin(), s.pending.end()}, clock::now()};
    m_expired[s.token].pending.insert(m_expired[s.token].pending.end(), s.direct_pending.begin(),
                                      s.direct_pending.end());
}

void supervisor::tell_expired(const zmq::message_t& routing_id, const std::string& token,
                              const std::string& client_key) {
    const auto found = m_expired.find(token);
    if (found == m_expired.end() || found->second.client_key != client_key) return;
    // The client came back after its session expired: each call it still waits for gets its fate.
    const std::string detail = "the session expired on " + hostname() +
                               " while this process sent nothing for longer than the agent's --grace (" +
                               seconds_text(m_options.grace) +
                               " s; stopped, or cut off); the call was ended and its objects are gone. The next "
                               "call opens a new session";
    for (const std::uint64_t id : found->second.pending) reply_error(routing_id, id, errc::session_lost, detail);
    m_expired.erase(found);
}

void supervisor::handle_signals() {
    signalfd_siginfo info{};
    while (::read(m_signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) m_stopping = true;
    }
    while (m_backend.get(zmq::sockopt::events) & ZMQ_POLLIN) handle_worker();
    int status = 0;
    pid_t pid;
    while ((pid = next_exit(status)) > 0) {
        if (pid == m_zygote_pid) {
            zygote_ended(status);
            continue;
        }
        const auto by_pid = m_worker_of_pid.find(pid);
        if (by_pid == m_worker_of_pid.end()) {
            if (!m_zygote_forks.empty()) m_unclaimed_exits[pid] = {status, clock::now()};  // a fork's, maybe
            continue;
        }
        const std::string worker_id = by_pid->second;
        m_worker_of_pid.erase(by_pid);
        tell_janitor('-', pid);
        terminate_group(pid);  // whatever ended the worker (bye, a crash), its children end with it
        worker& w = m_workers[worker_id];
        const std::string why = "(pid " + std::to_string(pid) + ") ended with " + describe_status(status);
        if (!w.session.empty()) {
            if (auto s = m_sessions.find(w.session); s != m_sessions.end() && s->second.worker_id == worker_id) {
                const std::uint64_t bye_id = s->second.bye_id;
                if (bye_id != 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                    // The worker ended as asked; its reply may still be on the way, and that is fine.
                    if (s->second.pending.count(bye_id)) {
                        parts reply;
                        reply.emplace_back();
                        reply.push_back(splitcore::encode_header(splitcore::ok_reply(bye_id, nullptr)));
                        deliver(s->second, std::move(reply));
                    }
                    log("session " + short_token(s->first) + " closed by the client");
                    w.session.clear();
                    end_session(s->first, nullptr);
                } else {
                    lose_session(s->second, why);
                }
            }
        }
        if (m_spare == worker_id) {
            m_spare.reset();
            if (!m_stopping && !w.ready) {
                // A worker that cannot start (a wrong --python) would otherwise be restarted in a loop.
                m_spare_backoff =
                    std::min(std::max(m_spare_backoff * 2, std::chrono::seconds(1)), std::chrono::seconds(30));
                log("spare worker " + why + " before it was ready; next attempt in " +
                    std::to_string(m_spare_backoff.count()) + " s");
                m_spare_not_before = clock::now() + m_spare_backoff;
            }
        }
        m_workers.erase(worker_id);
    }
}

pid_t supervisor::exec_worker(std::vector<std::string> args, int inherited_fd) {
    if (!m_options.python.empty()) {
        args.push_back("--python");
        args.push_back(m_options.python);
    }
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    // Only async-signal-safe calls until exec.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setpgid(0, 0);  // a Ctrl-C at the agent's terminal is the supervisor's to handle
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    if (inherited_fd >= 0) ::fcntl(inherited_fd, F_SETFD, 0);  // its end survives exec
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::execv(argv[0], argv.data());
    const char failure[] = "splitbrain-agent: cannot execute the worker\n";
    (void)!::write(2, failure, sizeof(failure) - 1);
    ::_exit(127);
}

std::string supervisor::spawn_worker() {
    const std::string id = "w" + std::to_string(m_next_worker++);
    if (auto forked = fork_from_zygote(id)) return *forked;
    const pid_t pid = exec_worker({m_options.worker.string(), "--connect", m_backend_endpoint, "--id", id});
    if (pid < 0) throw std::runtime_error(std::string("cannot start a worker: fork: ") + std::strerror(errno));
    m_workers[id] = worker{id, pid, false, {}, {}};
    m_worker_of_pid[pid] = id;
    tell_janitor('+', pid);
    return id;
}

void supervisor::ensure_spare() {
    check_zygote_forks();
    if (m_stopping || m_spare || clock::now() < m_spare_not_before) return;
    // The first spare is exec'd at once; the zygote starts when the second is due (where a second
    // Python start-up would have run anyway), and the spares after it are its forks.
    if (m_options.zygote && m_next_worker > 1 && (start_zygote(), zygote_starting())) return;
    m_spare = spawn_worker();
}

void supervisor::terminate_worker(const std::string& worker_id) {
    auto w = m_workers.find(worker_id);
    if (w == m_workers.end()) return;
    w->second.session.clear();
    if (w->second.pid > 0) terminate_group(w->second.pid);
}

void supervisor::terminate_group(pid_t group) {
    // The worker leads its own process group: the children it started (in the background too) go with it.
    if (m_doomed.count(group) || ::kill(-group, SIGTERM) != 0) return;
    m_doomed[group] = clock::now() + std::chrono::seconds(3);
}

void supervisor::kill_stubborn_workers() {
    // User code may catch SIGTERM; a session that ended must not leave its worker, or the
    // worker's children, behind.
    const auto now = clock::now();
    for (auto it = m_doomed.begin(); it != m_doomed.end();) {
        if (::kill(-it->first, 0) != 0) {
            it = m_doomed.erase(it);
        } else if (now > it->second) {
            log((m_worker_of_pid.count(it->first)
                     ? "worker pid " + std::to_string(it->first) + " ignored SIGTERM; killing it"
                     : "the children of worker pid " + std::to_string(it->first) +
                           " outlived it by 3 s; killing them"));
            ::kill(-it->first, SIGKILL);
            it = m_doomed.erase(it);
        } else {
            ++it;
        }
    }
}

void supervisor::shutdown_workers() {
    stop_zygote();
    if (m_zygote_pid > 0) m_worker_of_pid[m_zygote_pid] = "zygote";  // waited for as the workers are
    std::vector<pid_t> groups;
    for (const auto& [pid, id] : m_worker_of_pid) groups.push_back(pid);
    for (const pid_t group : groups) ::kill(-group, SIGTERM);
    const auto deadline = clock::now() + std::chrono::seconds(3);
    while (!m_worker_of_pid.empty()) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            m_worker_of_pid.erase(pid);
            continue;
        }
        if (pid < 0 && errno == ECHILD) break;
        if (clock::now() > deadline) {
            for (const auto& [stuck, id] : m_worker_of_pid) ::kill(stuck, SIGKILL);
            for (const auto& [stuck, id] : m_worker_of_pid) ::waitpid(stuck, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // Whatever the workers started and left running (they had as long as their worker to end).
    for (const pid_t group : groups) ::kill(-group, SIGKILL);
    m_doomed.clear();
    m_worker_of_pid.clear();
    m_workers.clear();
    m_spare.reset();
}

}  // namespace splitbrain::agent
