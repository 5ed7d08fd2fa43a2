// Leases on this agent: a session takes an exclusive (or shared) lease on the whole slave or on
// named resources (a VISA resource string, a serial port path). The table is the supervisor's, as
// the sessions are: a lease lives while its session does (the session's liveness renews it; a
// session that ends, expires or dies ends its leases), at most until its `for`. Whole-slave leases
// are enforced by the supervisor on every request; resource leases by the workers when user code
// opens a resource, from the table the supervisor writes to a file in its private directory
// (worker side: lease_guard.cpp). Only the holders may use a leased resource; a shared lease lets
// several keys hold it together.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

class lease_table {
public:
    // `file`: where the table is written for the workers; `host`: the slave's name in messages;
    // `names`: --resource NAME=TARGET, names a lease may use for a VISA resource string or a serial
    // port path (a lease on the name is a lease on its target, which the workers' guard checks).
    lease_table(std::filesystem::path file, std::string host, std::map<std::string, std::string> names = {});

    struct holder {
        std::string session;
        std::string key;
        std::string who;
        bool may_lease = false;
        bool admin = false;
    };

    // The reply to a `lease`, `unlease` or `leases` request (docs/protocol.md); throws
    // splitcore::error for a bad field or a refusal.
    [[nodiscard]] splitcore::json answer(std::string_view op, const splitcore::json& header, const holder& h);

    // Takes (or renews) leases on `resources` (none: the whole slave); returns them. Throws
    // splitcore::error: key_limit if the key may not lease, leased if another key holds one.
    splitcore::json take(const holder& h, const std::vector<std::string>& resources, std::optional<double> seconds,
                         bool shared);
    // Releases the session's leases on `resources` (none: all of them); with `force`, an admin's,
    // anyone's (none: every lease): their former holders are told at their next request. Returns
    // how many ended.
    std::size_t release(const holder& h, const std::vector<std::string>& resources, bool force);
    // Every lease, for `leases` and %slaves.
    [[nodiscard]] splitcore::json list(const std::string& session) const;

    // Throws splitcore::error(leased) if a session of `key` may not run a request now: another key
    // holds the whole slave, or an admin ended this session's lease since its last request (not
    // with `notices` false: a session with a direct port hears that from its worker, see slave_file).
    void check_request(const std::string& session, const std::string& key, bool notices = true);
    // The session ended: so do its leases.
    void end_session(const std::string& session);
    // Ends leases past their `for`; cheap when none is due.
    void expire();

    [[nodiscard]] const std::filesystem::path& file() const noexcept { return m_file; }
    // The whole-slave leases and the forced releases' notices, for the workers of sessions with a
    // direct port, which check their requests themselves (worker side: slave_leases.hpp):
    // {"leases": [{key, shared, until, detail}], "notices": {session: [number, text]}}. Written,
    // as file(), before the reply to the request that changed it.
    [[nodiscard]] std::filesystem::path slave_file() const { return m_file.string() + ".slave"; }

private:
    struct lease {
        std::string resource;  // "" for the whole slave
        holder by;
        bool shared = false;
        std::time_t since = 0;
        std::optional<std::time_t> until;
    };

    [[nodiscard]] std::string describe(const lease& l) const;
    // "psu (TCPIP::10.0.0.5::INSTR)" for a target of --resource psu=..., else the resource itself.
    [[nodiscard]] std::string label(const std::string& resource) const;
    void write_file() const;

    std::filesystem::path m_file;
    std::string m_host;
    std::map<std::string, std::string> m_names;
    std::vector<lease> m_leases;
    std::map<std::string, std::string> m_notices;           // session -> why its lease ended (forced)
    std::map<std::string, std::uint64_t> m_notice_numbers;  // session -> its notice's number, for slave_file
    std::uint64_t m_notices_given = 0;
};

}  // namespace splitbrain::agent
