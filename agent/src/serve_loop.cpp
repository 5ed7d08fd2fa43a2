#include "serve_loop.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/py_ref.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

using splitcore::json;

namespace {

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
    for (long pid; (pid = std::strtol(cursor, &end, 10)), end != cursor; cursor = end)
        children.insert(static_cast<pid_t>(pid));
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

}  // namespace

void serve(worker& operations, interrupt_state& interrupts, zmq::context_t& context, zmq::socket_t& requests,
           std::thread& io) {
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
            const bool runs = interrupts.start(id);
            std::set<pid_t> children_before;
            if (!runs) {
                PyErr_SetNone(PyExc_KeyboardInterrupt);
                reply.header =
                    splitcore::error_reply(id, splitcore::describe_exception(splitcore::python_error(), operations));
            } else {
                children_before = children_of_main_thread();
                reply = operations.dispatch(header, frames);
            }
            interrupts.finish();
            if (runs && ended_in_keyboard_interrupt(reply.header)) kill_children_born_since(children_before);
        }
        frames.clear();
        splitcore::send_message(requests, reply.header, std::move(reply.frames));
        if (operations.finished()) {
            operations.clear_objects();
            splitcore::send_message(requests, json{{"ev", "quit"}});
            io.join();
            requests.close();
            context.close();  // waits (linger) until the bye reply has left
            ::_exit(0);       // not Py_Finalize: a user's non-daemon thread must not keep a dead session alive
        }
    }
}

}  // namespace splitbrain::agent
