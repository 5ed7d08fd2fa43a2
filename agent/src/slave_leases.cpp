#include "slave_leases.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "log.hpp"

namespace splitbrain::agent {

using splitcore::json;

void slave_leases::set(const json& limits, const std::string& session) {
    if (!limits.is_object()) return;
    const auto file = limits.find("slave_leases");
    const auto key = limits.find("key");
    if (file == limits.end() || !file->is_string() || key == limits.end() || !key->is_string()) return;
    m_file = file->get<std::string>();
    m_key = key->get<std::string>();
    m_session = session;
}

void slave_leases::refresh() {
    struct stat st {};
    if (::stat(m_file.c_str(), &st) != 0) {
        m_table = json();
        m_mtime_ns = -1;
        return;
    }
    const std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    if (st.st_ino == m_inode && mtime_ns == m_mtime_ns && st.st_size == m_size) return;
    std::ifstream in(m_file);
    std::stringstream text;
    text << in.rdbuf();
    try {
        m_table = json::parse(text.str());
    } catch (const json::exception& e) {
        log("cannot read the lease table " + m_file + ": " + e.what());
        m_table = json();
        return;
    }
    m_inode = st.st_ino;
    m_mtime_ns = mtime_ns;
    m_size = st.st_size;
}

std::optional<std::string> slave_leases::refusal() {
    if (m_file.empty()) return std::nullopt;
    refresh();
    if (!m_table.is_object()) return std::nullopt;
    if (const auto notices = m_table.find("notices"); notices != m_table.end() && notices->is_object()) {
        if (const auto mine = notices->find(m_session); mine != notices->end() && mine->is_array() &&
                                                        mine->size() == 2 && mine->at(0).is_number_unsigned() &&
                                                        mine->at(1).is_string()) {
            const auto number = mine->at(0).get<std::uint64_t>();
            if (number > m_notice_told) {
                m_notice_told = number;
                return mine->at(1).get<std::string>() + "; take it again when it is free";
            }
        }
    }
    const auto leases = m_table.find("leases");
    if (leases == m_table.end() || !leases->is_array() || leases->empty()) return std::nullopt;
    const std::time_t now = std::time(nullptr);
    const json* other = nullptr;
    bool shares = false;
    for (const json& l : *leases) {
        if (!l.is_object()) continue;
        if (const auto until = l.find("until");
            until != l.end() && until->is_number() && now >= until->get<std::time_t>())
            continue;  // its time is up (the supervisor drops it soon)
        if (l.value("key", "") == m_key) {
            shares = true;
        } else if (other == nullptr) {
            other = &l;
        }
    }
    if (other == nullptr) return std::nullopt;
    // A shared lease on the whole slave admits the keys that share it.
    if (other->value("shared", false) && shares) return std::nullopt;
    return other->value("detail", std::string("this slave is leased"));
}

}  // namespace splitbrain::agent
