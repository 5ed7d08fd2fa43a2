// The client end of the wire: one DEALER socket to one agent, shared by every thread that talks to
// that agent. No helper thread sits between a caller and the socket: the caller that waits for a
// reply reads the socket itself and hands replies meant for other callers over to them, so an
// uncontended request costs exactly one round trip and no extra wake-up.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "splitcore/errors.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/socket_watch.hpp"
#include "splitcore/wire.hpp"

namespace splitcore {

using channel_clock = std::chrono::steady_clock;

struct channel_options {
    std::string name;                       // how messages name the agent: "linux-box"
    std::string address;                    // "tcp://10.0.0.7:7780"
    std::optional<std::string> server_key;  // the agent's Z85 public key; empty: plain text (loopback only)
    std::string public_key;                 // the client's Z85 key pair, used with server_key
    std::string secret_key;
    std::string session;  // the session token, sent in every message: a reconnect keeps the session
    std::chrono::milliseconds liveness{5000};    // silence while waiting that counts as a dead agent
    std::chrono::milliseconds ping_after{1000};  // silence while waiting before we ask "are you there?"
    std::chrono::milliseconds keepalive{5000};   // ping this often while idle, so the session is kept
};

class channel {
public:
    explicit channel(channel_options options);
    ~channel();
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    // Gives the header a fresh "id", sends it and returns the id; its reply is kept for wait().
    [[nodiscard]] std::uint64_t send(nlohmann::json header, std::vector<zmq::message_t> frames = {});

    // Sends without expecting anybody to wait: the reply (release, cancel) is dropped on arrival.
    std::uint64_t post(nlohmann::json header, std::vector<zmq::message_t> frames = {});

    // Waits for the reply to `id` until `until`. Returns early, without a reply, when output events
    // of this request, or nobody's, arrived (they are appended to `events` in arrival order) and
    // when a signal interrupted the wait, so that the caller can look at it. Output belongs to the
    // request the agent is running when it arrives: the oldest one still without a reply (the agent
    // runs a session's requests one by one, in order, and sends a call's output before its reply),
    // so a thread never writes another thread's output. Throws error{errc::agent_unreachable} after the liveness
    // timeout of silence; the id is then forgotten.
    [[nodiscard]] std::optional<message> wait(std::uint64_t id, channel_clock::time_point until,
                                              std::vector<message>& events);

    // Asks the agent to interrupt request `id` (KeyboardInterrupt there). Its reply still comes.
    void cancel(std::uint64_t id);

    // Forgets `id`: its reply, whenever it comes, is dropped.
    void abandon(std::uint64_t id);

    // Every id someone is waiting for (for "cancel everything").
    [[nodiscard]] std::vector<std::uint64_t> pending() const;

    // Takes the output events that arrived while no request was running.
    [[nodiscard]] std::vector<message> take_events();

    // Takes the object ids ({"$r": id}) of replies nobody will read (abandoned after a timeout or
    // an interrupt): the agent holds those objects for us until we release them.
    [[nodiscard]] std::vector<std::uint64_t> take_orphans();
    // A reply its caller will not read: its references join the orphans.
    void discard(const message& reply);

    // The agent's steady clock (microseconds) as `hello` read it. From then on every request carries
    // "until": the moment on that clock after which we may have given up on it, so that a request
    // still in transit then (a link cut, a stopped agent) is dropped on arrival, never run late.
    void agent_clock(std::uint64_t agent_now_us);

    // Handshakes that succeeded so far: more than one means the link was re-established (the
    // agent restarted, or the network came back), and the session may be gone.
    [[nodiscard]] std::uint64_t handshakes();
    // True while requests the worker's main thread answers go the direct way (its handshake succeeded).
    [[nodiscard]] bool direct_up() const;
    // Asks for the direct connection later (docs/protocol.md, "The direct connection"): `hello` (the
    // session's hello, with "direct": true) goes to the agent's port right before the `after`-th
    // request the worker's main thread answers that goes there, unanswered by anyone: its reply,
    // which comes before that request's, opens the connection as a first hello's would. A short
    // session never pays the second handshake. Once per call.
    void direct_later(nlohmann::json hello, unsigned after);

    void close();

    [[nodiscard]] const channel_options& options() const noexcept { return m_options; }

private:
    using time_point = channel_clock::time_point;

    // All below is guarded by m_mutex. The socket is used only by the one thread that set
    // m_socket_busy, and then without m_mutex held, so a slow poll never blocks bookkeeping.
    void acquire_socket(std::unique_lock<std::mutex>& lock);
    void release_socket(std::unique_lock<std::mutex>& lock);
    // direct: the direct way if its connection takes it now, else through the agent's port.
    void send_now(const nlohmann::json& header, std::vector<zmq::message_t>& frames, bool direct = false);
    // A ping; after a reconnect it names the requests sent before it that still wait ("waiting"):
    // a reply lost with the old connection is sent again, or the pong says it cannot be.
    void try_ping(std::uint64_t id);
    [[nodiscard]] nlohmann::json waiting_since_reconnect();
    void read_monitor();
    // Reads the monitors only if they may hold an event (one poll(2) for both): before a send.
    [[nodiscard]] bool read_monitors_if_signalled();
    [[nodiscard]] error unreachable() const;
    void read_available(std::vector<message>& into);
    void dispatch(std::vector<message>& arrived, time_point now, bool direct = false);
    void wake_reader();
    void keepalive_loop();
    // Flow control (docs/protocol.md, "Output and back-pressure"): output handed to a caller counts
    // as written when that caller (or any) next listens; the agent sends no more than
    // output_window past what was acknowledged.
    void note_taken(const message& event);
    [[nodiscard]] bool ack_due(time_point now) const;
    // Sends {"op": "ack", "at": at} without waiting for room (the socket is the caller's); true if sent.
    bool try_ack(std::uint64_t id, std::uint64_t at);
    void acked(std::uint64_t at, time_point now);
    void keep_session_while_blocked(std::unique_lock<std::mutex>& lock, time_point now);
    [[nodiscard]] std::uint64_t running_request() const;
    void forget(std::uint64_t id);
    [[noreturn]] void fail_unreachable(std::uint64_t id, std::unique_lock<std::mutex>& lock);
    // m_mutex held: the unreachable() error of a call, with whether it had reached the agent.
    [[nodiscard]] error unreachable_call(const error& silent, bool reached) const;
    void stamp_deadline(nlohmann::json& header, time_point sent) const;

    // The direct connection to the session's worker (direct_channel.cpp; docs/protocol.md, "The
    // direct connection"), once a hello's reply offered one. Used, like m_socket, only by the thread
    // that set m_socket_busy; replaced or dropped only by it, in dispatch.
    struct direct_link;
    std::unique_ptr<direct_link> m_direct;
    // direct_later(): the hello to post, and how many relayed main-thread requests before it.
    std::optional<nlohmann::json> m_direct_hello;
    unsigned m_direct_after = 0;
    // ids whose direct connection broke for good with them in flight -> whether they had reached the worker
    std::unordered_map<std::uint64_t, bool> m_direct_lost;
    std::set<std::uint64_t> m_direct_reached;  // direct ids known to have reached a worker since lost
    void open_direct(const nlohmann::json& offer);
    // Its handshake events; false once it is given up (the caller drops it, under m_mutex).
    // readable false: only what follows from the events already read (a resync, giving it up).
    bool read_direct_monitor(bool readable = true);
    // m_mutex held: whether a request goes the direct way (its connection is up, and the worker's
    // main thread answers it); it then counts as in flight there.
    [[nodiscard]] bool goes_direct(const nlohmann::json& header) const;
    // m_mutex held: a reply to `id` came through the agent's port (direct: the direct way).
    void direct_settle(std::uint64_t id, bool direct, const nlohmann::json& header);
    void direct_arrived(std::vector<message>& into);  // what the direct socket holds
    void drop_direct();                               // after a disconnect, a session gone, another hello
    // Takes m_mutex: the ids sent the direct way that still wait, for a ping's "direct" (their worker
    // may have died: the supervisor answers them then).
    [[nodiscard]] nlohmann::json direct_waiting();
    [[nodiscard]] bool was_sent_direct(std::uint64_t id) const;  // and not answered yet
    [[nodiscard]] std::uint64_t acknowledged_for(std::uint64_t id) const;

    channel_options m_options;
    zmq::socket_t m_socket;
    int m_wake_fd = -1;       // eventfd: a sender's nudge to the thread polling the socket
    zmq::socket_t m_monitor;  // handshake events of m_socket: a refused key fails calls at once
    // What a wait must ask m_socket and m_monitor (socket_watch.hpp); the socket-busy thread's.
    socket_watch m_socket_watch, m_monitor_watch;

    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    std::condition_variable m_keepalive_wake;  // the keepalive thread's: notified at close only
    bool m_socket_busy = false;
    int m_senders_waiting = 0;
    bool m_closed = false;
    // What the socket's monitor said about the link, as the reason a wait fails at once.
    enum class link_failure { none, nothing_listening, key_refused, key_mismatch };
    link_failure m_link_failure = link_failure::none;
    bool m_reconnect_scheduled = false;          // a DISCONNECTED came: the next CONNECT_RETRIED is no refusal
    time_point m_link_failed;                    // when the monitor reported m_link_failure (drained before each send)
    time_point m_last_listened;                  // when a thread last came back from polling the socket
    time_point m_resumed;                        // when listening resumed after a waiting request was not listened for
    std::chrono::milliseconds m_stalled_for{0};  // how long that was
    std::uint64_t m_handshakes = 0;
    time_point m_reconnected;  // the last handshake after the first: a connection was lost before it
    // Requests a pong said will get no reply: true, answered but the reply was lost and not kept
    // (it ran); false, the agent never saw them (they did not run).
    std::unordered_map<std::uint64_t, bool> m_unanswerable;
    time_point m_monitor_read;  // when handshakes() last read the monitor
    [[nodiscard]] error link_error() const;
    std::uint64_t m_next_id = 1;
    std::unordered_map<std::uint64_t, time_point> m_waiting;  // id → when it was sent
    std::unordered_map<std::uint64_t, message> m_replies;
    std::deque<message> m_events;  // output while no request was running (background processes)
    std::unordered_map<std::uint64_t, std::vector<message>> m_events_for;  // request id → its output
    std::vector<std::uint64_t> m_orphans;  // references in replies nobody reads, one per occurrence
    // The highest id the agent answered, or ran (its output came): it received every message up to
    // there, in order. A request above it that we give up on was not delivered, and is dropped late.
    std::uint64_t m_acknowledged = 0;
    std::optional<std::int64_t> m_agent_offset_us;  // agent clock - ours, never more (see agent_clock)
    // A ping answered "known": false (the agent restarted, the session expired): requests below it wait
    // in vain. What the agent had acknowledged until then says which of them had reached it.
    std::uint64_t m_session_gone_before = 0;
    std::uint64_t m_acknowledged_before_loss = 0;
    time_point m_last_heard;
    time_point m_last_sent;
    time_point m_last_ping;
    std::uint64_t m_output_taken = 0;  // the highest "at" of output events handed to a caller
    std::uint64_t m_output_acked = 0;  // the highest "at" acknowledged to the agent
    time_point m_last_ack;
    std::uint64_t m_resynced = 1;  // the handshake count at the last acknowledgement of all (after a reconnect)

    std::thread m_keepalive;
};

}  // namespace splitcore
