// What each client key may do on this agent: the options of its authorized_keys line (from=,
// expires=, max-sessions=, allow-/deny-modules=, lease, admin), checked when a session opens.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>

#include "splitcore/keys.hpp"
#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

class key_limits {
public:
    // Reads the file again when its mtime or size changed since the last read (one stat). The
    // first read throws splitcore::key_error; a later file that no longer parses keeps what was
    // read before, and says so in the log. Returns true if it read the file.
    bool reload(const std::filesystem::path& file);

    [[nodiscard]] bool authorized(const std::string& key) const { return m_keys.count(key) > 0; }
    [[nodiscard]] std::size_t size() const noexcept { return m_keys.size(); }
    // The key's options; a default (unlimited, no lease) for a key not in the file (insecure).
    [[nodiscard]] const splitcore::key_options& of(const std::string& key) const;
    // "alice@lab-pc" (the line's comment), else a short form of the key; "this client" when insecure.
    [[nodiscard]] std::string who(const std::string& key) const;

    // Throws splitcore::error (key_limit, too_many_sessions) if `key`, connecting from `peer`
    // (ZeroMQ's Peer-Address) and holding `owned` sessions, may not open one more; logs each
    // refusal with the key's comment. `global_max` is --max-sessions-per-key.
    void check_session(const std::string& key, const std::string& peer, std::size_t owned, std::size_t global_max,
                       const std::string& host) const;

    // What the session's worker enforces itself, sent in its hello: {allow: [names] or null, deny: [names]}.
    [[nodiscard]] splitcore::json worker_limits(const std::string& key) const;

private:
    std::map<std::string, splitcore::key_options> m_keys;
    std::filesystem::file_time_type m_mtime{};
    std::uintmax_t m_size = 0;
    bool m_read = false;
};

}  // namespace splitbrain::agent
