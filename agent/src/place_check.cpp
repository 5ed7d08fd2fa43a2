#include "place_check.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "log.hpp"

namespace splitbrain::agent {

namespace {

// "alice" matches "lab-pc/alice" (any host); "lab-pc/alice" only itself.
bool same_user(const std::string& user, const std::string& labgrid_name) {
    if (user.empty()) return false;
    if (user.find('/') != std::string::npos) return user == labgrid_name;
    const auto slash = labgrid_name.find('/');
    return labgrid_name.substr(slash == std::string::npos ? 0 : slash + 1) == user;
}

}  // namespace

place_check::place_check(settings s) : m_settings(std::move(s)) { keep_running(); }

place_check::~place_check() { stop(); }

void place_check::stop() {
    if (m_to_helper >= 0) ::close(m_to_helper);  // its stdin closes: it exits
    if (m_from_helper >= 0) ::close(m_from_helper);
    m_to_helper = m_from_helper = -1;
    if (m_pid > 0) ::kill(m_pid, SIGTERM);  // reaped by the supervisor's SIGCHLD handling
    m_pid = -1;
}

void place_check::keep_running() {
    if (m_pid > 0 || std::chrono::steady_clock::now() < m_not_before) return;
    m_not_before = std::chrono::steady_clock::now() + m_backoff;  // if it cannot even start
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
        log(std::string("cannot start the place watcher: pipe: ") + std::strerror(errno));
        return;
    }
    if (::pipe2(out, O_CLOEXEC) != 0) {
        ::close(in[0]);
        ::close(in[1]);
        log(std::string("cannot start the place watcher: pipe: ") + std::strerror(errno));
        return;
    }
    const std::string python = m_settings.python.string(), helper = m_settings.helper.string();
    std::vector<std::string> args = {python,
                                     "-I" /* no user site, no cwd on sys.path */,
                                     helper,
                                     "--coordinator",
                                     m_settings.coordinator,
                                     "--place",
                                     m_settings.place};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        // Only async-signal-safe calls until exec.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    if (pid < 0) {
        ::close(in[1]);
        ::close(out[0]);
        log(std::string("cannot start the place watcher: fork: ") + std::strerror(errno));
        return;
    }
    m_pid = pid;
    m_to_helper = in[1];
    m_from_helper = out[0];
    ::fcntl(m_from_helper, F_SETFL, O_NONBLOCK);
    m_pending.clear();
    log("watching labgrid place " + m_settings.place + " on coordinator " + m_settings.coordinator +
        " (place watcher pid " + std::to_string(pid) + ")");
}

void place_check::send(const std::string& line) {
    if (m_to_helper < 0) return;
    const std::string text = line + "\n";
    // A few bytes into a pipe the helper reads: whole or nothing (below PIPE_BUF); a helper that
    // stopped reading costs this one order, never a blocked supervisor.
    if (::write(m_to_helper, text.data(), text.size()) < 0 && errno != EAGAIN) {
        log(std::string("the place watcher does not read its orders: ") + std::strerror(errno));
    }
}

std::uint64_t place_check::ask() {
    const std::uint64_t number = m_next_sync++;
    send(nlohmann::json{{"sync", number}}.dump());
    return number;
}

void place_check::release_from(const std::string& holder) {
    log("releasing labgrid place " + m_settings.place + " from " + holder + ": its splitbrain session expired");
    send(nlohmann::json{{"release_from", holder}}.dump());
}

std::vector<std::uint64_t> place_check::read() {
    std::vector<std::uint64_t> answered;
    if (m_from_helper < 0) return answered;
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::read(m_from_helper, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;  // EAGAIN: all read
        if (got == 0) {
            log("the place watcher ended; it is started again in " + std::to_string(m_backoff.count()) + " s");
            m_not_before = std::chrono::steady_clock::now() + m_backoff;
            m_backoff = std::min(m_backoff * 2, std::chrono::seconds(60));
            m_known = false;
            m_down = "the place watcher ended (see the agent's log)";
            stop();
            break;
        }
        m_pending.append(buffer, static_cast<std::size_t>(got));
        if (m_pending.size() > (1 << 20)) m_pending.clear();  // no line is that long: not ours
    }
    for (std::size_t end; (end = m_pending.find('\n')) != std::string::npos; m_pending.erase(0, end + 1)) {
        const auto line = nlohmann::json::parse(m_pending.substr(0, end), nullptr, false);
        if (!line.is_object()) continue;
        m_backoff = std::chrono::seconds(2);  // it runs: a later end starts the back-off again
        if (const auto place = line.find("place"); place != line.end() && place->is_object()) {
            const bool was_known = m_known;
            m_known = true;
            m_exists = place->value("exists", false);
            const auto acquired = place->find("acquired");
            m_acquired = acquired != place->end() && acquired->is_string()
                             ? std::optional<std::string>(acquired->get<std::string>())
                             : std::nullopt;
            m_allowed.clear();
            if (const auto allowed = place->find("allowed"); allowed != place->end() && allowed->is_array()) {
                for (const auto& user : *allowed) {
                    if (user.is_string()) m_allowed.push_back(user.get<std::string>());
                }
            }
            if (!was_known) log("labgrid place " + m_settings.place + ": " + state());
        } else if (const auto down = line.find("down"); down != line.end() && down->is_string()) {
            if (m_known || m_down != down->get<std::string>())
                log("labgrid place " + m_settings.place + ": " + down->get<std::string>());
            m_known = false;
            m_down = down->get<std::string>();
        }
        if (const auto sync = line.find("sync"); sync != line.end() && sync->is_number_unsigned()) {
            answered.push_back(sync->get<std::uint64_t>());
        }
    }
    return answered;
}

bool place_check::acquired_by(const std::string& user) const {
    return m_known && m_acquired && same_user(user, *m_acquired);
}

bool place_check::held_by(const std::string& user) const {
    if (acquired_by(user)) return true;
    return m_known && m_acquired &&
           std::any_of(m_allowed.begin(), m_allowed.end(), [&](const std::string& a) { return same_user(user, a); });
}

std::string place_check::state() const {
    if (!m_known) return m_down;
    if (!m_exists) return "there is no such place on the coordinator " + m_settings.coordinator;
    if (!m_acquired) return "it is not acquired";
    return "it is acquired by " + *m_acquired;
}

}  // namespace splitbrain::agent
