#include "key_limits.hpp"

#include <ctime>
#include <algorithm>

#include "log.hpp"

namespace splitbrain::agent {

namespace fs = std::filesystem;
using splitcore::errc;

namespace {

std::string utc_date(std::time_t t) {
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &tm);
    return text;
}

std::string joined(const std::vector<std::string>& items) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "" : ",") + item;
    return text;
}

}  // namespace

bool key_limits::reload(const fs::path& file) {
    std::error_code ec;
    const auto mtime = fs::last_write_time(file, ec);
    const auto size = ec ? 0 : fs::file_size(file, ec);
    if (m_read && !ec && mtime == m_mtime && size == m_size) return false;
    try {
        auto keys = splitcore::load_authorized_key_options(file);
        if (m_read) {
            log("read " + file.string() + " again: " + std::to_string(keys.size()) + " authorized keys (was " +
                std::to_string(m_keys.size()) + ")");
        }
        m_keys = std::move(keys);
    } catch (const splitcore::key_error& e) {
        if (!m_read) throw;
        log(std::string(e.what()) + "; keeping the " + std::to_string(m_keys.size()) + " keys read before");
    }
    m_read = true;
    m_mtime = mtime;
    m_size = size;
    return true;
}

const splitcore::key_options& key_limits::of(const std::string& key) const {
    static const splitcore::key_options unlimited;
    const auto found = m_keys.find(key);
    return found == m_keys.end() ? unlimited : found->second;
}

std::string key_limits::who(const std::string& key) const {
    return key.empty() ? std::string("this client") : of(key).who(key);
}

void key_limits::check_session(const std::string& key, const std::string& peer, std::size_t owned,
                               std::size_t global_max, const std::string& host) const {
    const splitcore::key_options& options = of(key);
    auto refuse = [&](errc code, const std::string& detail) {
        log("refused a session of " + who(key) + (peer.empty() ? "" : " from " + peer) + ": " + detail);
        throw splitcore::error(code, detail);
    };
    if (!options.from.empty()) {
        bool matched = false;
        for (const auto& pattern : options.from) matched = matched || splitcore::address_matches(peer, pattern);
        if (!matched) {
            refuse(errc::key_limit, "key " + who(key) + " may connect to " + host + " only from " +
                                        joined(options.from) + " (its from= in authorized_keys), not from " +
                                        (peer.empty() ? std::string("an unknown address") : peer));
        }
    }
    if (options.expires && std::time(nullptr) >= *options.expires) {
        refuse(errc::key_limit, "key " + who(key) + " expired on " + utc_date(*options.expires) + " (expires=\"" +
                                    options.expires_text + "\" in " + host +
                                    "'s authorized_keys); ask the lab's admin to renew it");
    }
    const std::size_t limit = options.max_sessions ? std::min(*options.max_sessions, global_max) : global_max;
    if (owned >= limit) {
        const bool own = options.max_sessions && *options.max_sessions <= global_max;
        refuse(errc::too_many_sessions, (key.empty() ? std::string("this client") : "key " + who(key)) +
                                            " already has " + std::to_string(owned) + " sessions on " + host +
                                            "; close one (Slave.close()) or raise " +
                                            (own ? "its max-sessions=" + std::to_string(limit) + " in authorized_keys"
                                                 : std::string("--max-sessions-per-key")));
    }
}

splitcore::json key_limits::worker_limits(const std::string& key) const {
    const splitcore::key_options& options = of(key);
    return splitcore::json{
        {"who", who(key)},
        {"allow", options.allow_modules ? splitcore::json(*options.allow_modules) : splitcore::json(nullptr)},
        {"deny", options.deny_modules}};
}

}  // namespace splitbrain::agent
