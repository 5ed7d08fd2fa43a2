// CurveZMQ keys: generation, Z85, the agent's key directory and the authorized_keys file.
#pragma once

#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>

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

// One Z85 public key per line; blank lines and text after '#' are ignored; anything else that is
// not a key throws key_error naming file and line.
[[nodiscard]] std::set<std::string> parse_authorized_keys(const std::string& text, const std::string& origin);
[[nodiscard]] std::set<std::string> load_authorized_keys(const std::filesystem::path& file);

// Z85 of 32 raw key bytes (what a ZAP request carries).
[[nodiscard]] std::string z85_encode_key(const void* key32);

}  // namespace splitcore
