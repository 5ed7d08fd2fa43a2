// The agent's supervisor: authenticates clients (CURVE + ZAP), answers ping, runs one worker
// process per session and routes messages between clients and their workers. No Python here.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "audit_trail.hpp"
#include "key_limits.hpp"
#include "leases.hpp"
#include "place_check.hpp"
#include "splitcore/keys.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

struct options {
    std::string listen = "tcp://0.0.0.0:7780";
    std::filesystem::path key_dir;
    std::filesystem::path authorized_keys;
    std::optional<std::filesystem::path> connection_file;
    std::string advertise;         // the address clients use; empty: derived from listen
    std::string python;            // venv directory or interpreter, handed to the workers
    std::filesystem::path worker;  // the splitbrain-worker executable
    bool insecure = false;
    std::chrono::milliseconds grace{60000};
    std::int64_t max_message = std::int64_t(1) << 30;
    std::size_t max_sessions_per_key = 16;
    pid_t parent_pid = 0;  // --exit-with PID: stop when that process is gone (0: never)
    bool zygote = true;    // workers are forks of a zygote (supervisor_zygote.cpp); --no-zygote: exec'd
    // A port of the session's worker its client talks to directly (direct.hpp): --no-direct, --worker-ports
    bool direct = true;
    unsigned worker_ports[2] = {0, 0};  // 0, 0: an ephemeral port

    // --audit-log PATH: one JSON line per request, rotated past audit_max_bytes, audit_keep files kept
    std::optional<std::filesystem::path> audit_log;
    std::uintmax_t audit_max_bytes = std::uintmax_t(16) << 20;
    unsigned audit_keep = 5;

    // --resource NAME=TARGET: names a lease may use for a VISA resource string or a serial port path
    std::map<std::string, std::string> resources;
    // --labgrid-place: sessions only for the place's holder (supervisor_place.cpp, docs/labgrid.md)
    std::string labgrid_place;
    std::string labgrid_coordinator = "127.0.0.1:20408";
    std::chrono::milliseconds labgrid_timeout{5000};
    std::filesystem::path place_watch;  // splitbrain-place-watch (agent/labgrid/place_watch.py)
};

// The address a client should use for `endpoint` (what the socket bound): a wildcard host
// (0.0.0.0, *, [::]) becomes this machine's first non-loopback IPv4 address (its hostname if it
// has none).
[[nodiscard]] std::string reachable_address(const std::string& endpoint);

// True for endpoints only this machine can reach: tcp on 127.0.0.0/8, localhost or [::1], ipc.
[[nodiscard]] bool is_loopback_endpoint(const std::string& endpoint);

class supervisor {
public:
    // Binds the listening socket and writes the connection file; throws std::runtime_error with
    // a message for the user if that is impossible.
    explicit supervisor(options opts);
    ~supervisor();
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;

    // Serves until SIGTERM or SIGINT; returns the exit status.
    int run();

private:
    using clock = std::chrono::steady_clock;
    using parts = std::vector<zmq::message_t>;

    struct session {
        std::string token;
        std::string routing_id;  // of the connection the last request naming this session came on
        std::string client_key;  // Z85 of the client's CURVE key; empty when insecure
        std::string worker_id;
        std::set<std::uint64_t> pending;
        std::deque<parts> held;  // replies and output its client's connection could not take yet
        std::size_t held_bytes = 0;
        std::uint64_t bye_id = 0;
        bool bye_answered = false;  // by the supervisor itself, at once (serve_client): the worker's reply is not sent
        // While the hello that opened it is unanswered: the client is waiting (for a worker's start),
        // not silent. Not a later hello's: that can wait behind a long call, and a client that died
        // meanwhile must still expire (its live client pings while it waits).
        std::uint64_t hello_id = 0;
        // The last replies delivered (copies, for a client whose connection died with one in it:
        // a ping's "waiting" asks again) and the ids of the last replies delivered; bounded below.
        std::deque<std::pair<std::uint64_t, parts>> recent;
        std::size_t recent_bytes = 0;
        std::deque<std::uint64_t> replied;
        clock::time_point last_seen;
        bool lost = false;
        std::string lost_why;  // how its worker ended ("(pid N) ended with killed by SIGKILL")
        // With --labgrid-place: the session's user to labgrid, and the holder to release the place
        // from if the session expires (its client acquired the place for it); see supervisor_place.cpp.
        std::string place_user;
        std::string place_release;
        // Calls sent straight to the worker that wait, as the client's last ping or ack named them.
        std::set<std::uint64_t> direct_pending;
        // The worker took a direct port (its hello's reply carries "direct"): it says forced-release
        // notices (slave_leases.hpp), and checks whole-slave leases for what comes the direct way.
        // Not merely offered: a worker may decline a later hello's offer, and then the supervisor
        // still says the notices. offer_id: the hello forwarded with an offer, until its reply.
        bool direct = false;
        std::uint64_t offer_id = 0;
    };
    struct worker {
        std::string id;
        pid_t pid = -1;
        bool ready = false;
        std::string session;       // token; empty for the spare
        std::deque<parts> queued;  // held until the worker says it is ready
    };

    void handle_zap();
    // Reads --authorized-keys again if it changed since it was last read; a file that no longer
    // parses keeps the keys read before, and says so in the log.
    void reload_authorized_keys();
    void handle_client();
    // One client message; past --max-message only its routing id and header are kept, and
    // `oversized` is set to its size.
    std::optional<parts> receive_client(std::int64_t& oversized);
    // A client message received (or held behind a hello that waited, and replayed).
    void serve_client(parts& message, std::int64_t oversized);
    void handle_worker();
    void handle_signals();
    void reap_silent_sessions();
    // A session that expired with calls pending is remembered (a bounded number of them): when its
    // client comes back, each of those calls is answered session_lost instead of waited for in vain.
    struct expired {
        std::string client_key;
        std::vector<std::uint64_t> pending;
        clock::time_point when;
    };
    void remember_expired(const session& s);
    void tell_expired(const zmq::message_t& routing_id, const std::string& token, const std::string& client_key);

    void hello(const zmq::message_t& routing_id, const std::string& client_key, std::uint64_t id,
               splitcore::json header, parts& message);

    // labgrid places (supervisor_place.cpp). Who a hello's client is to labgrid and whether it
    // holds the place: admitted (the user and the holder to release from on expiry), or nullopt
    // when the hello waits for the coordinator's answer (it is kept and goes on in serve_place());
    // throws place_not_held.
    struct place_admission {
        std::string user;
        std::string release;
    };
    std::optional<place_admission> admit_to_place(const zmq::message_t& routing_id, const std::string& client_key,
                                                  std::uint64_t id, splitcore::json& header, parts& message);
    // Each poll turn: the watcher's reports, hellos that waited for them, their deadlines.
    void serve_place(bool readable);
    // Throws place_not_held if the session's user no longer holds the place.
    void check_place_request(const session& s) const;
    struct deferred_hello {
        std::string routing_id;
        std::string client_key;
        std::uint64_t id = 0;
        splitcore::json header;
        parts message;
        std::uint64_t sync = 0;
        clock::time_point deadline;
        std::vector<parts> later;  // requests its client pipelined after it, served once it is answered
    };
    void continue_hello(deferred_hello& waiting, bool answered);
    // Pipelining (issue 11 point 4): a client may send requests right behind its hello. Those behind a
    // hello that waits for the coordinator wait with it (false: too many, or none waits); those behind
    // a refused hello get its error, not no_session (the refusals are kept a while, a bounded number).
    bool hold_behind_hello(const std::string& token, parts& message);
    void remember_refused_hello(const std::string& token, const std::string& client_key, const splitcore::json& error);
    [[nodiscard]] const splitcore::json* refused_hello(const std::string& token, const std::string& client_key);
    struct refusal {
        std::string client_key;
        splitcore::json error;
        clock::time_point when;
    };
    std::map<std::string, refusal> m_refused_hellos;  // by token
    [[nodiscard]] std::string coordinator_silent() const;
    // True while the hello of session `token` waits for the coordinator (its pings are answered as known).
    [[nodiscard]] bool hello_waits(const std::string& token) const;
    void forward_to_worker(session& s, std::uint64_t id, parts message);
    void reply_error(const zmq::message_t& routing_id, std::uint64_t id, splitcore::errc code,
                     const std::string& detail);
    // A reply to the connection a request came on; dropped if that connection cannot take it.
    void reply_to(const zmq::message_t& routing_id, const splitcore::json& header);
    [[nodiscard]] bool try_send_client(parts& message);
    // A session's message goes to its route, or waits in `held` until the client is back.
    void deliver(session& s, parts message, bool output = false);
    // Keeps a copy of a reply for a resend (replies up to 1 MiB, the last 16, 8 MiB in all) and its id.
    static void remember_reply(session& s, parts& message, std::uint64_t id);
    // A ping's "waiting": ids its client waits for; a reply kept is sent again ("again": true),
    // and the pong says which ids were answered without a copy kept ("lost") or never seen ("unseen").
    void answer_waiting(session& s, const nlohmann::json& waiting, nlohmann::json& pong);
    void flush_held(session& s);
    void lose_session(session& s, const std::string& why);
    // A ping's "direct": calls its client sent straight to the worker, which died (direct.hpp).
    void answer_lost_direct(session& s, const splitcore::json& ids);
    // Who `s` is to the lease table.
    [[nodiscard]] lease_table::holder lease_holder(const session& s) const;
    void end_session(const std::string& token, const char* why);

    // Forks the janitor, a process that outlives the supervisor however it ends (SIGKILL too): it
    // learns each worker's process group through a pipe, and when the pipe's last writer (this
    // process) is gone it kills those groups and removes the private directory. Must run before
    // libzmq starts its threads (the janitor is a fork that never execs).
    void start_janitor();
    void tell_janitor(char change, pid_t group);
    std::string spawn_worker();
    // Forks and execs the worker binary with args (plus --python), in a process group of its own, dying
    // with us; inherited_fd (>= 0) stays open across the exec. The child's pid, or -1 (errno) if fork failed.
    pid_t exec_worker(std::vector<std::string> args, int inherited_fd = -1);
    void ensure_spare();
    void terminate_worker(const std::string& worker_id);
    void terminate_group(pid_t group);
    void kill_stubborn_workers();
    void shutdown_workers();

    // The zygote (supervisor_zygote.cpp, zygote.hpp): a worker process that initialised Python
    // once and forks the workers. Each returns at once; none throws.
    void start_zygote();
    // Asks the zygote for worker `id` and registers it with its pid still unknown (read_zygote()
    // learns it: the supervisor never waits for a fork); nullopt when there is no ready zygote
    // (spawn_worker() then execs one).
    std::optional<std::string> fork_from_zygote(const std::string& id);
    void zygote_fork_failed(const std::string& id, const std::string& why);
    // Forks the zygote did not answer in time fail; exits nobody claimed for long are forgotten.
    void check_zygote_forks();
    // The next ended child: one whose pid the zygote told us after it ended, else waitpid's.
    pid_t next_exit(int& status);
    // SIGCHLD for the zygote: started again if it had been ready.
    void zygote_ended(int status);
    void stop_zygote();
    // Its "ready" (or its end of the socket closing), when poll says the socket is readable.
    // (replay: and handles the exits of workers whose pid it learnt only after they ended.)
    void read_zygote(bool replay = true);
    [[nodiscard]] bool zygote_ready() const noexcept { return m_zygote_ready; }
    // Started, not ready yet, and not for long: the next spare waits for it.
    [[nodiscard]] bool zygote_starting() const;

    options m_options;
    std::optional<splitcore::key_pair> m_keys;
    key_limits m_limits;  // the authorized keys and their options
    audit_trail m_audit{nullptr};
    std::optional<lease_table> m_leases;  // made once the private directory exists
    std::optional<place_check> m_place;   // with --labgrid-place
    std::vector<deferred_hello> m_deferred_hellos;
    bool m_place_answered = false;        // while a deferred hello goes on after the coordinator's answer
    std::filesystem::path m_private_dir;  // 0700; holds the workers' ipc socket
    std::string m_backend_endpoint;
    std::string m_endpoint;  // what --listen resolved to

    zmq::context_t m_context;
    zmq::socket_t m_zap;
    zmq::socket_t m_frontend;
    zmq::socket_t m_backend;
    int m_signal_fd = -1;
    int m_janitor = -1;  // write end of the janitor's pipe (see start_janitor)
    bool m_stopping = false;

    std::map<std::string, session> m_sessions;  // by token
    std::map<std::string, worker> m_workers;    // by worker id
    std::map<pid_t, std::string> m_worker_of_pid;
    std::map<pid_t, clock::time_point> m_doomed;  // worker process groups sent SIGTERM; SIGKILL after the deadline
    std::optional<std::string> m_spare;
    std::map<std::string, expired> m_expired;  // by token
    std::uint64_t m_next_worker = 1;
    clock::time_point m_spare_not_before{};
    std::chrono::seconds m_spare_backoff{0};
    std::map<std::string, std::pair<clock::time_point, std::uint64_t>> m_refusals;  // key -> last log, attempts since
    pid_t m_zygote_pid = -1;
    int m_zygote_fd = -1;  // our end of its SOCK_SEQPACKET control socket
    bool m_zygote_ready = false;
    clock::time_point m_zygote_started{};
    bool m_zygote_failed = false;  // it ended before it was ready (a wrong --python): not started again
    std::map<std::string, clock::time_point> m_zygote_forks;  // worker id -> when asked; its pid not known yet
    std::map<pid_t, std::pair<int, clock::time_point>> m_unclaimed_exits;  // while forks are pending
    std::deque<std::pair<pid_t, int>> m_replayed_exits;
};

}  // namespace splitbrain::agent
