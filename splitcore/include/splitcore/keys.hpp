// CurveZMQ keys: generation, Z85, the agent's key directory and the authorized_keys file.
#pragma once

#include <cstddef>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace splitcore {

// A key file that cannot be used (missing, malformed, would be overwritten). what() names the
// file and, for authorized_keys, the line.
class key_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Both keys as 40-character Z85 text, which is what ZMQ_CURVE_*KEY accept.
struct key_pair {
    std::string public_key;
    std::string secret_key;

    [[nodiscard]] static key_pair generate();
    // The public key belonging to a Z85 secret key.
    [[nodiscard]] static key_pair from_secret(const std::string& secret_z85);

    // DIR/agent.key (secret, mode 0600) and DIR/agent.pub. Refuses to overwrite either file.
    void save(const std::filesystem::path& dir) const;
    // Reads DIR/agent.key (the public key is derived from it).
    [[nodiscard]] static key_pair load(const std::filesystem::path& dir);
};

inline constexpr const char* secret_key_file = "agent.key";
inline constexpr const char* public_key_file = "agent.pub";

// True for 40 characters of Z85 that decode to a 32-byte key.
[[nodiscard]] bool is_z85_key(const std::string& text);

// What one authorized_keys line grants its key: the SSH-style options written before the key
// (`from="10.0.0.0/8",expires="2027-01-31",max-sessions=2,deny-modules="ctypes",lease KEY # alice`).
// A line without options grants what the agent's flags allow, and no lease.
struct key_options {
    std::string comment;                                    // the text after the key, without its '#'
    std::vector<std::string> from;                          // addresses or CIDR blocks; empty: any peer
    std::optional<std::time_t> expires;                     // refused from this instant on (UTC)
    std::string expires_text;                               // as written
    std::optional<std::size_t> max_sessions;                // at most min(this, --max-sessions-per-key)
    std::optional<std::vector<std::string>> allow_modules;  // only these (and their submodules)
    std::vector<std::string> deny_modules;                  // never these (nor their submodules)
    bool lease = false;                                     // may take leases
    bool admin = false;                                     // may take leases and force-release others'
    std::string labgrid_user;  // labgrid-user=: who it is to the coordinator ("alice", or "host/alice")

    // "alice@lab-pc", or the key itself when the line has no comment.
    [[nodiscard]] std::string who(const std::string& key) const;
};

// One line: `[OPTIONS] KEY [# COMMENT]`; blank lines and lines starting with '#' are ignored;
// anything else (not a key, an unknown or malformed option) throws key_error naming file and line.
[[nodiscard]] std::map<std::string, key_options> parse_authorized_key_options(const std::string& text,
                                                                              const std::string& origin);
[[nodiscard]] std::map<std::string, key_options> load_authorized_key_options(const std::filesystem::path& file);
// The keys alone.
[[nodiscard]] std::set<std::string> parse_authorized_keys(const std::string& text, const std::string& origin);
[[nodiscard]] std::set<std::string> load_authorized_keys(const std::filesystem::path& file);

// True if `address` (as ZeroMQ's Peer-Address gives it: "10.1.2.3", "::1", "::ffff:10.1.2.3") lies
// in `pattern`, an address or a CIDR block ("10.0.0.0/8", "fd00::/8").
[[nodiscard]] bool address_matches(const std::string& address, const std::string& pattern);

// Z85 of 32 raw key bytes (what a ZAP request carries).
[[nodiscard]] std::string z85_encode_key(const void* key32);

}  // namespace splitcore
