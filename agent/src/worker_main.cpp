// splitbrain-worker: one client session of the agent. Started by the supervisor:
//   splitbrain-worker --connect ipc://DIR/workers --id wN [--python VENV_OR_EXE]
//
// Two threads. The main thread embeds CPython and executes one operation at a time (it must be
// the main thread: Python runs signal handlers, and so raises KeyboardInterrupt, only there).
// The IO thread owns the socket to the supervisor and the read ends of the pipes that replace
// fds 1 and 2; it answers "cancel" itself (a call still queued for the main thread is then
// answered with KeyboardInterrupt without running) and drains the pipes before passing on each
// reply, so a call's output always precedes its reply.
#include <Python.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <pthread.h>
#include <sched.h>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <zmq.hpp>

#include "log.hpp"
#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"
#include "worker.hpp"

namespace {

namespace fs = std::filesystem;
using splitcore::json;
using splitbrain::agent::log;

constexpr const char* requests_endpoint = "inproc://requests";

// Which request the main thread is executing, so a cancel interrupts only that one, and which
// requests wait for it, so a cancel that overtakes its call is not lost.
struct interrupt_state {
    std::mutex mutex;
    std::uint64_t running = 0;  // request id, 0 when idle; guarded by mutex
    std::uint64_t sent = 0;     // SIGINTs sent to the main thread; guarded by mutex
    // Requests forwarded to the main thread and not yet started -> cancelled before they started.
    std::map<std::uint64_t, bool> queued;  // guarded by mutex
    // The running request a cancel signalled, until Python raises KeyboardInterrupt for it: a
    // SIGINT that lands just before a blocking call (time.sleep checks for signals only after its
    // clock_nanosleep returns EINTR) trips Python's flag but interrupts nothing, so it is repeated.
    std::uint64_t unheard = 0;                      // guarded by mutex
    std::uint64_t raised_before = 0;                // interrupts_raised when it was signalled
    std::chrono::steady_clock::time_point signalled;
};
interrupt_state interrupts;
std::atomic<std::uint64_t> interrupts_delivered{0};
std::atomic<std::uint64_t> interrupts_raised{0};  // KeyboardInterrupts raised by Python's handler
constexpr std::chrono::milliseconds resignal_after{40};
struct sigaction python_sigint {};

// Counts deliveries, then runs Python's own handler (which trips KeyboardInterrupt).
void on_sigint(int sig, siginfo_t* info, void* context) {
    interrupts_delivered.fetch_add(1, std::memory_order_relaxed);
    if (python_sigint.sa_flags & SA_SIGINFO) {
        python_sigint.sa_sigaction(sig, info, context);
    } else if (python_sigint.sa_handler != SIG_DFL && python_sigint.sa_handler != SIG_IGN) {
        python_sigint.sa_handler(sig);
    }
}

// Python's SIGINT handler in the worker: default_int_handler, counted.
PyObject* raise_keyboard_interrupt(PyObject*, PyObject*) {
    interrupts_raised.fetch_add(1, std::memory_order_relaxed);
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return nullptr;
}

void install_counted_keyboard_interrupt() {
    static PyMethodDef method{"splitbrain_worker_sigint", raise_keyboard_interrupt, METH_VARARGS,
                              "Raises KeyboardInterrupt (a cancel from the client)."};
    splitcore::py_ref handler = splitcore::py_ref::steal(PyCFunction_New(&method, nullptr));
    splitcore::py_ref signal = splitcore::py_ref::steal(PyImport_ImportModule("signal"));
    splitcore::py_ref done;
    if (handler && signal) {
        done = splitcore::py_ref::steal(PyObject_CallMethod(signal.get(), "signal", "iO", SIGINT, handler.get()));
    }
    if (!done) {
        PyErr_Clear();
        log("cannot install the SIGINT handler: a cancel that lands just before a blocking call may be late");
    }
}

void install_sigint_counter() {
    ::sigaction(SIGINT, nullptr, &python_sigint);
    struct sigaction counter {};
    counter.sa_sigaction = &on_sigint;
    counter.sa_flags = SA_SIGINFO | SA_ONSTACK;  // no SA_RESTART: blocking calls must see EINTR
    sigemptyset(&counter.sa_mask);
    ::sigaction(SIGINT, &counter, nullptr);
}

// A KeyboardInterrupt meant for a request that has finished must not hit the next one.
void discard_stale_interrupt() {
    if (PyErr_CheckSignals() < 0) PyErr_Clear();
}

struct output_pipe {
    int fd;         // 1 or 2: what the event says
    int read_end;
};

// Makes fd a pipe whose read end is returned (non-blocking, close-on-exec); children inherit fd.
int redirect_to_pipe(int fd) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    ::dup2(ends[1], fd);
    ::close(ends[1]);
    ::fcntl(ends[0], F_SETFL, ::fcntl(ends[0], F_GETFL) | O_NONBLOCK);
    return ends[0];
}

class io_thread {
public:
    io_thread(zmq::context_t& context, std::string endpoint, std::string id, output_pipe out, output_pipe err,
              pthread_t main_thread)
        : m_context(context), m_endpoint(std::move(endpoint)), m_id(std::move(id)), m_pipes{out, err},
          m_main_thread(main_thread) {}

    void run() {
        zmq::socket_t supervisor(m_context, zmq::socket_type::dealer);
        supervisor.set(zmq::sockopt::routing_id, m_id);
        supervisor.set(zmq::sockopt::linger, 2000);
        supervisor.set(zmq::sockopt::sndhwm, 0);
        supervisor.set(zmq::sockopt::rcvhwm, 0);
        supervisor.connect(m_endpoint);
        zmq::socket_t main(m_context, zmq::socket_type::pair);
        main.set(zmq::sockopt::sndhwm, 0);  // never block here: cancel must get through a backlog
        main.set(zmq::sockopt::rcvhwm, 0);
        main.connect(requests_endpoint);
        splitcore::send_message(supervisor, json{{"ev", "ready"}, {"pid", ::getpid()}});

        for (;;) {
            zmq_pollitem_t items[4] = {
                {supervisor.handle(), 0, ZMQ_POLLIN, 0},
                {main.handle(), 0, ZMQ_POLLIN, 0},
            };
            int count = 2;
            int pipe_of_item[4] = {-1, -1, -1, -1};
            for (int i = 0; i < 2; ++i) {
                if (m_pipes[i].read_end < 0) continue;
                pipe_of_item[count] = i;
                items[count++] = {nullptr, m_pipes[i].read_end, ZMQ_POLLIN, 0};
            }
            if (zmq_poll(items, count, signal_unheard() ? resignal_after.count() : -1) < 0) {
                if (zmq_errno() == EINTR) continue;
                throw zmq::error_t();
            }
            for (int item = 2; item < count; ++item) {
                if (items[item].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
                    forward_output(supervisor, m_pipes[pipe_of_item[item]], false);
                }
            }
            if (items[1].revents & ZMQ_POLLIN) {
                auto reply = splitcore::recv_parts(main);
                drain(supervisor);
                const json header = splitcore::decode_header((*reply)[0]);
                if (header.value("ev", "") == "quit") return;
                send_all(supervisor, *reply);
            }
            if (items[0].revents & ZMQ_POLLIN) {
                while (auto request = splitcore::recv_parts(supervisor, zmq::recv_flags::dontwait)) {
                    route_request(supervisor, main, *request);
                }
            }
        }
    }

private:
    // Repeats the SIGINT of a cancel Python has not acted on; true while one is outstanding.
    bool signal_unheard() {
        std::lock_guard<std::mutex> lock(interrupts.mutex);
        if (interrupts.unheard == 0) return false;
        if (interrupts.running != interrupts.unheard || interrupts_raised.load() != interrupts.raised_before) {
            interrupts.unheard = 0;
            return false;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - interrupts.signalled >= resignal_after) {
            ++interrupts.sent;
            ::pthread_kill(m_main_thread, SIGINT);
            interrupts.signalled = now;
        }
        return true;
    }

    static void send_all(zmq::socket_ref socket, std::vector<zmq::message_t>& parts) {
        for (std::size_t i = 0; i < parts.size(); ++i) {
            (void)socket.send(parts[i], i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        }
    }

    void drain(zmq::socket_ref supervisor) {
        for (auto& pipe : m_pipes) forward_output(supervisor, pipe, true);
    }

    // One read, or (until_empty) everything the pipe holds right now.
    void forward_output(zmq::socket_ref supervisor, output_pipe& pipe, bool until_empty) {
        char buffer[65536];
        while (pipe.read_end >= 0) {
            const ssize_t n = ::read(pipe.read_end, buffer, sizeof(buffer));
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) {
                // Every writer closed it (user code closed fd 1 or 2): stop watching, or poll spins.
                ::close(pipe.read_end);
                pipe.read_end = -1;
                return;
            }
            if (n < 0) return;
            splitcore::send_message(supervisor, splitcore::output_event(pipe.fd, buffer, static_cast<std::size_t>(n)));
            if (!until_empty) return;
        }
    }

    void route_request(zmq::socket_ref supervisor, zmq::socket_ref main, std::vector<zmq::message_t>& request) {
        std::uint64_t id = 0;
        try {
            const json header = splitcore::decode_header(request.at(0));
            id = splitcore::request_id(header);
            const std::string& op = splitcore::string_field(header, "op");
            if (op != splitcore::op::cancel) {
                // The session's own life (hello, bye, release) is not the client's to cancel.
                if (op != splitcore::op::hello && op != splitcore::op::bye && op != splitcore::op::release) {
                    std::lock_guard<std::mutex> lock(interrupts.mutex);
                    interrupts.queued[id] = false;
                }
                send_all(main, request);
                return;
            }
            const std::uint64_t target = splitcore::uint_field(header, "target");
            bool interrupted = false;
            {
                std::lock_guard<std::mutex> lock(interrupts.mutex);
                if (target != 0 && interrupts.running == target) {
                    ++interrupts.sent;
                    interrupts.raised_before = interrupts_raised.load();
                    interrupted = ::pthread_kill(m_main_thread, SIGINT) == 0;
                    if (interrupted) {
                        interrupts.unheard = target;
                        interrupts.signalled = std::chrono::steady_clock::now();
                    }
                } else if (auto waiting = interrupts.queued.find(target); waiting != interrupts.queued.end()) {
                    waiting->second = true;  // the main thread answers it with KeyboardInterrupt when it gets there
                    interrupted = true;
                }
            }
            splitcore::send_message(supervisor, splitcore::ok_reply(id, interrupted));
        } catch (const splitcore::error& e) {
            splitcore::send_message(supervisor, splitcore::error_reply(id, splitcore::error_value(e)));
        }
    }

    zmq::context_t& m_context;
    std::string m_endpoint;
    std::string m_id;
    output_pipe m_pipes[2];
    pthread_t m_main_thread;
};

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
    config.buffered_stdio = 0;          // prints reach the client live
    config.install_signal_handlers = 1; // SIGINT -> KeyboardInterrupt: that is how cancel works
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, executable.c_str());
    if (!PyStatus_Exception(status)) {
        const char* argv[] = {"splitbrain-worker"};
        status = PyConfig_SetBytesArgv(&config, 1, const_cast<char* const*>(argv));
    }
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
}

// The running children the main thread forked (where subprocess starts them), from /proc. Most
// calls start with no child at all: one waitid() tells, and spares the /proc read on the hot path.
std::set<pid_t> children_of_main_thread() {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD) return {};
    static const std::string path = "/proc/self/task/" + std::to_string(::getpid()) + "/children";
    std::set<pid_t> children;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return children;
    std::string text;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    const char* cursor = text.c_str();
    char* end = nullptr;
    for (long pid; (pid = std::strtol(cursor, &end, 10)), end != cursor; cursor = end) children.insert(static_cast<pid_t>(pid));
    return children;
}

bool ended_in_keyboard_interrupt(const json& reply) {
    const json* error = reply.contains("e") ? &reply["e"] : nullptr;
    return error && error->is_object() && error->value("type", "") == "builtins.KeyboardInterrupt";
}

// A cancel that lands inside Popen.__init__ (after fork, before Popen owns the child) leaves a child
// nobody will kill: a cancelled call must not leave children behind, so those born during it go.
// Not reaped here: the Popen that may still own one reaps it (CPython's subprocess._cleanup).
void kill_children_born_since(const std::set<pid_t>& before) {
    for (const pid_t child : children_of_main_thread()) {
        if (!before.count(child)) ::kill(child, SIGKILL);
    }
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

// Executes requests until "bye". Runs with the GIL held except while waiting.
[[noreturn]] void serve(zmq::context_t& context, zmq::socket_t& requests, std::thread& io) {
    splitbrain::agent::worker operations;
    for (;;) {
        std::optional<std::vector<zmq::message_t>> request;
        {
            splitcore::gil_release unlocked;
            request = splitcore::recv_parts(requests);
        }
        std::vector<zmq::message_t> frames;
        for (std::size_t i = 1; i < request->size(); ++i) frames.push_back(std::move((*request)[i]));

        splitcore::message reply;
        json header;
        try {
            header = splitcore::decode_header((*request)[0]);
        } catch (const splitcore::error& e) {
            reply.header = splitcore::error_reply(0, splitcore::error_value(e));
        }
        if (reply.header.is_null()) {
            const std::uint64_t id = splitcore::as_uint(header.value("id", json())).value_or(0);
            discard_stale_interrupt();
            bool cancelled = false;
            {
                std::lock_guard<std::mutex> lock(interrupts.mutex);
                if (auto waiting = interrupts.queued.find(id); waiting != interrupts.queued.end()) {
                    cancelled = waiting->second;
                    interrupts.queued.erase(waiting);
                }
                if (!cancelled) interrupts.running = id;
            }
            std::set<pid_t> children_before;
            if (cancelled) {
                PyErr_SetNone(PyExc_KeyboardInterrupt);
                reply.header = splitcore::error_reply(id, splitcore::describe_exception(splitcore::python_error(), operations));
            } else {
                children_before = children_of_main_thread();
                reply = operations.dispatch(header, frames);
            }
            std::uint64_t sent;
            {
                std::lock_guard<std::mutex> lock(interrupts.mutex);
                interrupts.running = 0;
                sent = interrupts.sent;
            }
            // A SIGINT sent just before the op ended may not have landed yet: wait for it (each
            // sched_yield is a kernel exit, where pending signals are delivered), then drop it.
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
            while (interrupts_delivered.load() < sent && std::chrono::steady_clock::now() < deadline) ::sched_yield();
            discard_stale_interrupt();
            if (!cancelled && ended_in_keyboard_interrupt(reply.header)) kill_children_born_since(children_before);
        }
        frames.clear();
        splitcore::send_message(requests, reply.header, std::move(reply.frames));
        if (operations.finished()) {
            operations.clear_objects();
            splitcore::send_message(requests, json{{"ev", "quit"}});
            io.join();
            requests.close();
            context.close();  // waits (linger) until the bye reply has left
            ::_exit(0);  // not Py_Finalize: a user's non-daemon thread must not keep a dead session alive
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string endpoint, id, python = SPLITBRAIN_DEFAULT_PYTHON;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--connect") endpoint = argv[i + 1];
        else if (flag == "--id") id = argv[i + 1];
        else if (flag == "--python") python = argv[i + 1];
    }
    if (endpoint.empty() || id.empty()) {
        const char message[] = "splitbrain-worker: started by splitbrain-agent only (--connect ENDPOINT --id ID)\n";
        (void)!::write(2, message, sizeof(message) - 1);
        return 2;
    }

    const int log_fd = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
    splitbrain::agent::set_log("splitbrain-worker", log_fd >= 0 ? log_fd : 2);
    const output_pipe out{1, redirect_to_pipe(1)};
    const output_pipe err{2, redirect_to_pipe(2)};

    // Only the main thread may receive SIGINT: block it before libzmq and the IO thread start.
    sigset_t sigint;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &sigint, nullptr);

    zmq::context_t context;
    zmq::socket_t requests(context, zmq::socket_type::pair);
    requests.set(zmq::sockopt::sndhwm, 0);
    requests.set(zmq::sockopt::rcvhwm, 0);
    requests.bind(requests_endpoint);

    start_python(python_executable(python));
    install_counted_keyboard_interrupt();  // before the counter: signal.signal() sets Python's C handler
    install_sigint_counter();
    skip_popen_sigint_wait();

    io_thread io_loop(context, endpoint, id, out, err, ::pthread_self());
    std::thread io([&io_loop] {
        try {
            io_loop.run();
        } catch (const std::exception& e) {
            log(std::string("IO thread failed: ") + e.what());
            ::_exit(1);
        }
    });
    ::pthread_sigmask(SIG_UNBLOCK, &sigint, nullptr);
    serve(context, requests, io);
}
