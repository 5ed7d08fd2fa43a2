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
    std::vector<std::string> args = {executable, "--connect", m_backend_endpoint, "--zygote",
                                     std::to_string(fds[1])};
    if (!m_options.python.empty()) {
        args.push_back("--python");
        args.push_back(m_options.python);
    }
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        log(std::string("cannot start the zygote: fork: ") + std::strerror(errno) + "; workers start by exec");
        ::close(fds[0]);
        ::close(fds[1]);
        return;
    }
    if (pid == 0) {
        // Only async-signal-safe calls until exec (as in spawn_worker).
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        ::fcntl(fds[1], F_SETFD, 0);  // its end survives exec
        const int null_fd = ::open("/dev/null", O_RDONLY);
        if (null_fd >= 0) ::dup2(null_fd, 0);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    m_zygote_fd = fds[0];
    m_zygote_pid = pid;
    m_zygote_ready = false;
    tell_janitor('+', pid);
}

void supervisor::read_zygote() {
    char buffer[256];
    const ssize_t got = ::recv(m_zygote_fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (got == 5 && std::memcmp(buffer, "ready", 5) == 0) {
        m_zygote_ready = true;
    } else if (got == 0) {
        ::close(m_zygote_fd);  // it is gone: zygote_ended() says why when its SIGCHLD comes, and restarts it
        m_zygote_fd = -1;
    }  // else: the late answer to a request given up on
}

std::optional<std::string> supervisor::fork_from_zygote(const std::string& id) {
    if (m_zygote_fd < 0) return std::nullopt;
    char buffer[256];
    if (!m_zygote_ready) {
        const ssize_t got = ::recv(m_zygote_fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (got != 5 || std::memcmp(buffer, "ready", 5) != 0) return std::nullopt;  // not yet: exec this one
        m_zygote_ready = true;
    }
    const std::string request = "fork " + id;
    if (::send(m_zygote_fd, request.data(), request.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        log(std::string("the zygote does not take requests (") + std::strerror(errno) + "); workers start by exec");
        stop_zygote();
        return std::nullopt;
    }
    const auto deadline = clock::now() + zygote_answer_within;
    const std::string done = "pid " + id + " ", failed = "failed " + id + " ";
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        if (left <= 0) break;
        pollfd item{m_zygote_fd, POLLIN, 0};
        const int ready = ::poll(&item, 1, static_cast<int>(left));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        const ssize_t got = ::recv(m_zygote_fd, buffer, sizeof buffer - 1, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) break;
        const std::string answer(buffer, static_cast<std::size_t>(got));
        if (answer.rfind(failed, 0) == 0) {
            log("the zygote cannot fork worker " + id + ": " + answer.substr(failed.size()) + "; it starts by exec");
            return std::nullopt;
        }
        if (answer.rfind(done, 0) != 0) continue;  // the late answer to a request given up on
        const pid_t pid = static_cast<pid_t>(std::strtol(answer.c_str() + done.size(), nullptr, 10));
        if (pid <= 1) break;
        m_workers[id] = worker{id, pid, false, {}, {}};
        m_worker_of_pid[pid] = id;
        tell_janitor('+', pid);
        return id;
    }
    log("the zygote did not fork worker " + id + " within " + std::to_string(zygote_answer_within.count()) +
        " s; workers start by exec from now on");
    stop_zygote();
    return std::nullopt;
}

void supervisor::zygote_ended(int status) {
    const bool was_ready = m_zygote_ready;
    tell_janitor('-', m_zygote_pid);
    if (m_zygote_fd >= 0) ::close(m_zygote_fd);
    m_zygote_fd = -1;
    m_zygote_pid = -1;
    m_zygote_ready = false;
    if (m_stopping) return;
    m_zygote_failed = !was_ready;
    log(std::string("the zygote ended with ") + (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
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
