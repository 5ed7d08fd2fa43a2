#include "serve_loop.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
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

namespace {

// Pipelined requests ("pipe": true, docs/protocol.md "Pipelined writes") that failed or were not run:
// a later request naming one of them in "after" is not run either, so that nothing written after a
// failed write lands in the file. Bounded: a client takes a failure at the file's next call.
class failed_pipes {
public:
    [[nodiscard]] bool contains(std::uint64_t id) const {
        for (const std::uint64_t failed : m_ids) {
            if (failed == id) return true;
        }
        return false;
    }
    void add(std::uint64_t id) {
        if (m_ids.size() == 256) m_ids.pop_front();
        m_ids.push_back(id);
    }

private:
    std::deque<std::uint64_t> m_ids;
};

struct serving {
    worker& operations;
    interrupt_state& interrupts;
    zmq::context_t& context;
    zmq::socket_t& requests;
    std::thread& io;
    failed_pipes failed{};
};

// One request from the IO thread: run (or, cancelled while it waited, answered with
// KeyboardInterrupt), its reply sent back. After "bye" the process ends.
void serve_one(serving& s, std::vector<zmq::message_t>& request) {
    std::vector<zmq::message_t> frames;
    for (std::size_t i = 1; i < request.size(); ++i) frames.push_back(std::move(request[i]));

    splitcore::message reply;
    json header;
    try {
        header = splitcore::decode_header(request[0]);
    } catch (const splitcore::error& e) {
        reply.header = splitcore::error_reply(0, splitcore::error_value(e));
    }
    if (reply.header.is_null()) {
        const std::uint64_t id = splitcore::as_uint(header.value("id", json())).value_or(0);
        const bool runs = s.interrupts.start(id);
        const std::optional<std::uint64_t> after = splitcore::as_uint(header.value("after", json()));
        std::set<pid_t> children_before;
        if (runs && after && s.failed.contains(*after)) {
            reply.header = splitcore::error_reply(
                id, splitcore::error_value(splitcore::errc::not_run_after_failure,
                                           "request " + std::to_string(*after) +
                                               ", a pipelined write before it on the same file, failed"));
        } else if (!runs) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
            reply.header =
                splitcore::error_reply(id, splitcore::describe_exception(splitcore::python_error(), s.operations));
        } else {
            children_before = children_of_main_thread();
            reply = s.operations.dispatch(header, frames);
        }
        s.interrupts.finish();
        if (header.value("pipe", false) == true && reply.header.value("ok", false) != true) s.failed.add(id);
        if (runs && ended_in_keyboard_interrupt(reply.header)) {
            kill_what_the_call_started(children_before, s.interrupts.children_at_cancel());
        }
        s.interrupts.stop_adopting_orphans();
    }
    frames.clear();
    splitcore::send_message(s.requests, reply.header, std::move(reply.frames));
    if (s.operations.finished()) {
        s.operations.clear_objects();
        splitcore::send_message(s.requests, json{{"ev", "quit"}});
        s.io.join();
        s.requests.close();
        s.context.close();  // waits (linger) until the bye reply has left
        ::_exit(0);         // not Py_Finalize: a user's non-daemon thread must not keep a dead session alive
    }
}

// A callback request goes to the client (through the IO thread); until its answer comes, the
// session's other requests, the callback's nested calls, are served here, one by one. A cancel of
// the call (SIGINT) ends the wait with KeyboardInterrupt. The wait has no deadline of its own: the
// session's does (a client silent for the busy grace loses it, and the worker ends).
splitcore::message await_answer(serving& s, json header, std::vector<zmq::message_t> frames) {
    const json number = header.at("cb");
    splitcore::send_message(s.requests, header, std::move(frames));
    for (;;) {
        zmq::pollitem_t item{s.requests.handle(), 0, ZMQ_POLLIN, 0};
        {
            splitcore::gil_release unlocked;
            try {
                zmq::poll(&item, 1, std::chrono::milliseconds(100));
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR) throw;
                item.revents = 0;
            }
        }
        // Before taking a request: a cancel ends the wait, and what came after it waits for the loop.
        if (PyErr_CheckSignals() < 0) throw splitcore::python_error();
        if (!(item.revents & ZMQ_POLLIN)) continue;
        std::optional<std::vector<zmq::message_t>> request =
            splitcore::recv_parts(s.requests, zmq::recv_flags::dontwait);
        if (!request || request->empty()) continue;
        json next;
        try {
            next = splitcore::decode_header((*request)[0]);
        } catch (const splitcore::error&) {
            serve_one(s, *request);  // answered there with bad_request
            continue;
        }
        if (next.value("op", "") != splitcore::op::answer.name || next.value("cb", json()) != number) {
            serve_one(s, *request);  // a nested call, or an answer of an interrupted callback
            continue;
        }
        const std::uint64_t id = splitcore::as_uint(next.value("id", json())).value_or(0);
        splitcore::send_message(s.requests, splitcore::ok_reply(id, nullptr));  // every request gets a reply
        splitcore::message answer{std::move(next), {}};
        for (std::size_t i = 1; i < request->size(); ++i) answer.frames.push_back(std::move((*request)[i]));
        return answer;
    }
}

}  // namespace

void serve(worker& operations, interrupt_state& interrupts, zmq::context_t& context, zmq::socket_t& requests,
           std::thread& io) {
    serving s{operations, interrupts, context, requests, io};
    operations.set_transport([&s](json header, std::vector<zmq::message_t> frames) {
        return await_answer(s, std::move(header), std::move(frames));
    });
    for (;;) {
        std::optional<std::vector<zmq::message_t>> request;
        {
            splitcore::gil_release unlocked;
            request = splitcore::recv_parts(requests);
        }
        serve_one(s, *request);
    }
}

}  // namespace splitbrain::agent
