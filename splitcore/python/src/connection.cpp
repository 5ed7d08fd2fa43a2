// splitbrain._core.Connection: one splitcore::channel seen from Python. A request is marshalled
// (marshal.hpp), sent, and waited for with the GIL released (checking for Ctrl-C every 100 ms);
// output events go to the owner's hooks meanwhile, and the reply is unmarshalled. References and
// errors are made by the owner (the Python Slave), which gives us four callables: _box, _unbox,
// _output, _error. Every entry point goes through the boundary (core.hpp).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "active_slave.hpp"
#include "core.hpp"
#include "marshal.hpp"
#include "splitcore/box.hpp"
#include "splitcore/channel.hpp"
#include "splitcore/errors.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {
namespace {

using splitcore::py_ref;
using splitcore::python_error;
using json = nlohmann::json;

constexpr auto signal_check_interval = std::chrono::milliseconds(100);
constexpr auto cancel_grace = std::chrono::milliseconds(900);
constexpr std::size_t release_batch = 64;

// A remote file whose small writes are sent without waiting for their replies (docs/protocol.md,
// "Pipelined writes"): they are taken, in order, by the next call on the file, which the worker runs
// only if they all succeeded ("after"), and the first failure is raised there.
struct pipelined_file {
    py_ref facts;      // the owner's description of the file (_files.Facts)
    bool open = true;  // writes may still be pipelined: no call that could close it was made
    std::deque<std::pair<std::uint64_t, std::size_t>> in_flight;  // request id, bytes
    std::size_t bytes = 0;
};

struct connection_state {
    std::shared_ptr<splitcore::channel> channel;  // null once closed; callers hold their own copy
    py_ref box, unbox, output, error;             // the owner's hooks
    json releases = json::array();                // [[oid, count], ...] not yet sent; GIL-guarded
    unsigned long long requests = 0;              // messages sent (requests, posts, release batches)
    unsigned long long round_trips = 0;           // replies waited for (requests, full pipelines)
    // Pipelined files by oid, and the pipelined closes whose replies the next request takes; GIL-guarded.
    std::unordered_map<unsigned long long, pipelined_file> pipes;
    std::deque<std::uint64_t> unchecked;

    // The owner's hooks for local objects by reference and the callbacks on them.
    py_ref local, callback, keep_error, release_local;
    py_ref warn;  // the owner's _warn(items), if it has one: the warnings the slave raised (reply "wn")
    // Set by raise_builtin_errors(name): the notes a fixed built-in exception gets when this side
    // makes it without the owner's _error ("Remote traceback (on NAME):\n", "(raised on NAME)").
    py_ref traceback_note, raised_note;
};

struct connection_object {
    PyObject_HEAD
    connection_state* state;
};

void serve_callback(connection_state& state, const splitcore::message& event);

// A failure of the writer is reported and forgotten (it must not lose the reply), except the
// KeyboardInterrupt of a Ctrl-C that landed while it wrote: that one is the caller's.
void writer_failed(std::optional<python_error>& interrupt, connection_state& state) {
    if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        PyErr_WriteUnraisable(state.output.get());
    } else if (interrupt) {
        PyErr_Clear();  // a second Ctrl-C while the rest is written: the first one stands
    } else {
        interrupt.emplace();
    }
}

// Output events go to the owner's _output(fd, bytes); callback requests ({"ev": "cb"}) are served
// here, on the thread that waits for their call. Every event is written even after an
// interrupt; the interrupt is returned, for the caller to act on as on one during the wait.
[[nodiscard]] std::optional<python_error> deliver_events(connection_state& state,
                                                         std::vector<splitcore::message>& events) {
    std::optional<python_error> interrupt;
    for (auto& event : events) {
        if (event.header.value("ev", "") == "cb") {
            serve_callback(state, event);
            continue;
        }
        try {
            std::optional<output_chunk> chunk = output_of(event);
            if (!chunk) continue;
            PyObject* args[] = {chunk->fd.get(), chunk->data.get()};
            py_ref done = py_ref::steal(PyObject_Vectorcall(state.output.get(), args, 2, nullptr));
            if (!done) writer_failed(interrupt, state);
        } catch (const python_error& e) {
            e.restore();
            writer_failed(interrupt, state);
        }
    }
    events.clear();
    return interrupt;
}

client_hooks hooks_of(connection_state& state) {
    return client_hooks(state.box.get(), state.unbox.get(), state.local.get(), state.error.get());
}

// "rl": [[eid, count], ...] on a worker's message: its proxies of our local objects that died.
void release_locals(connection_state& state, const json& header) {
    const auto found = header.find("rl");
    if (found == header.end() || !found->is_array() || found->empty()) return;
    try {
        py_ref pairs = py_ref::checked(PyList_New(0));
        for (const json& pair : *found) {
            if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_unsigned() ||
                !pair[1].is_number_unsigned()) {
                continue;
            }
            py_ref item = py_ref::checked(
                Py_BuildValue("(KK)", pair[0].get<unsigned long long>(), pair[1].get<unsigned long long>()));
            if (PyList_Append(pairs.get(), item.get()) < 0) throw python_error();
        }
        py_ref done = py_ref::checked(PyObject_CallOneArg(state.release_local.get(), pairs.get()));
    } catch (const python_error& e) {
        e.restore();
        PyErr_WriteUnraisable(state.release_local.get());
    }
}

// The warnings the slave raised while it served the request, [[category module, qualname, message,
// filename, lineno], ...]: the owner's _warn re-raises them here, through the master's filters. False
// with the Python error set if that raised (a filter "error").
bool deliver_warnings(connection_state& state, const json& header) {
    const auto found = header.find("wn");
    if (found == header.end() || !found->is_array() || found->empty() || !state.warn) return true;
    try {
        py_ref items = py_ref::checked(PyList_New(0));
        for (const json& entry : *found) {
            if (!entry.is_array() || entry.size() != 5 || !entry[4].is_number_integer()) continue;
            bool texts = true;
            for (int k = 0; k < 4; ++k) texts = texts && entry[k].is_string();
            if (!texts) continue;
            py_ref item = py_ref::checked(Py_BuildValue(
                "(s#s#s#s#L)", entry[0].get_ref<const std::string&>().data(),
                static_cast<Py_ssize_t>(entry[0].get_ref<const std::string&>().size()),
                entry[1].get_ref<const std::string&>().data(),
                static_cast<Py_ssize_t>(entry[1].get_ref<const std::string&>().size()),
                entry[2].get_ref<const std::string&>().data(),
                static_cast<Py_ssize_t>(entry[2].get_ref<const std::string&>().size()),
                entry[3].get_ref<const std::string&>().data(),
                static_cast<Py_ssize_t>(entry[3].get_ref<const std::string&>().size()), entry[4].get<long long>()));
            if (PyList_Append(items.get(), item.get()) < 0) throw python_error();
        }
        py_ref done = py_ref::checked(PyObject_CallOneArg(state.warn.get(), items.get()));
    } catch (const python_error& e) {
        e.restore();
        return false;
    }
    return true;
}

// A callback request of the worker, {"ev": "cb", "cb": n, "for": id, "op", "l": {"$l": eid}, "name",
// "a", "k"}: the owner's _callback(op, target, name, args, kwargs) runs it here, on the master, and
// the answer goes back as an "answer" request (docs/protocol.md, "Callbacks"). An exception it raises
// is kept by the owner (_keep_error gives its token, "origin"), so that when it comes back out of the
// remote call the caller gets that very exception.
void serve_callback(connection_state& state, const splitcore::message& event) {
    std::shared_ptr<splitcore::channel> channel = state.channel;
    if (!channel) return;  // closed: the worker's wait ends with the session
    release_locals(state, event.header);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder out(hooks);
    out.send_sets_by_value();
    json answer{{"op", "answer"}, {"cb", event.header.value("cb", json(0))}};
    try {
        py_ref target, name, args, kwargs;
        {
            master_scope master;
            splitcore::decoder in(hooks, event.frames);
            target = in.decode(splitcore::field(event.header, "l"));
            const json* raw_name = splitcore::optional_field(event.header, "name");
            name = raw_name != nullptr && !raw_name->is_null() ? in.decode(*raw_name) : py_ref::borrow(Py_None);
            const json* raw_args = splitcore::optional_field(event.header, "a");
            args = raw_args != nullptr && !raw_args->is_null() ? in.decode(*raw_args) : py_ref::borrow(Py_None);
            const json* raw_kwargs = splitcore::optional_field(event.header, "k");
            kwargs = raw_kwargs != nullptr && !raw_kwargs->is_null() ? in.decode(*raw_kwargs) : py_ref::borrow(Py_None);
        }
        py_ref op = py_ref::checked(PyUnicode_FromString(splitcore::string_field(event.header, "op").c_str()));
        PyObject* call_args[] = {op.get(), target.get(), name.get(), args.get(), kwargs.get()};
        py_ref result = py_ref::checked(PyObject_Vectorcall(state.callback.get(), call_args, 5, nullptr));
        answer["ok"] = true;
        answer["r"] = out.encode(result.get());
    } catch (const python_error& e) {
        (void)out.take_frames();
        answer["ok"] = false;
        answer["e"] = splitcore::describe_exception(e, hooks);
        py_ref token = py_ref::steal(PyObject_CallOneArg(state.keep_error.get(), e.value() ? e.value() : Py_None));
        if (token && PyLong_Check(token.get())) answer["e"]["origin"] = PyLong_AsUnsignedLongLong(token.get());
        PyErr_Clear();
    } catch (const splitcore::error& e) {
        (void)out.take_frames();
        answer["ok"] = false;
        answer["e"] = splitcore::error_value(e);
    } catch (const std::exception& e) {  // a malformed callback request
        PyErr_Clear();
        (void)out.take_frames();
        answer["ok"] = false;
        answer["e"] = splitcore::error_value(splitcore::errc::bad_request, e.what());
    }
    std::vector<zmq::message_t> frames = out.take_frames();
    ++state.requests;
    try {
        splitcore::gil_release unlocked;
        channel->post(std::move(answer), std::move(frames));
    } catch (const std::exception&) {
        // unreachable or closed: the call that waits says so
    }
}

// An error reply becomes the exception the owner's _error(dict) makes (a fixed built-in one, once the
// owner asked for it, the same exception made here: marshal's builtin_exception), set as the
// current Python exception.
void set_error_reply(connection_state& state, const splitcore::message& reply) {
    client_hooks hooks = hooks_of(state);
    splitcore::decoder decoder(hooks, reply.frames);
    py_ref exception;
    if (state.traceback_note) {
        exception = builtin_exception(decoder, reply, state.traceback_note.get(), state.raised_note.get());
    }
    if (!exception) {
        py_ref info = error_info(decoder, reply);
        exception = py_ref::checked(PyObject_CallOneArg(state.error.get(), info.get()));
    }
    if (!PyExceptionInstance_Check(exception.get())) {
        throw python_error::make(PyExc_TypeError, "the error hook did not return an exception");
    }
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.get())), exception.get());
}

// The same, thrown.
[[noreturn]] void throw_error_reply(connection_state& state, const splitcore::message& reply) {
    set_error_reply(state, reply);
    throw python_error();
}

std::shared_ptr<splitcore::channel> open_channel(connection_state& state) {
    if (!state.channel) throw splitcore::error(splitcore::errc::closed, "this connection is closed");
    return state.channel;
}

// References in replies nobody read (a timeout, an interrupt) are released like dropped proxies.
void adopt_orphans(connection_state& state) {
    if (!state.channel) return;
    for (const auto oid : state.channel->take_orphans()) state.releases.push_back(json::array({oid, 1}));
}

void flush_releases(connection_state& state) {
    adopt_orphans(state);
    if (state.releases.empty() || !state.channel) return;
    json header{{"op", splitcore::op::release.name}, {"ids", std::move(state.releases)}};
    state.releases = json::array();
    std::shared_ptr<splitcore::channel> channel = state.channel;
    ++state.requests;
    splitcore::gil_release unlocked;
    channel->post(std::move(header));
}

[[noreturn]] void throw_timeout(const splitcore::channel& channel, double timeout) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout);
    throw splitcore::error(splitcore::errc::timeout, channel.options().name + " (" + channel.options().address +
                                                         ") did not reply within " + seconds + " s");
}

// Waits for the reply to `id`, with the GIL released in slices; Ctrl-C cancels the remote call
// (and throws the KeyboardInterrupt), a timeout > 0 ends the wait (the timeout id).
splitcore::message await_reply(connection_state& state, splitcore::channel& channel, std::uint64_t id, double timeout) {
    std::vector<splitcore::message> events;
    const auto deadline =
        timeout > 0 ? splitcore::channel_clock::now() + std::chrono::microseconds(static_cast<long long>(timeout * 1e6))
                    : splitcore::channel_clock::time_point::max();
    for (;;) {
        std::optional<splitcore::message> reply;
        {
            splitcore::gil_release unlocked;
            reply =
                channel.wait(id, std::min(deadline, splitcore::channel_clock::now() + signal_check_interval), events);
        }
        std::optional<python_error> interrupted;
        if (!events.empty()) interrupted = deliver_events(state, events);
        if (reply && !interrupted) return std::move(*reply);
        if (reply) {
            channel.discard(*reply);  // it came with the output the Ctrl-C landed in: the caller gets the interrupt
            throw *interrupted;
        }
        if (!interrupted && splitcore::channel_clock::now() >= deadline) {
            channel.abandon(id);
            throw_timeout(channel, timeout);
        }
        if (!interrupted && PyErr_CheckSignals() == 0) continue;

        // Interrupted (while waiting, or while its output was written): the remote call gets
        // KeyboardInterrupt; we keep ours. Its reply, and the output before it, are awaited
        // briefly so the session is quiet again afterwards.
        python_error interrupt = interrupted ? *interrupted : python_error();
        try {
            {
                splitcore::gil_release unlocked;
                channel.cancel(id);
            }
            const auto until = splitcore::channel_clock::now() + cancel_grace;
            while (splitcore::channel_clock::now() < until) {
                std::optional<splitcore::message> late;
                {
                    splitcore::gil_release unlocked;
                    late = channel.wait(id, until, events);
                }
                if (!events.empty() && deliver_events(state, events)) break;  // Ctrl-C again: stop waiting
                if (late) {
                    channel.discard(*late);  // the caller gets KeyboardInterrupt, not this reply
                    break;
                }
            }
        } catch (const std::exception&) {
            // the agent is gone or the channel closed: the interrupt is still what the user sees
        }
        channel.abandon(id);
        throw interrupt;
    }
}

connection_state& state_of(connection_object* self) { return *self->state; }

// The method calls and attributes of a file that leave it open: after them its writes may still be
// pipelined. Any other use (close, detach, an iterator, the file passed to a call) ends that.
bool keeps_pipelining(const json& header) {
    static const char* const names[] = {"write",    "flush",     "tell",     "seek",     "read",          "read1",
                                        "readline", "readlines", "readinto", "readable", "writable",      "seekable",
                                        "isatty",   "fileno",    "truncate", "peek",     "closed",        "name",
                                        "mode",     "encoding",  "errors",   "newlines", "line_buffering"};
    const std::string op = header.value("op", "");
    const json* name = nullptr;
    if (op == "getattr") {
        name = splitcore::optional_field(header, "name");
    } else if (op == "call") {
        const json* path = splitcore::optional_field(header, "path");
        if (path != nullptr && path->is_array() && path->size() == 1) name = &(*path)[0];
    }
    if (name == nullptr || !name->is_string()) return false;
    for (const char* known : names) {
        if (*name == known) return true;
    }
    return false;
}

// A close runs whatever failed before it, as a local file closes after a failed flush.
bool closes(const json& header) {
    const std::string op = header.value("op", "");
    if (op == "exit") return true;
    const json* path = op == "call" ? splitcore::optional_field(header, "path") : nullptr;
    return path != nullptr && path->is_array() && path->size() == 1 && (*path)[0] == "close";
}

// Takes the reply of a pipelined request; an error reply raises what the owner's _error makes of it.
void collect(connection_state& state, splitcore::channel& channel, std::uint64_t id) {
    splitcore::message reply = await_reply(state, channel, id, 0);
    release_locals(state, reply.header);
    const auto ok = reply.header.find("ok");
    if (ok == reply.header.end() || !ok->is_boolean() || !ok->get<bool>()) {
        master_scope master;
        throw_error_reply(state, reply);
    }
    channel.discard(reply);  // a write's count is known here already
}

void abandon_file(connection_state& state, splitcore::channel& channel, unsigned long long oid) {
    const auto found = state.pipes.find(oid);
    if (found == state.pipes.end()) return;
    for (const auto& sent : found->second.in_flight) channel.abandon(sent.first);
    found->second.in_flight.clear();
    found->second.bytes = 0;
}

// Takes the replies of a file's pipelined writes, oldest first, until at most `keep_bytes` are in
// flight. The first failure is raised; the worker ran nothing of the file's after it, and the
// replies still to come are dropped.
void collect_file(connection_state& state, splitcore::channel& channel, unsigned long long oid,
                  std::size_t keep_bytes = 0) {
    for (;;) {
        const auto found = state.pipes.find(oid);
        if (found == state.pipes.end() || found->second.in_flight.empty()) return;
        if (keep_bytes > 0 && found->second.bytes <= keep_bytes) return;
        const auto [id, bytes] = found->second.in_flight.front();
        found->second.in_flight.pop_front();
        found->second.bytes -= bytes;
        try {
            collect(state, channel, id);
        } catch (...) {
            abandon_file(state, channel, oid);
            throw;
        }
    }
}

// Pipelined closes of files only read (their replies come before any later request's): the first
// failure is raised by the request that finds it.
void collect_unchecked(connection_state& state, splitcore::channel& channel) {
    while (!state.unchecked.empty()) {
        const std::uint64_t id = state.unchecked.front();
        state.unchecked.pop_front();
        collect(state, channel, id);
    }
}

// The object id of a request's "o", if it names a pipelined file.
std::optional<unsigned long long> pipelined_target(connection_state& state, PyObject* fields) {
    if (state.pipes.empty() || fields == nullptr || !PyDict_Check(fields)) return std::nullopt;
    PyObject* o = PyDict_GetItemString(fields, "o");
    if (o == nullptr || !PyLong_Check(o)) return std::nullopt;
    const unsigned long long oid = PyLong_AsUnsignedLongLong(o);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return std::nullopt;
    }
    if (state.pipes.find(oid) == state.pipes.end()) return std::nullopt;
    return oid;
}

// request(op, fields=None, timeout=None)
py_ref connection_request(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) throw python_error::make(PyExc_TypeError, "request(op, fields=None, timeout=None)");
    double timeout = 0;
    if (nargs > 2 && args[2] != Py_None) {
        timeout = PyFloat_AsDouble(args[2]);
        if (timeout == -1.0 && PyErr_Occurred()) throw python_error();
    }
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder encoder(hooks);
    encoder.send_writable_buffers();
    encoder.send_sets_by_value();
    json header = build_header(args[0], nargs > 1 ? args[1] : nullptr, encoder);
    std::vector<zmq::message_t> frames = encoder.take_frames();
    adopt_orphans(state);
    if (state.releases.size() >= release_batch) flush_releases(state);
    const std::optional<unsigned long long> file = pipelined_target(state, nargs > 1 ? args[1] : nullptr);
    if (file) {
        pipelined_file& pipe = state.pipes[*file];
        if (!pipe.in_flight.empty() && !closes(header)) header["after"] = pipe.in_flight.back().first;
        if (!keeps_pipelining(header)) pipe.open = false;
    }
    const bool main_thread = !state.unchecked.empty() && [&header] {
        const splitcore::operation* op = splitcore::op::find(header.value("op", ""));
        return op != nullptr && op->answered_by == splitcore::tier::main_thread;
    }();
    std::uint64_t id;
    ++state.requests;
    ++state.round_trips;
    {
        splitcore::gil_release unlocked;
        id = channel->send(std::move(header), std::move(frames));
    }
    splitcore::message reply = await_reply(state, *channel, id, timeout);
    release_locals(state, reply.header);
    if (file || main_thread) {
        // Replies come in order: those of the pipelined requests sent before this one are here.
        try {
            if (file) {
                collect_file(state, *channel, *file);
                if (const auto found = state.pipes.find(*file); found != state.pipes.end() && !found->second.open) {
                    state.pipes.erase(found);
                }
            }
            if (main_thread) collect_unchecked(state, *channel);
        } catch (...) {
            channel->discard(reply);
            throw;
        }
    }
    master_scope master;
    const auto ok = reply.header.find("ok");
    const bool succeeded = ok != reply.header.end() && ok->is_boolean() && ok->get<bool>();
    if (!deliver_warnings(state, reply.header)) {
        if (succeeded) throw python_error();
        PyErr_Clear();  // the call's own error wins over a warning made an error
    }
    if (!succeeded) {  // raised as the C API raises: a null result, the exception set, no C++ throw
        set_error_reply(state, reply);
        return py_ref();
    }
    const auto result = reply.header.find("r");
    splitcore::decoder decoder(hooks, reply.frames);
    py_ref value = result == reply.header.end() ? py_ref::borrow(Py_None) : decode_result(decoder, *result);
    // The buffers the slave filled (readinto, recv_into) are the caller's: fill them before returning.
    if (const auto written = reply.header.find("w"); written != reply.header.end() && written->is_array()) {
        for (const json& pair : *written) {
            if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_unsigned()) continue;
            py_ref data = decoder.decode(pair[1]);
            encoder.fill_writable(pair[0].get<std::size_t>(), data.get());
        }
    }
    return value;
}

// The value of a reply that needs none of request()'s bookkeeping (no pipelined file, no buffer to
// fill); an error reply raises what the owner's _error makes of it.
py_ref plain_value(connection_state& state, const splitcore::message& reply) {
    release_locals(state, reply.header);
    client_hooks hooks = hooks_of(state);
    master_scope master;
    const auto ok = reply.header.find("ok");
    const bool succeeded = ok != reply.header.end() && ok->is_boolean() && ok->get<bool>();
    if (!deliver_warnings(state, reply.header)) {
        if (succeeded) throw python_error();
        PyErr_Clear();
    }
    if (!succeeded) throw_error_reply(state, reply);
    const auto result = reply.header.find("r");
    splitcore::decoder decoder(hooks, reply.frames);
    return result == reply.header.end() ? py_ref::borrow(Py_None) : decode_result(decoder, *result);
}

// request_prefetching(op, fields, then_op, then_fields, timeout=None) -> (value, then_value or None):
// both requests sent at once, so that the second's answer comes in the same round trip as the
// first's (a new session's hello and its first import, issue 11 point 4). The first is request()'s:
// its error raises, and the second, which the agent refuses without a session, is dropped. The
// second is a prefetch: any failure of it (an error reply, no reply in time) gives None, and the
// caller asks again when it needs the answer, which then raises what it raises.
py_ref connection_request_prefetching(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5) {
        throw python_error::make(PyExc_TypeError,
                                 "request_prefetching(op, fields, then_op, then_fields, timeout=None)");
    }
    double timeout = 0;
    if (nargs > 4 && args[4] != Py_None) {
        timeout = PyFloat_AsDouble(args[4]);
        if (timeout == -1.0 && PyErr_Occurred()) throw python_error();
    }
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder first_encoder(hooks), then_encoder(hooks);
    json first = build_header(args[0], args[1], first_encoder);
    json then = build_header(args[2], args[3], then_encoder);
    std::vector<zmq::message_t> first_frames = first_encoder.take_frames();
    std::vector<zmq::message_t> then_frames = then_encoder.take_frames();
    adopt_orphans(state);
    if (!state.releases.empty()) flush_releases(state);
    std::uint64_t first_id, then_id = 0;
    state.requests += 2;
    ++state.round_trips;
    {
        splitcore::gil_release unlocked;
        first_id = channel->send(std::move(first), std::move(first_frames));
        try {
            then_id = channel->send(std::move(then), std::move(then_frames));
        } catch (const splitcore::error&) {
            // not sent: nothing to prefetch
        }
    }
    py_ref value;
    try {
        value = plain_value(state, await_reply(state, *channel, first_id, timeout));
    } catch (...) {
        if (then_id != 0) channel->abandon(then_id);
        throw;
    }
    py_ref prefetched = py_ref::borrow(Py_None);
    if (then_id != 0) {
        std::optional<splitcore::message> reply;
        try {
            reply = await_reply(state, *channel, then_id, timeout);
        } catch (const splitcore::error&) {
            // no answer in time: the caller asks again
        }
        if (reply) {
            const auto ok = reply->header.find("ok");
            if (ok != reply->header.end() && ok->is_boolean() && ok->get<bool>()) {
                prefetched = plain_value(state, *reply);
            } else {
                channel->discard(*reply);
            }
        }
    }
    return py_ref::checked(PyTuple_Pack(2, value.get(), prefetched.get()));
}

// post(op, fields=None) -> id
py_ref connection_post(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) throw python_error::make(PyExc_TypeError, "post(op, fields=None)");
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder encoder(hooks);
    json header = build_header(args[0], nargs > 1 ? args[1] : nullptr, encoder);
    std::vector<zmq::message_t> frames = encoder.take_frames();
    std::uint64_t id;
    ++state.requests;
    {
        splitcore::gil_release unlocked;
        id = channel->post(std::move(header), std::move(frames));
    }
    return py_ref::checked(PyLong_FromUnsignedLongLong(id));
}

// pipeline(oid, facts): the file's small writes may be sent without waiting (pipe()).
py_ref connection_pipeline(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) throw python_error::make(PyExc_TypeError, "pipeline(oid, facts)");
    const unsigned long long oid = PyLong_AsUnsignedLongLong(args[0]);
    splitcore::throw_if_error();
    state_of(self).pipes[oid].facts = py_ref::borrow(args[1]);
    return py_ref::borrow(Py_None);
}

// raise_builtin_errors(name): from now on, an error reply of a fixed built-in exception is raised as
// the exception the owner's _error would make of it, made here (set_error_reply); None: by _error again.
py_ref connection_raise_builtin_errors(connection_object* self, PyObject* arg) {
    connection_state& state = state_of(self);
    if (arg == Py_None) {
        state.traceback_note.reset();
        state.raised_note.reset();
        return py_ref::borrow(Py_None);
    }
    if (!PyUnicode_Check(arg)) throw python_error::make(PyExc_TypeError, "raise_builtin_errors(name): name is a str");
    state.traceback_note = py_ref::checked(PyUnicode_FromFormat("Remote traceback (on %U):\n", arg));
    state.raised_note = py_ref::checked(PyUnicode_FromFormat("(raised on %U)", arg));
    return py_ref::borrow(Py_None);
}

// piped(oid) -> facts or None: whether writes on the file may be pipelined now.
py_ref connection_piped(connection_object* self, PyObject* arg) {
    connection_state& state = state_of(self);
    if (state.pipes.empty() || !PyLong_Check(arg)) return py_ref::borrow(Py_None);
    const unsigned long long oid = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return py_ref::borrow(Py_None);
    }
    const auto found = state.pipes.find(oid);
    if (found == state.pipes.end() || !found->second.open || !found->second.facts) return py_ref::borrow(Py_None);
    return py_ref::borrow(found->second.facts.get());
}

// unpipe(oid): the file is used in a way that could close it (passed to a call): no more pipelined
// writes; those in flight are taken by its next call.
py_ref connection_unpipe(connection_object* self, PyObject* arg) {
    connection_state& state = state_of(self);
    if (state.pipes.empty()) return py_ref::borrow(Py_None);
    const unsigned long long oid = PyLong_AsUnsignedLongLong(arg);
    splitcore::throw_if_error();
    if (const auto found = state.pipes.find(oid); found != state.pipes.end()) found->second.open = false;
    return py_ref::borrow(Py_None);
}

// pipe(oid, op, fields, nbytes, window): sends a call on a pipelined file without waiting for its
// reply; the worker runs it only if the file's pipelined calls before it succeeded. Past `window`
// bytes in flight the oldest replies are taken (and a failure raised), as a full buffer spills.
py_ref connection_pipe(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5) throw python_error::make(PyExc_TypeError, "pipe(oid, op, fields, nbytes, window)");
    const unsigned long long oid = PyLong_AsUnsignedLongLong(args[0]);
    const std::size_t nbytes = PyLong_AsSize_t(args[3]);
    const std::size_t window = PyLong_AsSize_t(args[4]);
    splitcore::throw_if_error();
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder encoder(hooks);
    encoder.send_sets_by_value();
    json header = build_header(args[1], args[2], encoder);
    std::vector<zmq::message_t> frames = encoder.take_frames();
    adopt_orphans(state);
    if (state.releases.size() >= release_batch) flush_releases(state);
    header["pipe"] = true;
    if (const auto found = state.pipes.find(oid); found != state.pipes.end() && !found->second.in_flight.empty()) {
        header["after"] = found->second.in_flight.back().first;
    }
    std::uint64_t id;
    ++state.requests;
    {
        splitcore::gil_release unlocked;
        id = channel->send(std::move(header), std::move(frames));
    }
    pipelined_file& pipe = state.pipes[oid];
    pipe.in_flight.emplace_back(id, nbytes);
    pipe.bytes += nbytes;
    if (pipe.bytes > window && pipe.in_flight.size() > 1) {
        ++state.round_trips;
        collect_file(state, *channel, oid, window);
    }
    return py_ref::borrow(Py_None);
}

// pipe_close(oid, op, fields): sends the close of a file only read, without waiting; its reply is
// taken (and a failure raised) by the next request to the worker.
py_ref connection_pipe_close(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) throw python_error::make(PyExc_TypeError, "pipe_close(oid, op, fields)");
    const unsigned long long oid = PyLong_AsUnsignedLongLong(args[0]);
    splitcore::throw_if_error();
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder encoder(hooks);
    json header = build_header(args[1], args[2], encoder);
    std::vector<zmq::message_t> frames = encoder.take_frames();
    if (const auto found = state.pipes.find(oid); found != state.pipes.end()) {
        collect_file(state, *channel, oid);  // a file only read has none: nothing waits here
        state.pipes.erase(oid);
    }
    std::uint64_t id;
    ++state.requests;
    {
        splitcore::gil_release unlocked;
        id = channel->send(std::move(header), std::move(frames));
    }
    state.unchecked.push_back(id);
    return py_ref::borrow(Py_None);
}

// release(oid, count): queued; sent in batches before a later request or by flush().
py_ref connection_release(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) throw python_error::make(PyExc_TypeError, "release(oid, count)");
    connection_state& state = state_of(self);
    if (!state.channel) return py_ref::borrow(Py_None);
    const unsigned long long oid = PyLong_AsUnsignedLongLong(args[0]);
    const unsigned long long count = PyLong_AsUnsignedLongLong(args[1]);
    splitcore::throw_if_error();
    state.releases.push_back(json::array({oid, count}));
    if (const auto found = state.pipes.find(oid); found != state.pipes.end()) {
        // Dropped unclosed: the slave's file closes when released, as a local one when collected.
        abandon_file(state, *state.channel, oid);
        state.pipes.erase(found);
    }
    return py_ref::borrow(Py_None);
}

py_ref connection_flush(connection_object* self, PyObject*) {
    flush_releases(state_of(self));
    return py_ref::borrow(Py_None);
}

// agent_clock(microseconds): the agent's clock from hello's reply; later requests carry "until".
py_ref connection_agent_clock(connection_object* self, PyObject* arg) {
    const unsigned long long agent_now = PyLong_AsUnsignedLongLong(arg);
    splitcore::throw_if_error();
    connection_state& state = state_of(self);
    if (state.channel) state.channel->agent_clock(agent_now);
    return py_ref::borrow(Py_None);
}

// direct_later(fields, after): the hello (these fields) that asks for the direct connection is
// posted once `after` more requests went through the agent's port (channel::direct_later).
py_ref connection_direct_later(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) throw python_error::make(PyExc_TypeError, "direct_later(fields, after)");
    const unsigned long after = PyLong_AsUnsignedLong(args[1]);
    splitcore::throw_if_error();
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = open_channel(state);
    client_hooks hooks = hooks_of(state);
    splitcore::encoder encoder(hooks);
    const std::string_view name = splitcore::op::hello.name;
    py_ref op = py_ref::checked(PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size())));
    json header = build_header(op.get(), args[0], encoder);
    channel->direct_later(std::move(header), static_cast<unsigned>(after));
    return py_ref::borrow(Py_None);
}

py_ref connection_cancel_all(connection_object* self, PyObject*) {
    connection_state& state = state_of(self);
    if (!state.channel) return py_ref::borrow(Py_None);
    std::shared_ptr<splitcore::channel> channel = state.channel;
    {
        splitcore::gil_release unlocked;
        for (auto id : channel->pending()) channel->cancel(id);
    }
    return py_ref::borrow(Py_None);
}

// Writes output that arrived while nobody was waiting (after a call returned).
py_ref connection_drain(connection_object* self, PyObject*) {
    connection_state& state = state_of(self);
    if (!state.channel) return py_ref::borrow(Py_None);
    std::vector<splitcore::message> events = state.channel->take_events();
    if (std::optional<python_error> interrupt = deliver_events(state, events)) throw *interrupt;
    return py_ref::borrow(Py_None);
}

py_ref connection_close(connection_object* self, PyObject*) {
    connection_state& state = state_of(self);
    std::shared_ptr<splitcore::channel> channel = std::move(state.channel);
    state.releases = json::array();
    state.pipes.clear();
    state.unchecked.clear();
    if (channel) {
        splitcore::gil_release unlocked;
        channel->close();  // wakes threads still waiting on it; they hold their own reference
        channel.reset();
    }
    return py_ref::borrow(Py_None);
}

py_ref connection_closed(connection_object* self, void*) {
    return py_ref::checked(PyBool_FromLong(!state_of(self).channel));
}

py_ref connection_handshakes(connection_object* self, void*) {
    connection_state& state = state_of(self);
    if (!state.channel) return py_ref::checked(PyLong_FromLong(0));
    return py_ref::checked(PyLong_FromUnsignedLongLong(state.channel->handshakes()));  // never blocks
}

py_ref connection_direct(connection_object* self, void*) {
    connection_state& state = state_of(self);
    return py_ref::borrow(state.channel && state.channel->direct_up() ? Py_True : Py_False);
}

py_ref connection_requests(connection_object* self, void*) {
    return py_ref::checked(PyLong_FromUnsignedLongLong(state_of(self).requests));
}

py_ref connection_round_trips(connection_object* self, void*) {
    return py_ref::checked(PyLong_FromUnsignedLongLong(state_of(self).round_trips));
}

py_ref connection_pending_releases(connection_object* self, void*) {
    return py_ref::checked(PyLong_FromSize_t(state_of(self).releases.size()));
}

py_ref connection_new(PyTypeObject* type, PyObject*, PyObject*) {
    py_ref self = py_ref::checked(type->tp_alloc(type, 0));
    reinterpret_cast<connection_object*>(self.get())->state = new connection_state();  // dealloc copes with null
    return self;
}

int connection_init(connection_object* self, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"name",    "address",  "server_key", "public_key", "secret_key",
                                     "session", "liveness", "hooks",      "keepalive",  nullptr};
    const char *name, *address, *server_key = nullptr, *public_key = nullptr, *secret_key = nullptr;
    const char* session = nullptr;
    Py_ssize_t session_size = 0;
    double liveness = 5.0, keepalive = 5.0;
    PyObject* hooks = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sszzzy#dO|d", const_cast<char**>(keywords), &name, &address,
                                     &server_key, &public_key, &secret_key, &session, &session_size, &liveness, &hooks,
                                     &keepalive)) {
        return -1;
    }
    connection_state& state = state_of(self);
    if (state.channel) throw python_error::make(PyExc_RuntimeError, "Connection is already initialised");
    state.box = py_ref::checked(PyObject_GetAttrString(hooks, "_box"));
    state.unbox = py_ref::checked(PyObject_GetAttrString(hooks, "_unbox"));
    state.output = py_ref::checked(PyObject_GetAttrString(hooks, "_output"));
    state.error = py_ref::checked(PyObject_GetAttrString(hooks, "_error"));
    state.local = py_ref::checked(PyObject_GetAttrString(hooks, "_local"));
    state.callback = py_ref::checked(PyObject_GetAttrString(hooks, "_callback"));
    state.keep_error = py_ref::checked(PyObject_GetAttrString(hooks, "_keep_error"));
    state.release_local = py_ref::checked(PyObject_GetAttrString(hooks, "_release_local"));
    state.warn = py_ref::steal(PyObject_GetAttrString(hooks, "_warn"));
    if (!state.warn) PyErr_Clear();
    splitcore::channel_options options;
    options.name = name;
    options.address = address;
    if (server_key != nullptr) {
        options.server_key = server_key;
        options.public_key = public_key != nullptr ? public_key : "";
        options.secret_key = secret_key != nullptr ? secret_key : "";
    }
    options.session.assign(session, static_cast<std::size_t>(session_size));
    options.liveness = std::chrono::milliseconds(static_cast<long long>(liveness * 1000.0));
    options.keepalive = std::chrono::milliseconds(static_cast<long long>(keepalive * 1000.0));
    state.channel = std::make_shared<splitcore::channel>(std::move(options));
    return 0;
}

int connection_traverse(connection_object* self, visitproc visit, void* arg) {
    if (self->state) {
        Py_VISIT(self->state->box.get());
        Py_VISIT(self->state->unbox.get());
        Py_VISIT(self->state->output.get());
        Py_VISIT(self->state->error.get());
        Py_VISIT(self->state->local.get());
        Py_VISIT(self->state->callback.get());
        Py_VISIT(self->state->keep_error.get());
        Py_VISIT(self->state->release_local.get());
    }
    return 0;
}

int connection_clear(connection_object* self) {
    if (self->state) {
        self->state->box.reset();
        self->state->unbox.reset();
        self->state->output.reset();
        self->state->error.reset();
        self->state->local.reset();
        self->state->callback.reset();
        self->state->keep_error.reset();
        self->state->release_local.reset();
    }
    return 0;
}

void connection_dealloc(connection_object* self) {
    PyObject_GC_UnTrack(self);
    connection_clear(self);
    if (self->state) {
        if (self->state->channel) {
            Py_BEGIN_ALLOW_THREADS
            self->state->channel.reset();
            Py_END_ALLOW_THREADS
        }
        delete self->state;
        self->state = nullptr;
    }
    Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

PyMethodDef connection_methods[] = {
    {"request", method(boundary<connection_request>), METH_FASTCALL,
     "request(op, fields=None, timeout=None) -> value: one round trip. Field 'o' is an object id, "
     "'v'/'k' boxed values, 'a' boxed arguments, 'kw' boxed keyword arguments; the rest is plain header data. Error replies raise what the owner's _error makes of them."},
    {"request_prefetching", method(boundary<connection_request_prefetching>), METH_FASTCALL,
     "request_prefetching(op, fields, then_op, then_fields, timeout=None) -> (value, then_value or None): both "
     "sent at once, one round trip; the first raises as request() does, any failure of the second gives None."},
    {"post", method(boundary<connection_post>), METH_FASTCALL,
     "post(op, fields=None) -> id: send without waiting; the reply is dropped."},
    {"pipeline", method(boundary<connection_pipeline>), METH_FASTCALL,
     "pipeline(oid, facts): the file's small writes may be sent without waiting (docs/protocol.md, "
     "\"Pipelined writes\")."},
    {"raise_builtin_errors", method(boundary<connection_raise_builtin_errors>), METH_O,
     "raise_builtin_errors(name): raise an error reply of a built-in exception (docs/protocol.md: one without "
     "\"mro\") as the owner's _error would, noting the slave's name, without calling it; None: through _error."},
    {"piped", method(boundary<connection_piped>), METH_O,
     "piped(oid) -> facts or None: the facts given to pipeline() while writes on the file may be pipelined."},
    {"unpipe", method(boundary<connection_unpipe>), METH_O, "unpipe(oid): no more pipelined writes on the file."},
    {"pipe", method(boundary<connection_pipe>), METH_FASTCALL,
     "pipe(oid, op, fields, nbytes, window): send a call on a pipelined file without waiting; its reply is "
     "taken by the file's next call (a failure raised there), or once more than window bytes are in flight."},
    {"pipe_close", method(boundary<connection_pipe_close>), METH_FASTCALL,
     "pipe_close(oid, op, fields): send the close of a file only read without waiting; a failure is raised by "
     "the next request."},
    {"release", method(boundary<connection_release>), METH_FASTCALL,
     "release(oid, count): queue a release, sent in a batch later (or by flush())."},
    {"flush", method(boundary<connection_flush>), METH_NOARGS, "Send the queued releases now."},
    {"agent_clock", method(boundary<connection_agent_clock>), METH_O,
     "agent_clock(microseconds): the agent's steady clock from hello's reply. Later requests carry the moment "
     "on it after which we may have given up on them: arriving later (a link cut), they are dropped, not run."},
    {"direct_later", method(boundary<connection_direct_later>), METH_FASTCALL,
     "direct_later(fields, after): post the hello with these fields (asking for the direct connection) once "
     "`after` more requests went through the agent's port."},
    {"cancel_all", method(boundary<connection_cancel_all>), METH_NOARGS,
     "Ask the agent to interrupt every call that a thread is waiting for."},
    {"drain", method(boundary<connection_drain>), METH_NOARGS, "Write output that arrived while no call was waiting."},
    {"close", method(boundary<connection_close>), METH_NOARGS, "Close the socket; idempotent."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef connection_getset[] = {
    {"closed", reinterpret_cast<getter>(boundary<connection_closed>), nullptr, "True once close() ran.", nullptr},
    {"requests", reinterpret_cast<getter>(boundary<connection_requests>), nullptr,
     "Messages sent so far (each request is one round trip; posts are not waited for).", nullptr},
    {"round_trips", reinterpret_cast<getter>(boundary<connection_round_trips>), nullptr,
     "Replies waited for so far: requests, and pipelines that had to wait (pipelined writes are not).", nullptr},
    {"handshakes", reinterpret_cast<getter>(boundary<connection_handshakes>), nullptr,
     "Handshakes with the agent that succeeded so far: more than 1 after a reconnect.", nullptr},
    {"direct", reinterpret_cast<getter>(boundary<connection_direct>), nullptr,
     "True while calls go straight to the session's worker (docs/protocol.md, \"The direct connection\").", nullptr},
    {"pending_releases", reinterpret_cast<getter>(boundary<connection_pending_releases>), nullptr,
     "Number of releases queued and not yet sent.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject connection_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

void add_connection_type(PyObject* module) {
    connection_type.tp_name = "splitbrain._core.Connection";
    connection_type.tp_basicsize = sizeof(connection_object);
    connection_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    connection_type.tp_doc =
        "Connection(name, address, server_key, public_key, secret_key, session, liveness, hooks, keepalive=5.0)\n\n"
        "The channel to one agent. server_key None means plain text (a loopback --insecure agent).";
    connection_type.tp_new = boundary<connection_new>;
    connection_type.tp_init = reinterpret_cast<initproc>(boundary<connection_init>);
    connection_type.tp_dealloc = reinterpret_cast<destructor>(connection_dealloc);
    connection_type.tp_traverse = reinterpret_cast<traverseproc>(connection_traverse);
    connection_type.tp_clear = reinterpret_cast<inquiry>(connection_clear);
    connection_type.tp_methods = connection_methods;
    connection_type.tp_getset = connection_getset;
    if (PyType_Ready(&connection_type) < 0) throw python_error();
    add_object(module, "Connection", reinterpret_cast<PyObject*>(&connection_type));
}

}  // namespace splitbrain_core
