#include "leases.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iterator>
#include <unistd.h>

#include "log.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

namespace fs = std::filesystem;
using splitcore::errc;
using splitcore::json;

namespace {

std::string clock_time(std::time_t t) {
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char text[16];
    std::strftime(text, sizeof text, "%H:%M", &tm);
    return text;
}

bool covers(const std::vector<std::string>& resources, const std::string& resource) {
    return resources.empty() || std::find(resources.begin(), resources.end(), resource) != resources.end();
}

}  // namespace

lease_table::lease_table(fs::path file, std::string host, std::map<std::string, std::string> names)
    : m_file(std::move(file)), m_host(std::move(host)), m_names(std::move(names)) {
    write_file();
}

json lease_table::answer(std::string_view op, const json& header, const holder& h) {
    std::vector<std::string> resources;
    if (const json* given = splitcore::optional_field(header, "resources"); given != nullptr && !given->is_null()) {
        if (!given->is_array())
            throw splitcore::error(errc::bad_request, "field \"resources\" must be a list of names");
        for (const auto& name : *given) {
            if (!name.is_string() || name.get<std::string>().size() > 512) {
                throw splitcore::error(errc::bad_request,
                                       "field \"resources\" must hold names of at most 512 characters (\"\": the "
                                       "whole slave)");
            }
            const auto named = m_names.find(name.get<std::string>());
            resources.push_back(named == m_names.end() ? name.get<std::string>() : named->second);
        }
    }
    auto flag = [&](const char* field) {
        const json* value = splitcore::optional_field(header, field);
        return value != nullptr && value->is_boolean() && value->get<bool>();
    };
    if (op == "lease") {
        std::optional<double> seconds;
        if (const json* given = splitcore::optional_field(header, "for"); given != nullptr && !given->is_null()) {
            if (!given->is_number() || !(given->get<double>() > 0) || given->get<double>() > 366.0 * 86400) {
                throw splitcore::error(errc::bad_request, "field \"for\" must be a number of seconds, at most a year");
            }
            seconds = given->get<double>();
        }
        return json{{"leases", take(h, resources, seconds, flag("shared"))}};
    }
    if (op == "unlease") return json{{"released", release(h, resources, flag("force"))}};
    expire();
    return list(h.session);
}

std::string lease_table::label(const std::string& resource) const {
    for (const auto& [name, target] : m_names) {
        if (target == resource) return name + " (" + target + ")";
    }
    return resource;
}

std::string lease_table::describe(const lease& l) const {
    return m_host + (l.resource.empty() ? "" : ":" + label(l.resource)) + " is leased by " + l.by.who +
           (l.shared ? " (shared, " : " (") + "since " + clock_time(l.since) +
           (l.until ? ", until " + clock_time(*l.until) : std::string(", while its session lasts")) + ")";
}

json lease_table::take(const holder& h, const std::vector<std::string>& resources, std::optional<double> seconds,
                       bool shared) {
    expire();
    if (!h.may_lease) {
        log("refused a lease to " + h.who + ": its authorized_keys line has no lease option");
        throw splitcore::error(errc::key_limit, "key " + h.who + " may not take leases on " + m_host +
                                                    "; the lab's admin can add the option lease (or admin) to its "
                                                    "line in authorized_keys");
    }
    std::vector<std::string> wanted = resources.empty() ? std::vector<std::string>{""} : resources;
    for (const auto& resource : wanted) {
        for (const auto& l : m_leases) {
            if (l.by.key == h.key) continue;
            // The whole slave and any resource on it exclude each other; two shared leases do not.
            const bool same = l.resource == resource || l.resource.empty() || resource.empty();
            if (same && !(shared && l.shared)) {
                log("refused a lease on " + (resource.empty() ? m_host : resource) + " to " + h.who + ": " +
                    describe(l));
                throw splitcore::error(errc::leased, describe(l));
            }
        }
    }
    const std::time_t now = std::time(nullptr);
    json taken = json::array();
    for (const auto& resource : wanted) {
        auto found = std::find_if(m_leases.begin(), m_leases.end(),
                                  [&](const lease& l) { return l.by.session == h.session && l.resource == resource; });
        if (found == m_leases.end()) {
            m_leases.push_back(lease{resource, h, shared, now, std::nullopt});
            found = std::prev(m_leases.end());
        }
        found->shared = shared;
        found->until = seconds ? std::optional<std::time_t>(now + static_cast<std::time_t>(*seconds)) : std::nullopt;
        log("lease on " + (resource.empty() ? m_host : resource) + " taken by " + h.who);
        taken.push_back(json{{"resource", resource},
                             {"shared", shared},
                             {"since", found->since},
                             {"until", found->until ? json(*found->until) : json(nullptr)}});
    }
    write_file();
    return taken;
}

std::size_t lease_table::release(const holder& h, const std::vector<std::string>& resources, bool force) {
    if (force && !h.admin) {
        log("refused a forced release to " + h.who + ": its authorized_keys line has no admin option");
        throw splitcore::error(errc::key_limit, "key " + h.who + " may not force a release on " + m_host +
                                                    "; only a key with the option admin in authorized_keys may");
    }
    std::size_t ended = 0;
    for (auto it = m_leases.begin(); it != m_leases.end();) {
        const bool mine = it->by.session == h.session;
        const bool named = resources.empty() ? (mine || force) : covers(resources, it->resource);
        if (named && (mine || force)) {
            if (!mine) {
                m_notice_numbers[it->by.session] = ++m_notices_given;
                m_notices[it->by.session] = "your lease on " + m_host +
                                            (it->resource.empty() ? "" : ":" + it->resource) + " was released by " +
                                            h.who + " at " + clock_time(std::time(nullptr));
                log("lease on " + (it->resource.empty() ? m_host : it->resource) + " of " + it->by.who +
                    " force-released by " + h.who);
            }
            it = m_leases.erase(it);
            ++ended;
        } else {
            ++it;
        }
    }
    if (ended) write_file();
    return ended;
}

json lease_table::list(const std::string& session) const {
    json all = json::array();
    for (const auto& l : m_leases) {
        const std::string shown = label(l.resource);
        all.push_back(json{{"resource", l.resource},
                           {"name", shown == l.resource ? json(nullptr) : json(shown.substr(0, shown.find(" (")))},
                           {"holder", l.by.who},
                           {"shared", l.shared},
                           {"since", l.since},
                           {"until", l.until ? json(*l.until) : json(nullptr)},
                           {"mine", l.by.session == session}});
    }
    return all;
}

void lease_table::check_request(const std::string& session, const std::string& key, bool notices) {
    if (auto notice = m_notices.find(session); notices && notice != m_notices.end()) {
        const std::string text = notice->second;
        m_notices.erase(notice);
        m_notice_numbers.erase(session);
        write_file();
        throw splitcore::error(errc::leased, text + "; take it again when it is free");
    }
    if (m_leases.empty()) return;
    expire();
    const auto other = std::find_if(m_leases.begin(), m_leases.end(),
                                    [&](const lease& l) { return l.resource.empty() && l.by.key != key; });
    if (other == m_leases.end()) return;
    // A shared lease on the whole slave admits the keys that share it.
    if (other->shared && std::any_of(m_leases.begin(), m_leases.end(),
                                     [&](const lease& l) { return l.resource.empty() && l.by.key == key; })) {
        return;
    }
    throw splitcore::error(errc::leased, describe(*other));
}

void lease_table::end_session(const std::string& session) {
    if (m_notices.erase(session) != 0) {
        m_notice_numbers.erase(session);
        write_file();
    }
    const auto before = m_leases.size();
    m_leases.erase(
        std::remove_if(m_leases.begin(), m_leases.end(), [&](const lease& l) { return l.by.session == session; }),
        m_leases.end());
    if (m_leases.size() != before) {
        log(std::to_string(before - m_leases.size()) + " leases ended with their session");
        write_file();
    }
}

void lease_table::expire() {
    if (m_leases.empty()) return;
    const std::time_t now = std::time(nullptr);
    const auto before = m_leases.size();
    m_leases.erase(
        std::remove_if(m_leases.begin(), m_leases.end(), [&](const lease& l) { return l.until && now >= *l.until; }),
        m_leases.end());
    if (m_leases.size() != before) {
        log(std::to_string(before - m_leases.size()) + " leases ended: their time was up");
        write_file();
    }
}

namespace {

// Replaced whole (a rename), so a reader never sees half of it.
void write_whole(const fs::path& file, const std::string& text) {
    const fs::path temporary = file.string() + ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log("cannot write the lease table " + temporary.string() + ": " + std::strerror(errno));
        return;
    }
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!written || ::rename(temporary.c_str(), file.c_str()) != 0) {
        log("cannot write the lease table " + file.string() + ": " + std::strerror(errno));
    }
}

}  // namespace

void lease_table::write_file() const {
    json table = json::array();
    json slave = json::array();
    for (const auto& l : m_leases) {
        if (l.resource.empty()) {
            slave.push_back(json{{"key", l.by.key},
                                 {"shared", l.shared},
                                 {"until", l.until ? json(*l.until) : json(nullptr)},
                                 {"detail", describe(l)}});
        } else {
            table.push_back(json{{"resource", l.resource}, {"key", l.by.key}, {"detail", describe(l)}});
        }
    }
    json notices = json::object();
    for (const auto& [session, text] : m_notices) {
        const auto number = m_notice_numbers.find(session);
        notices[session] = json::array({number == m_notice_numbers.end() ? 0 : number->second, text});
    }
    write_whole(m_file, table.dump() + "\n");
    write_whole(slave_file(), json{{"leases", std::move(slave)}, {"notices", std::move(notices)}}.dump() + "\n");
}

}  // namespace splitbrain::agent
