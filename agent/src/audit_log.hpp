// The agent's audit log: JSON lines, append-only, one per request, written by a thread of its own
// so that the request path only queues a record. Rotated by size: PATH, PATH.1 … PATH.K.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

namespace splitbrain::agent {

struct audit_record {
    double time = 0;      // seconds since the epoch (UTC), when the request arrived
    std::string who;      // the client key's comment (or the key)
    std::string session;  // the session token's first 12 characters
    std::string op;       // the operation
    std::string target;   // "os.remove", "pyvisa.ResourceManager().open_resource", a module name
    std::string args;     // "sha256:HEX" of the request's arguments; never the arguments
    std::string outcome;  // "ok", an error id, or "raised TYPE"
    double ms = 0;        // from the request's arrival to its reply
};

class audit_log {
public:
    // Opens PATH for appending (creating it 0600); throws std::runtime_error if it cannot.
    audit_log(std::filesystem::path path, std::uintmax_t max_bytes, unsigned keep);
    // Writes what is queued, then stops the writer.
    ~audit_log();
    audit_log(const audit_log&) = delete;
    audit_log& operator=(const audit_log&) = delete;

    // Queues one record; never blocks on the disk. Past 100000 records queued, records are
    // counted and dropped (the count is logged and written as a record of its own).
    void write(audit_record record);

    // The JSON line of a record (no newline).
    [[nodiscard]] static std::string line(const audit_record& record);

private:
    void run();
    void append(const std::string& text);
    void rotate();

    std::filesystem::path m_path;
    std::uintmax_t m_max_bytes;
    unsigned m_keep;
    int m_fd = -1;
    std::uintmax_t m_size = 0;

    std::mutex m_mutex;  // guards the three below
    std::condition_variable m_wake;
    std::deque<audit_record> m_queue;
    std::uint64_t m_dropped = 0;
    bool m_stopping = false;
    std::thread m_writer;  // last: starts once the rest is ready
};

}  // namespace splitbrain::agent
