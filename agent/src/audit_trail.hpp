// What each request was, for the audit log: the supervisor notes a request when it forwards it to
// a worker and writes its record when the reply comes back. Targets are named from what the
// session imported ("os.remove", "pyvisa.ResourceManager().open_resource"); arguments only by digest.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "audit_log.hpp"
#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

class audit_trail {
public:
    // Without a log (no --audit-log) every method returns at once.
    explicit audit_trail(std::unique_ptr<audit_log> log) : m_log(std::move(log)) {}

    [[nodiscard]] bool enabled() const noexcept { return m_log != nullptr; }

    // A request forwarded to the session's worker; `frames` are its frames after the header.
    void begin(const std::string& token, const std::string& who, std::uint64_t id, const splitcore::json& header,
               const std::vector<zmq::message_t>& frames, std::size_t first_frame);
    // The worker's reply to it.
    void end(const std::string& token, std::uint64_t id, const splitcore::json& reply);
    // A request the supervisor answered itself, ok or with an error id.
    void answered(const std::string& token, const std::string& who, const std::string& op, const std::string& target,
                  const std::string& outcome);
    // The session ended: what it had in flight is written as such, its names forgotten.
    void forget(const std::string& token, const std::string& outcome);

private:
    using clock = std::chrono::steady_clock;
    struct pending {
        clock::time_point start;
        audit_record record;
        bool names_result = false;  // an import, getattr or call whose REF result gets a name
    };
    struct session_names {
        std::unordered_map<std::uint64_t, std::string> of_oid;
    };

    [[nodiscard]] std::string name_of(const std::string& token, const splitcore::json* ref) const;

    std::unique_ptr<audit_log> m_log;
    std::map<std::pair<std::string, std::uint64_t>, pending> m_pending;
    std::unordered_map<std::string, session_names> m_names;
};

}  // namespace splitbrain::agent
