// splitbrain-worker: one client session of the agent. Started by the supervisor:
//   splitbrain-worker --connect ipc://DIR/workers --id wN [--python VENV_OR_EXE]   (or --version)
// or, as the zygote that forks the workers (zygote.hpp):
//   splitbrain-worker --connect ipc://DIR/workers --zygote FD [--python VENV_OR_EXE]
//
// Two threads. The main thread embeds CPython and executes one operation at a time (it must be
// the main thread: Python runs signal handlers, and so raises KeyboardInterrupt, only there):
// serve_loop.cpp. The IO thread carries messages and output: io_thread.cpp.
#include <Python.h>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <zmq.hpp>

#include "descriptors.hpp"
#include "interrupts.hpp"
#include "io_thread.hpp"
#include "log.hpp"
#include "serve_loop.hpp"
#include "splitcore/bulk_memory.hpp"
#include "worker.hpp"
#include "zygote.hpp"

namespace {

namespace fs = std::filesystem;
using splitbrain::agent::log;

std::string python_executable(const std::string& venv_or_exe) {
    if (venv_or_exe.empty()) return "/usr/bin/python3";
    std::error_code ec;
    if (fs::is_directory(venv_or_exe, ec)) {
        for (const char* name : {"bin/python3", "bin/python"}) {
            const fs::path candidate = fs::path(venv_or_exe) / name;
            if (fs::exists(candidate, ec)) return candidate.string();
        }
    }
    return venv_or_exe;
}

void start_python(const std::string& executable) {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;
    config.buffered_stdio = 0;           // prints reach the client live
    config.install_signal_handlers = 1;  // SIGINT -> KeyboardInterrupt: that is how cancel works
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, executable.c_str());
    if (!PyStatus_Exception(status)) {
        const char* argv[] = {"splitbrain-worker"};
        status = PyConfig_SetBytesArgv(&config, 1, const_cast<char* const*>(argv));
    }
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
}

// On KeyboardInterrupt, Popen.wait() first waits 0.25 s for the child to exit, assuming a terminal's
// Ctrl-C reached it too. A cancel interrupts only the worker, so that wait is pure delay (and would
// break the 200 ms bound); run() then kills the child at once. Popen.__init__ sets the delay on the
// instance, so a class property that reads 0 and ignores writes replaces it.
void skip_popen_sigint_wait() {
    if (PyRun_SimpleString("import subprocess\n"
                           "subprocess.Popen._sigint_wait_secs = property(lambda self: 0, lambda self, value: None)\n"
                           "del subprocess\n") != 0) {
        PyErr_Clear();
        log("cannot set subprocess.Popen._sigint_wait_secs: a cancelled subprocess.run may take 0.25 s longer");
    }
}

}  // namespace

int main(int argc, char** argv) {
    using namespace splitbrain::agent;
    splitcore::keep_bulk_buffers();  // before the zygote forks: its workers inherit it
    std::string endpoint, id, python = SPLITBRAIN_DEFAULT_PYTHON;
    int zygote_fd = -1;
    if (argc == 2 && std::string_view(argv[1]) == "--version") {
        const char message[] = "splitbrain-worker " SPLITBRAIN_VERSION "\n";
        (void)!::write(1, message, sizeof(message) - 1);
        return 0;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--connect") endpoint = argv[i + 1];
        else if (flag == "--id") id = argv[i + 1];
        else if (flag == "--python") python = argv[i + 1];
        else if (flag == "--zygote") zygote_fd = std::atoi(argv[i + 1]);
    }
    if (endpoint.empty() || (id.empty() && zygote_fd < 0)) {
        const char message[] = "splitbrain-worker: started by splitbrain-agent only (--connect ENDPOINT --id ID)\n";
        (void)!::write(2, message, sizeof(message) - 1);
        return 2;
    }

    reserve_low_descriptors();
    const int log_fd = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
    set_log(zygote_fd >= 0 ? "splitbrain-zygote" : "splitbrain-worker", log_fd >= 0 ? log_fd : 2);
    std::optional<worker> operations;
    // The session's operations, once CPython runs: in the zygote before it forks, else in the worker.
    auto start_operations = [&operations] {
        skip_popen_sigint_wait();
        try {
            operations.emplace();
        } catch (const std::exception& e) {
            log(std::string("cannot start: ") + e.what());
            return false;
        }
        return true;
    };
    if (zygote_fd >= 0) {
        // Python and the operations once, here; each session's worker is a fork of this process
        // and goes on below as an exec'd worker does, with the id the supervisor gave it.
        const int control = ::fcntl(zygote_fd, F_DUPFD_CLOEXEC, reserved_floor);
        ::close(zygote_fd);
        reserve_low_descriptors();  // the descriptor it held, too
        if (control < 0) return 1;
        start_python(python_executable(python));
        if (!start_operations()) return 1;
        try {
            operations->prepare_for_forks();
        } catch (const std::exception& e) {
            PyErr_Clear();  // each worker's hello sets it up then, as an exec'd worker's does
            log(std::string("cannot prepare the lease guard before forking: ") + e.what());
        }
        id = serve_as_zygote(control);
        set_log("splitbrain-worker", log_fd >= 0 ? log_fd : 2);
        operations->rehearse_first_requests();
    }
    const output_pipe out{1, redirect_to_pipe(1)};
    const output_pipe err{2, redirect_to_pipe(2)};

    // Only the main thread may receive SIGINT: block it before libzmq and the IO thread start. So
    // the signals another process may send the worker, which meet a Python handler that does
    // nothing (guard_worker_signals in worker.cpp): Python's handlers have no SA_RESTART, and an
    // EINTR in the IO thread's poll would end the worker.
    sigset_t sigint;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    for (const int stray :
         {SIGUSR1, SIGUSR2, SIGALRM, SIGHUP, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGTSTP, SIGTTIN, SIGTTOU}) {
        sigaddset(&sigint, stray);
    }
    ::pthread_sigmask(SIG_BLOCK, &sigint, nullptr);

    zmq::context_t context;
    zmq::socket_t requests(context, zmq::socket_type::pair);
    requests.set(zmq::sockopt::sndhwm, 0);
    requests.set(zmq::sockopt::rcvhwm, 0);
    requests.bind(requests_endpoint);

    if (!operations) start_python(python_executable(python));
    interrupt_state interrupts(::pthread_self());
    interrupts.install();
    if (!operations && !start_operations()) return 1;

    io_thread io_loop(context, endpoint, id, out, err, interrupts);
    std::thread io([&io_loop] {
        try {
            io_loop.run();
        } catch (const std::exception& e) {
            log(std::string("IO thread failed: ") + e.what());
            ::_exit(1);
        }
    });
    ::pthread_sigmask(SIG_UNBLOCK, &sigint, nullptr);
    const output_probe probe{{out.read_end, err.read_end}, &io_loop.reads};
    serve(*operations, interrupts, context, requests, io, probe);
}
