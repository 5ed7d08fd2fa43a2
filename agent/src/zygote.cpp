#include "zygote.hpp"

#include <Python.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <zmq.h>

#include "log.hpp"

namespace splitbrain::agent {

namespace {

void say(int fd, const std::string& text) {
    while (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

// In the forked worker: wait (bounded) until the middle process has exited and the supervisor
// adopted us, then die with the supervisor as an exec'd worker does.
void become_a_child_of(pid_t supervisor) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (::getppid() != supervisor) {
        if (std::chrono::steady_clock::now() > deadline) ::_exit(1);
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != supervisor) ::_exit(1);  // the supervisor died in between
}

// Every object the zygote holds now is the workers' too, shared page by page until one writes to
// it. The cyclic collector writes to each tracked object it examines: frozen (gc.freeze()), the
// zygote's objects are never examined again, so a worker's collections touch only its own. No
// gc.collect() first: with the system Python it crashed the zygote (SIGSEGV inside the collection)
// in about half of its starts once the lease guard was prepared, not with the venv's, not in an
// exec'd worker; unexplained yet. Freezing without collecting only keeps the start-up's garbage.
void freeze_objects() {
    if (PyRun_SimpleString("import gc\n"
                           "gc.freeze()\n"
                           "del gc\n") != 0) {
        PyErr_Clear();
        log("cannot freeze the zygote's objects: each worker's collections copy more of its memory");
    }
}

// A worker's first ZeroMQ context runs OpenPGM's pgm_init, whose getprotobyname() is the process's
// first NSS lookup: /etc/nsswitch.conf parsed and ~30 paths tried for libnss_db, in every fork. Done
// once here (a context made and ended: it starts no thread), the forks inherit glibc's NSS state.
void warm_up_zmq_context() {
    if (void* context = zmq_ctx_new()) zmq_ctx_term(context);
}

}  // namespace

std::string serve_as_zygote(int control_fd) {
    const pid_t supervisor = ::getppid();
    ::prctl(PR_SET_NAME, "sb-zygote");
    warm_up_zmq_context();
    freeze_objects();
    say(control_fd, "ready");
    for (;;) {
        char buffer[256];
        ssize_t got;
        while ((got = ::recv(control_fd, buffer, sizeof buffer - 1, 0)) < 0 && errno == EINTR) {
        }
        if (got <= 0) ::_exit(0);  // the supervisor closed its end, or is gone
        const std::string request(buffer, static_cast<std::size_t>(got));
        if (request.rfind("fork ", 0) != 0) continue;
        const std::string id = request.substr(5);

        PyOS_BeforeFork();
        const pid_t middle = ::fork();
        if (middle == 0) {
            const pid_t worker = ::fork();
            if (worker == 0) {
                ::setpgid(0, 0);  // a Ctrl-C at the agent's terminal is the supervisor's to handle
                ::prctl(PR_SET_NAME, "splitbrain-work");  // what an exec'd worker's name reads
                ::close(control_fd);
                become_a_child_of(supervisor);
                PyOS_AfterFork_Child();
                return id;
            }
            say(control_fd, worker > 0 ? "pid " + id + " " + std::to_string(worker)
                                       : "failed " + id + " fork: " + std::strerror(errno));
            ::_exit(0);
        }
        const int fork_errno = errno;
        PyOS_AfterFork_Parent();
        if (middle < 0) {
            say(control_fd, "failed " + id + " fork: " + std::strerror(fork_errno));
            continue;
        }
        int status = 0;
        while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
        }
    }
}

}  // namespace splitbrain::agent
