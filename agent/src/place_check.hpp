// The agent's view of the labgrid place it serves (`serve --labgrid-place NAME`, docs/labgrid.md):
// who holds it, as splitbrain-place-watch (agent/labgrid/place_watch.py, run with the workers'
// Python: labgrid's client is Python and gRPC) reports it over a pipe in JSON lines. The supervisor
// asks it to sync before it admits a session whose user the last report does not show as the
// holder, and to release the place from a holder whose splitbrain session expired.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace splitbrain::agent {

class place_check {
public:
    struct settings {
        std::string coordinator;  // HOST:PORT
        std::string place;
        std::filesystem::path python;             // the interpreter that runs the helper
        std::filesystem::path helper;             // splitbrain-place-watch
        std::chrono::milliseconds timeout{5000};  // how long a hello waits for the coordinator
    };

    explicit place_check(settings s);
    ~place_check();
    place_check(const place_check&) = delete;
    place_check& operator=(const place_check&) = delete;

    // Starts the helper if it is not running (again after a back-off if it ended); never throws.
    void keep_running();
    // The helper's output, to poll; -1 while it is not running.
    [[nodiscard]] int fd() const noexcept { return m_from_helper; }
    // Reads what the helper wrote (call when fd() is readable); returns the syncs it answered.
    std::vector<std::uint64_t> read();
    // Asks for the coordinator's current state; its number comes back from read() once answered.
    std::uint64_t ask();
    void release_from(const std::string& holder);

    // True once a report arrived and the coordinator was reachable for it.
    [[nodiscard]] bool known() const noexcept { return m_known; }
    // Whether `user` ("alice": any host; "lab-pc/alice": that one) holds the place: acquired it, or
    // is in its allowed list (labgrid-client allow).
    [[nodiscard]] bool held_by(const std::string& user) const;
    // Whether `user` acquired it (not only allowed).
    [[nodiscard]] bool acquired_by(const std::string& user) const;
    // "acquired by lab-pc/alice", "not acquired", "unknown to the coordinator", or why it is unknown.
    [[nodiscard]] std::string state() const;
    [[nodiscard]] const std::optional<std::string>& holder() const noexcept { return m_acquired; }
    [[nodiscard]] const settings& config() const noexcept { return m_settings; }

private:
    void stop();
    void send(const std::string& line);

    settings m_settings;
    pid_t m_pid = -1;
    int m_to_helper = -1;
    int m_from_helper = -1;
    std::string m_pending;  // a line not complete yet
    std::chrono::steady_clock::time_point m_not_before{};
    std::chrono::seconds m_backoff{2};  // before it is started again; doubles while it keeps ending, to 60 s
    std::uint64_t m_next_sync = 1;

    bool m_known = false;
    bool m_exists = false;
    std::optional<std::string> m_acquired;
    std::vector<std::string> m_allowed;
    std::string m_down = "the place watcher has not reported yet";
};

}  // namespace splitbrain::agent
