// The worker's view of whole-slave leases and forced-release notices, for a session with a direct
// port: its requests do not pass the supervisor, which checks those for relayed ones
// (leases.hpp, lease_table::slave_file). The supervisor rewrites the file (a rename) before it
// replies to the request that changed it; one stat per request sees the change.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

class slave_leases {
public:
    // From a hello's "limits" ({key, slave_leases: the file's path}) and "session"; nothing checked
    // until then.
    void set(const splitcore::json& limits, const std::string& session);
    // The leased error's detail if this session may not run a request now: another key holds the
    // whole slave (as lease_table::check_request says), or its own lease was force-released since
    // its last request (said once).
    [[nodiscard]] std::optional<std::string> refusal();

private:
    void refresh();

    std::string m_file;  // empty: not set
    std::string m_key;
    std::string m_session;
    ino_t m_inode = 0;
    std::int64_t m_mtime_ns = -1;
    off_t m_size = -1;
    splitcore::json m_table;
    std::uint64_t m_notice_told = 0;  // the number of the last notice said
};

}  // namespace splitbrain::agent
