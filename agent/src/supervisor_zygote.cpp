// The supervisor's side of the zygote (zygote.hpp): starting it, asking it for a worker, its end.
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>

#include "log.hpp"
#include "supervisor.hpp"

namespace splitbrain::agent {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds zygote_answer_within{2};
constexpr std::chrono::seconds zygote_start_within{10};  // past that, spares are exec'd while it starts

}  // namespace

void supervisor::start_zygote() {
    if (m_stopping || m_zygote_pid > 0 || m_zygote_failed) return;
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
        log(std::string("cannot start the zygote: socketpair: ") + std::strerror(errno) + "; workers start by exec");
        return;
    }
    // Exec'd through a link named sb-zygote, so that its process name says what it is from the
    // start (the workers it forks name themselves splitbrain-work again, as an exec'd one is named).
    std::string executable = m_options.worker.string();
    std::error_code ec;
    const fs::path link = m_private_dir / "sb-zygote";
    fs::remove(link, ec);
    fs::create_symlink(fs::absolute(m_options.worker, ec), link, ec);
    if (!ec) executable = link.string();
    const pid_t pid =
        exec_worker({executable, "--connect", m_backend_endpoint, "--zygote", std::to_string(fds[1])}, fds[1]);
    if (pid < 0) {
        log(std::string("cannot start the zygote: fork: ") + std::strerror(errno) + "; workers start by exec");
        ::close(fds[0]);
        ::close(fds[1]);
        return;
    }
    ::close(fds[1]);
    m_zygote_fd = fds[0];
    m_zygote_pid = pid;
    m_zygote_ready = false;
    m_zygote_started = clock::now();
    tell_janitor('+', pid);
}

bool supervisor::zygote_starting() const {
    return m_zygote_fd >= 0 && !m_zygote_ready && clock::now() - m_zygote_started < zygote_start_within;
}

void supervisor::read_zygote(bool replay) {
    char buffer[256];
    while (m_zygote_fd >= 0) {
        const ssize_t got = ::recv(m_zygote_fd, buffer, sizeof buffer - 1, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        if (got == 0) {
            ::close(m_zygote_fd);  // it is gone: zygote_ended() says why when its SIGCHLD comes, and restarts it
            m_zygote_fd = -1;
            break;
        }
        const std::string answer(buffer, static_cast<std::size_t>(got));
        if (answer == "ready") {
            m_zygote_ready = true;
            continue;
        }
        const bool done = answer.rfind("pid ", 0) == 0;
        if (!done && answer.rfind("failed ", 0) != 0) continue;
        const std::string rest = answer.substr(done ? 4 : 7);
        const std::string id = rest.substr(0, rest.find(' '));
        const std::string detail = rest.find(' ') == std::string::npos ? "" : rest.substr(rest.find(' ') + 1);
        m_zygote_forks.erase(id);
        if (!done) {
            zygote_fork_failed(id, detail);
            continue;
        }
        const pid_t pid = static_cast<pid_t>(std::strtol(detail.c_str(), nullptr, 10));
        if (pid <= 1) continue;
        const auto w = m_workers.find(id);
        if (w == m_workers.end()) {  // given up on: it must not run unwatched
            ::kill(pid, SIGKILL);
            continue;
        }
        w->second.pid = pid;
        m_worker_of_pid[pid] = id;
        tell_janitor('+', pid);
        if (w->second.session.empty() && m_spare != id) terminate_group(pid);  // its session ended meanwhile
        if (const auto ended = m_unclaimed_exits.find(pid); ended != m_unclaimed_exits.end()) {
            m_replayed_exits.emplace_back(pid, ended->second.first);
            m_unclaimed_exits.erase(ended);
        }
    }
    if (replay && !m_replayed_exits.empty()) handle_signals();
}

std::optional<std::string> supervisor::fork_from_zygote(const std::string& id) {
    if (m_zygote_fd < 0) return std::nullopt;
    if (!m_zygote_ready) {
        read_zygote();
        if (!m_zygote_ready || m_zygote_fd < 0) return std::nullopt;  // not yet: exec this one
    }
    const std::string request = "fork " + id;
    if (::send(m_zygote_fd, request.data(), request.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        log(std::string("the zygote does not take requests (") + std::strerror(errno) + "); workers start by exec");
        stop_zygote();
        return std::nullopt;
    }
    m_workers[id] = worker{id, -1, false, {}, {}};
    m_zygote_forks[id] = clock::now();
    return id;
}

void supervisor::zygote_fork_failed(const std::string& id, const std::string& why) {
    log("the zygote did not fork worker " + id + ": " + why);
    const auto w = m_workers.find(id);
    if (w == m_workers.end()) return;
    if (auto s = m_sessions.find(w->second.session); s != m_sessions.end() && s->second.worker_id == id) {
        lose_session(s->second, "could not be started (" + why + ")");
    }
    if (m_spare == id) m_spare.reset();
    m_workers.erase(w);
}

void supervisor::check_zygote_forks() {
    const auto now = clock::now();
    std::vector<std::string> late;
    for (const auto& [id, asked] : m_zygote_forks) {
        if (now - asked > zygote_answer_within) late.push_back(id);
    }
    for (const auto& id : late) {
        m_zygote_forks.erase(id);
        zygote_fork_failed(id, "no answer within " + std::to_string(zygote_answer_within.count()) +
                                   " s; workers start by exec from now on");
    }
    if (!late.empty()) stop_zygote();
    for (auto it = m_unclaimed_exits.begin(); it != m_unclaimed_exits.end();) {
        it = now - it->second.second > 2 * zygote_answer_within ? m_unclaimed_exits.erase(it) : std::next(it);
    }
}

pid_t supervisor::next_exit(int& status) {
    if (!m_replayed_exits.empty()) {
        const auto [pid, ended] = m_replayed_exits.front();
        m_replayed_exits.pop_front();
        status = ended;
        return pid;
    }
    return ::waitpid(-1, &status, WNOHANG);
}

void supervisor::zygote_ended(int status) {
    const bool was_ready = m_zygote_ready;
    read_zygote(false);  // what it (or a middle process) said before it ended
    for (const auto& [id, asked] : std::map<std::string, clock::time_point>(m_zygote_forks)) {
        zygote_fork_failed(id, "the zygote ended");
    }
    m_zygote_forks.clear();
    tell_janitor('-', m_zygote_pid);
    if (m_zygote_fd >= 0) ::close(m_zygote_fd);
    m_zygote_fd = -1;
    m_zygote_pid = -1;
    m_zygote_ready = false;
    if (m_stopping) return;
    m_zygote_failed = !was_ready;
    log(std::string("the zygote ended with ") +
        (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                           : "signal " + std::to_string(WTERMSIG(status))) +
        (was_ready ? "; starting it again" : " before it was ready; workers start by exec from now on"));
    if (was_ready) start_zygote();
}

void supervisor::stop_zygote() {
    if (m_zygote_fd >= 0) ::close(m_zygote_fd);  // it exits when its end reads end-of-file
    m_zygote_fd = -1;
    m_zygote_ready = false;
    if (m_zygote_pid > 0) ::kill(m_zygote_pid, SIGTERM);
}

}  // namespace splitbrain::agent
