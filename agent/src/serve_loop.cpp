#include "serve_loop.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "descriptors.hpp"
#include "direct.hpp"
#include "leftovers.hpp"
#include "slave_leases.hpp"
#include "log.hpp"
#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/py_ref.hpp"
#include "splitcore/socket_watch.hpp"
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
    const output_probe& probe;
    std::unique_ptr<direct_port> direct;  // once a hello offered one (direct.hpp)
    // The direct connection's latest routing id: replies go there, so that a reply to a call that
    // outlived its connection reaches the client's new one.
    std::optional<zmq::message_t> peer;
    std::deque<std::vector<zmq::message_t>> direct_queue;  // read (routing id first), not yet served
    // The last direct replies (up to 1 MiB each), for a client whose connection broke with one in it.
    std::deque<std::pair<std::uint64_t, std::vector<zmq::message_t>>> kept;
    std::uint64_t highest_started = 0;  // of the direct requests
    std::set<std::uint64_t> direct_running;
    // The low descriptors stay reserved (descriptors.hpp) from the direct port's bind until its
    // client's connection is accepted (its first message), at most this long: libzmq's sockets for
    // them, the accepted one included, must not be numbers user code closes.
    std::optional<std::chrono::steady_clock::time_point> reserved_until;
    failed_pipes failed{};
    // Set by a hello that offered a direct port: then this worker checks whole-slave leases and
    // forced-release notices itself (slave_leases.hpp), which the supervisor does for the others.
    slave_leases leases{};
    // What a wait must ask the two sockets (socket_watch.hpp): one poll(2) per wait when both are drained.
    splitcore::socket_watch requests_state{};
    splitcore::socket_watch direct_state{};  // of direct->socket(), while there is one
    // The worker's own threads at the session's first hello, before any of its code ran: a later
    // hello (the Python client asks for the direct port after some calls) gets a port only while no
    // thread of the session's code runs, which could open a descriptor during the reservation.
    std::size_t own_threads = 0;
    // Callbacks waiting for their answer (await_answer): a hello served then is a nested request,
    // and the user's call resumes after it, so it gets no port (its reservation would hold the low
    // descriptors while that call runs).
    unsigned callbacks_waiting = 0;
};

std::size_t thread_count() {
    std::size_t count = 0;
    if (DIR* tasks = ::opendir("/proc/self/task")) {
        while (const dirent* entry = ::readdir(tasks)) count += entry->d_name[0] != '.';
        ::closedir(tasks);
    }
    return count;
}

void release_if_due(serving& s, bool accepted) {
    if (s.reserved_until && (accepted || std::chrono::steady_clock::now() >= *s.reserved_until)) {
        // Lapsed before the client's handshake came: a connection accepted later could get a low
        // number that user code closes or dup2()s over. The client stays on the relay.
        if (!accepted && s.direct && s.direct->secure() && !s.direct->admitted()) {
            s.direct.reset();  // closed before the placeholders go: a handshake meanwhile gets a high number
            log("the client did not connect to this session's direct port within 3 s of its offer: its requests go "
                "through the supervisor");
        }
        release_low_descriptors();
        s.reserved_until.reset();
    }
}

// A request through the relay while the low descriptors are still reserved for the direct port's
// connection: the user's code must get ordinary numbers (select() takes none above 1023, pyserial
// uses it). The client's handshake is waited for a little (its connection's descriptor exists once
// the ZAP handler admitted it), else the direct port is given up: a connection accepted later could
// get a low number that user code closes. The client then stays on the relay (direct_channel.cpp).
void settle_reservation(serving& s) {
    if (!s.reserved_until) return;
    if (s.direct && s.direct->secure()) {
        const auto bound = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
        while (!s.direct->admitted() && std::chrono::steady_clock::now() < bound) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (!s.direct->admitted()) {
            log("the client did not connect to this session's direct port within 200 ms of its next request: its "
                "requests go through the supervisor");
            s.direct.reset();
        }
    }
    release_low_descriptors();
    s.reserved_until.reset();
}

// An import of a module already imported runs no Python code: nothing of the user's gets a descriptor
// there, so it need not wait for the direct connection's handshake (the session's first import, sent
// right behind its hello: issue 11 point 4).
bool imports_nothing(const json& header) {
    if (header.value("op", "") != "import") return false;
    const json* name = splitcore::optional_field(header, "name");
    if (name == nullptr || !name->is_string()) return false;
    return PyDict_GetItemString(PyImport_GetModuleDict(), name->get_ref<const std::string&>().c_str()) != nullptr;
}

// Everything the direct socket holds now, queued; its sender becomes the peer.
void pull_direct(serving& s) {
    s.direct_state.used();
    while (auto request = splitcore::recv_parts(s.direct->socket(), zmq::recv_flags::dontwait)) {
        if (request->size() < 2) continue;
        s.peer.emplace();
        s.peer->copy(request->front());
        s.direct_queue.push_back(std::move(*request));
        release_if_due(s, true);
    }
    s.direct_state.drained();  // it would block now
}

// pull_direct if the direct socket may hold something: one poll(2) of its descriptor when drained.
void pull_direct_if_signalled(serving& s) {
    splitcore::socket_watch* watched[] = {&s.direct_state};
    bool ready[1] = {};
    try {
        (void)splitcore::poll_watched(watched, 1, ready, nullptr, 0, 0);
    } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        ready[0] = true;
    }
    if (ready[0]) pull_direct(s);
}

// The requests socket (to the IO thread), about to send: what it holds is unknown after.
zmq::socket_t& sending(serving& s) {
    s.requests_state.used();
    return s.requests;
}

// A copy of a direct request's reply (parts from `first` on: header, frames), for a client whose
// direct connection broke with it in flight: the last 16.
void keep(serving& s, std::uint64_t id, std::vector<zmq::message_t>& parts, std::size_t first) {
    std::vector<zmq::message_t> copy;
    for (std::size_t i = first; i < parts.size(); ++i) {
        copy.emplace_back();
        copy.back().copy(parts[i]);
    }
    s.kept.emplace_back(id, std::move(copy));
    if (s.kept.size() > 16) s.kept.pop_front();
}

void send_direct(serving& s, std::uint64_t id, const json& header, std::vector<zmq::message_t> frames) {
    pull_direct_if_signalled(s);  // a reconnect's ping may wait there: the reply goes to the new connection
    std::vector<zmq::message_t> parts;
    parts.emplace_back();
    parts.back().copy(*s.peer);
    parts.push_back(splitcore::encode_header(header));
    std::size_t size = parts.back().size();
    for (auto& frame : frames) {
        size += frame.size();
        parts.push_back(std::move(frame));
    }
    if (id != 0 && size <= (std::size_t(1) << 20)) keep(s, id, parts, 1);
    s.direct_state.used();
    splitcore::send_parts(s.direct->socket(), parts);
}

// A ping on the direct port after a reconnect: kept replies it waits for are sent again; the pong
// says which ran without a copy kept ("lost") and which never came ("unseen"), as the supervisor's.
void answer_direct_ping(serving& s, std::uint64_t id, const json& header) {
    json pong = splitcore::ok_reply(id, nullptr);
    json lost = json::array(), unseen = json::array();
    if (const json* waiting = splitcore::optional_field(header, "waiting"); waiting && waiting->is_array()) {
        for (const json& entry : *waiting) {
            if (!entry.is_number_unsigned()) continue;
            const std::uint64_t wanted = entry.get<std::uint64_t>();
            if (s.direct_running.count(wanted) != 0) continue;  // its reply goes to the new connection
            auto kept = std::find_if(s.kept.begin(), s.kept.end(), [&](const auto& k) { return k.first == wanted; });
            if (kept != s.kept.end()) {
                json again = splitcore::decode_header(kept->second.at(0));
                again["again"] = true;
                std::vector<zmq::message_t> frames;
                for (std::size_t i = 1; i < kept->second.size(); ++i) {
                    frames.emplace_back();
                    frames.back().copy(kept->second[i]);
                }
                log("reply to request " + std::to_string(wanted) +
                    " sent again (its client's connection was lost with it)");
                send_direct(s, 0, again, std::move(frames));
            } else if (wanted <= s.highest_started) {
                lost.push_back(wanted);
            } else {
                unseen.push_back(wanted);
            }
        }
    }
    if (!lost.empty()) pong["lost"] = std::move(lost);
    if (!unseen.empty()) pong["unseen"] = std::move(unseen);
    send_direct(s, 0, pong, {});
}

// True if nothing was written to fds 1 and 2 since the IO thread's read count was `before`: the
// pipes hold nothing now, and the IO thread neither read since nor is reading.
bool wrote_nothing(const serving& s, std::uint64_t before) {
    pollfd pipes[std::size(s.probe.pipes)];
    nfds_t n = 0;
    for (int fd : s.probe.pipes) {
        if (fd >= 0) pipes[n++] = pollfd{fd, POLLIN, 0};
    }
    if (n > 0 && ::poll(pipes, n, 0) != 0) return false;  // one poll for both: readable is bytes queued
    return s.probe.reads->load() == before && before % 2 == 0;
}

// As the supervisor's lease_table::check_request: every request but the session's own life.
bool checks_leases(const json& header) {
    const std::string op = header.value("op", "");
    return op != splitcore::op::hello.name && op != splitcore::op::bye.name && op != splitcore::op::release.name;
}

// A hello that offers a direct port: bound (once per session), and its number added to the reply.
void offer_direct(serving& s, const json& header, json& reply) {
    const json* offer = splitcore::optional_field(header, "direct");
    if (offer == nullptr || !offer->is_object() || reply.contains("e")) return;
    if (!s.direct && s.callbacks_waiting > 0) {
        log("no direct port for this session now: its hello came while a callback waits, and the call resumes "
            "after it; its requests go through the supervisor");
        return;
    }
    if (!s.direct && thread_count() > s.own_threads) {
        log("no direct port for this session now: threads of its code run, and one could open a descriptor "
            "while they are reserved; its requests go through the supervisor");
        return;
    }
    try {
        if (!s.direct) {
            // Hello released them. At the session's first hello nothing of the user's ran yet; at a
            // later one the session's own descriptors stay, and the placeholders fill the numbers free.
            reserve_low_descriptors();
            s.reserved_until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
            s.direct = std::make_unique<direct_port>(s.context, *offer);
            s.direct_state = splitcore::socket_watch(s.direct->socket());
        }
        reply["direct"] = json{{"port", s.direct->port()}};
    } catch (const std::exception& e) {
        log(std::string("no direct port for this session (its requests go through the supervisor): ") + e.what());
        release_if_due(s, true);
    }
}

// One request from the IO thread: run (or, cancelled while it waited, answered with
// KeyboardInterrupt), its reply sent back. After "bye" the process ends.
// direct_from: the routing id of a request that came on the direct port; null: from the IO thread.
void serve_one(serving& s, std::vector<zmq::message_t>& request, const zmq::message_t* direct_from = nullptr) {
    std::vector<zmq::message_t> frames;
    for (std::size_t i = 1; i < request.size(); ++i) frames.push_back(std::move(request[i]));

    splitcore::message reply;
    json header;
    try {
        header = splitcore::decode_header(request[0]);
    } catch (const splitcore::error& e) {
        reply.header = splitcore::error_reply(0, splitcore::error_value(e));
    }
    std::uint64_t reads_before = 1;  // odd: the reply goes after any output, through the IO thread
    if (direct_from == nullptr && !(reply.header.is_null() && imports_nothing(header))) settle_reservation(s);
    if (reply.header.is_null() && direct_from != nullptr) {
        const std::uint64_t id = splitcore::as_uint(header.value("id", json())).value_or(0);
        if (header.value("op", "") == splitcore::op::ping.name) return answer_direct_ping(s, id, header);
        reply.header = refuse_direct(header, id);
        if (reply.header.is_null()) {
            s.highest_started = std::max(s.highest_started, id);
            s.direct_running.insert(id);
        }
        if (reply.header.is_null()) s.interrupts.queue(id);  // a cancel through the relay finds it
        reads_before = s.probe.reads->load();
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
        } else if (std::optional<std::string> leased; runs && checks_leases(header) && (leased = s.leases.refusal())) {
            reply.header = splitcore::error_reply(id, splitcore::error_value(splitcore::errc::leased, *leased));
        } else if (!runs) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
            reply.header =
                splitcore::error_reply(id, splitcore::describe_exception(splitcore::python_error(), s.operations));
        } else {
            if (s.own_threads == 0 && header.value("op", "") == splitcore::op::hello.name) {
                s.own_threads = thread_count();
            }
            children_before = children_of_main_thread();
            reply = s.operations.dispatch(header, frames);
        }
        s.interrupts.finish();
        if (header.value("pipe", false) == true && reply.header.value("ok", false) != true) s.failed.add(id);
        if (runs && ended_in_keyboard_interrupt(reply.header)) {
            kill_what_the_call_started(children_before, s.interrupts.children_at_cancel());
        }
        s.interrupts.stop_adopting_orphans();
        if (direct_from == nullptr && header.value("op", "") == splitcore::op::hello.name) {
            offer_direct(s, header, reply.header);
            if (reply.header.contains("direct")) {
                s.leases.set(header.value("limits", json()), header.value("session", std::string()));
            }
        }
    }
    frames.clear();
    if (direct_from != nullptr) {
        const std::uint64_t id = splitcore::as_uint(header.value("id", json())).value_or(0);
        s.direct_running.erase(id);
        if (s.direct && wrote_nothing(s, reads_before))
            return send_direct(s, id, reply.header, std::move(reply.frames));
        if (s.direct) {
            // It goes after its output, through the relay; a client whose direct connection broke
            // meanwhile asks this worker for it there (answer_direct_ping), not the supervisor.
            std::vector<zmq::message_t> parts;
            parts.push_back(splitcore::encode_header(reply.header));
            std::size_t size = parts.back().size();
            for (auto& frame : reply.frames) {
                size += frame.size();
                parts.push_back(std::move(frame));
            }
            if (size <= (std::size_t(1) << 20)) keep(s, id, parts, 0);
            splitcore::send_parts(sending(s), parts);
            return;
        }
    }
    splitcore::send_message(sending(s), reply.header, std::move(reply.frames));
    if (s.operations.finished()) {
        s.operations.clear_objects();
        splitcore::send_message(sending(s), json{{"ev", "quit"}});
        s.io.join();
        s.direct.reset();  // its port closes; and the context's close below waits for every socket
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
    splitcore::send_message(sending(s), header, std::move(frames));
    ++s.callbacks_waiting;
    struct answered {
        unsigned& count;
        ~answered() { --count; }
    } const waiting{s.callbacks_waiting};
    for (;;) {
        // Cancelled while a request served here ran (interrupts.hpp): the wait ends.
        if (s.interrupts.take_cancel_of_waiting_call()) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
            throw splitcore::python_error();
        }
        splitcore::socket_watch* watched[2] = {&s.requests_state, s.direct ? &s.direct_state : nullptr};
        bool ready[2] = {};
        {
            splitcore::gil_release unlocked;
            try {
                (void)splitcore::poll_watched(watched, 2, ready, nullptr, 0, 100);
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR) throw;
                ready[0] = ready[1] = false;
            }
        }
        // Before taking a request: a cancel ends the wait, and what came after it waits for the loop.
        if (PyErr_CheckSignals() < 0) throw splitcore::python_error();
        // Nested calls and the answer may come either way (direct.hpp); the direct way first.
        std::optional<std::vector<zmq::message_t>> request;
        std::optional<zmq::message_t> direct_from;
        if (s.direct && ready[1]) pull_direct(s);
        if (!s.direct_queue.empty()) {
            request = std::move(s.direct_queue.front());
            s.direct_queue.pop_front();
            direct_from = std::move(request->front());
            request->erase(request->begin());
        }
        if (!request && ready[0]) {
            request = splitcore::recv_parts(s.requests, zmq::recv_flags::dontwait);
            if (!request) s.requests_state.drained();  // else one message taken: more may wait
        }
        if (!request || request->empty()) continue;
        const zmq::message_t* from = direct_from ? &*direct_from : nullptr;
        json next;
        try {
            next = splitcore::decode_header((*request)[0]);
        } catch (const splitcore::error&) {
            serve_one(s, *request, from);  // answered there with bad_request
            continue;
        }
        if (next.value("op", "") != splitcore::op::answer.name || next.value("cb", json()) != number) {
            serve_one(s, *request, from);  // a nested call, or an answer of an interrupted callback
            continue;
        }
        const std::uint64_t id = splitcore::as_uint(next.value("id", json())).value_or(0);
        // every request gets a reply
        if (from != nullptr) {
            send_direct(s, 0, splitcore::ok_reply(id, nullptr), {});
        } else {
            splitcore::send_message(sending(s), splitcore::ok_reply(id, nullptr));
        }
        splitcore::message answer{std::move(next), {}};
        for (std::size_t i = 1; i < request->size(); ++i) answer.frames.push_back(std::move((*request)[i]));
        return answer;
    }
}

}  // namespace

void serve(worker& operations, interrupt_state& interrupts, zmq::context_t& context, zmq::socket_t& requests,
           std::thread& io, const output_probe& probe) {
    serving s{operations, interrupts, context, requests, io, probe, nullptr, {}, {}, {}, 0, {}, {}, {}, {}};
    s.requests_state = splitcore::socket_watch(requests);
    operations.set_transport([&s](json header, std::vector<zmq::message_t> frames) {
        return await_answer(s, std::move(header), std::move(frames));
    });
    for (;;) {
        // Idle, this thread reads the direct port itself: a request that comes that way wakes it
        // alone (direct.hpp). Requests through the IO thread as before.
        release_if_due(s, false);
        // One poll(2) while both sockets are drained (socket_watch.hpp), not zmq_poll's questions.
        splitcore::socket_watch* watched[2] = {&s.requests_state, s.direct ? &s.direct_state : nullptr};
        bool ready[2] = {};
        if (s.direct_queue.empty()) {
            splitcore::gil_release unlocked;
            try {
                (void)splitcore::poll_watched(watched, 2, ready, nullptr, 0, s.reserved_until ? 100 : -1);
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR) throw;
                continue;
            }
        }
        if (s.direct && ready[1]) pull_direct(s);
        if (!s.direct_queue.empty()) {
            std::vector<zmq::message_t> request = std::move(s.direct_queue.front());
            s.direct_queue.pop_front();
            zmq::message_t from = std::move(request.front());
            request.erase(request.begin());
            serve_one(s, request, &from);
            continue;
        }
        if (ready[0]) {
            if (auto request = splitcore::recv_parts(requests, zmq::recv_flags::dontwait)) {
                serve_one(s, *request);  // one message taken: more may wait, the next poll asks
            } else {
                s.requests_state.drained();
            }
        }
    }
}

}  // namespace splitbrain::agent
