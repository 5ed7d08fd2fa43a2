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

#include "leftovers.hpp"
#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/py_ref.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

using splitcore::json;

namespace {

bool ended_in_keyboard_interrupt(const json& reply) {
    const json* error = reply.contains("e") ? &reply["e"] : nullptr;
    return error && error->is_object() && error->value("type", "") == "builtins.KeyboardInterrupt";
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
            if (runs && ended_in_keyboard_interrupt(reply.header)) {
                kill_what_the_call_started(children_before, interrupts.children_at_cancel());
            }
            interrupts.stop_adopting_orphans();
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
