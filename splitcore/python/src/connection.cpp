// splitbrain._core.Connection: one splitcore::channel seen from Python. It boxes arguments,
// sends, waits with the GIL released (checking for Ctrl-C every 100 ms), writes output events
// through the owner's hooks, and unboxes the reply. References and errors are made by the owner
// (the Python Slave), which gives us four callables: _box, _unbox, _output, _error.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core.hpp"
#include "splitcore/box.hpp"
#include "splitcore/channel.hpp"
#include "splitcore/protocol.hpp"
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

struct connection_state {
    std::shared_ptr<splitcore::channel> channel;  // null once closed; callers hold their own copy
    py_ref box, unbox, output, error;             // the owner's hooks
    json releases = json::array();                // [[oid, count], ...] not yet sent; GIL-guarded
    unsigned long long requests = 0;              // messages sent (requests, posts, release batches)
};

struct connection_object {
    PyObject_HEAD
    connection_state* state;
};

class client_hooks final : public splitcore::box_hooks {
public:
    explicit client_hooks(connection_state& state) : m_state(state) {}

    json box_reference(PyObject* obj) override {
        py_ref answer = py_ref::checked(PyObject_CallOneArg(m_state.box.get(), obj));
        if (PyLong_Check(answer.get())) {
            const unsigned long long oid = PyLong_AsUnsignedLongLong(answer.get());
            splitcore::throw_if_error();
            return json{{"$r", oid}};
        }
        if (PyUnicode_Check(answer.get())) {  // a local path-like object, sent as its text
            Py_ssize_t size = 0;
            const char* text = PyUnicode_AsUTF8AndSize(answer.get(), &size);
            if (text == nullptr) throw python_error();
            return json(std::string(text, static_cast<std::size_t>(size)));
        }
        throw python_error::make(PyExc_TypeError, "[splitbrain.not_transferable] the box hook returned neither an object id nor text");
    }

    py_ref unbox_reference(const json& ref) override {
        const auto& oid = ref.at("$r");
        if (!oid.is_number_unsigned()) {
            throw splitcore::error(splitcore::errc::bad_request, "a reference's \"$r\" is not an unsigned integer");
        }
        const auto type = ref.find("t");
        const auto callable = ref.find("cl");
        py_ref py_oid = py_ref::checked(PyLong_FromUnsignedLongLong(oid.get<std::uint64_t>()));
        py_ref py_type = py_ref::checked(PyUnicode_FromString(
            type != ref.end() && type->is_string() ? type->get_ref<const std::string&>().c_str() : "builtins.object"));
        PyObject* py_callable = callable != ref.end() && callable->is_boolean() && callable->get<bool>() ? Py_True : Py_False;
        PyObject* args[] = {py_oid.get(), py_type.get(), py_callable};
        return py_ref::checked(PyObject_Vectorcall(m_state.unbox.get(), args, 3, nullptr));
    }

private:
    connection_state& m_state;
};

// Plain header fields (ids, names, attribute paths): str, int, bool, None, float, lists, dicts.
json plain_json(PyObject* value, int depth = 0) {
    if (depth > 32) throw python_error::make(PyExc_ValueError, "[splitbrain.bad_request] header field nested too deeply");
    if (value == Py_None) return nullptr;
    if (PyBool_Check(value)) return value == Py_True;
    if (PyLong_Check(value)) {
        int overflow = 0;
        const long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow > 0) {
            const unsigned long long big = PyLong_AsUnsignedLongLong(value);
            splitcore::throw_if_error();
            return big;
        }
        splitcore::throw_if_error();
        if (overflow < 0) throw python_error::make(PyExc_OverflowError, "header integer out of range");
        if (number >= 0) return static_cast<std::uint64_t>(number);
        return number;
    }
    if (PyFloat_Check(value)) return PyFloat_AS_DOUBLE(value);
    if (PyUnicode_Check(value)) {
        Py_ssize_t size = 0;
        const char* text = PyUnicode_AsUTF8AndSize(value, &size);
        if (text == nullptr) throw python_error();
        return std::string(text, static_cast<std::size_t>(size));
    }
    if (PyList_Check(value) || PyTuple_Check(value)) {
        py_ref items = py_ref::checked(PySequence_Fast(value, "expected a sequence"));
        json array = json::array();
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(items.get());
        for (Py_ssize_t i = 0; i < n; ++i) {
            array.push_back(plain_json(PySequence_Fast_GET_ITEM(items.get(), i), depth + 1));
        }
        return array;
    }
    if (PyDict_Check(value)) {
        json object = json::object();
        PyObject *key, *item;
        Py_ssize_t pos = 0;
        while (PyDict_Next(value, &pos, &key, &item)) {
            const char* name = PyUnicode_AsUTF8(key);
            if (name == nullptr) throw python_error();
            object[name] = plain_json(item, depth + 1);
        }
        return object;
    }
    throw python_error::make(PyExc_TypeError, "[splitbrain.bad_request] a header field is not plain data");
}

// The request header. Python-side field names map to the protocol's: "o" (an object id) becomes
// the reference {"$r": id}; "v" and "k" are boxed values; "a" (arguments) is boxed item by item;
// "kw" (keyword arguments) becomes "k" = {"$d": [name, boxed value, ...]}. Everything else is plain.
json build_header(PyObject* op, PyObject* fields, splitcore::encoder& encoder) {
    json header = json::object();
    header["op"] = plain_json(op);
    if (fields == nullptr || fields == Py_None) return header;
    if (!PyDict_Check(fields)) throw python_error::make(PyExc_TypeError, "fields must be a dict");
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        Py_ssize_t size = 0;
        const char* name = PyUnicode_AsUTF8AndSize(key, &size);
        if (name == nullptr) throw python_error();
        const std::string_view field(name, static_cast<std::size_t>(size));
        if (field == "o" && PyLong_Check(value)) {
            const unsigned long long oid = PyLong_AsUnsignedLongLong(value);
            splitcore::throw_if_error();
            header["o"] = json{{"$r", oid}};
        } else if (field == "v" || field == "k") {
            header[std::string(field)] = encoder.encode(value);
        } else if (field == "a") {
            py_ref items = py_ref::checked(PySequence_Fast(value, "arguments must be a sequence"));
            json array = json::array();
            const Py_ssize_t n = PySequence_Fast_GET_SIZE(items.get());
            for (Py_ssize_t i = 0; i < n; ++i) {
                array.push_back(encoder.encode(PySequence_Fast_GET_ITEM(items.get(), i)));
            }
            header["a"] = std::move(array);
        } else if (field == "kw") {
            if (value == Py_None) continue;
            if (!PyDict_Check(value)) throw python_error::make(PyExc_TypeError, "keyword arguments must be a dict");
            json pairs = json::array();
            PyObject *k, *v;
            Py_ssize_t kpos = 0;
            while (PyDict_Next(value, &kpos, &k, &v)) {
                pairs.push_back(plain_json(k));
                pairs.push_back(encoder.encode(v));
            }
            header["k"] = json{{"$d", std::move(pairs)}};
        } else {
            header[std::string(field)] = plain_json(value);
        }
    }
    return header;
}

py_ref bytes_of(const json& data) {
    if (data.is_binary()) {
        const auto& bytes = data.get_binary();
        return py_ref::checked(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes.data()),
                                                         static_cast<Py_ssize_t>(bytes.size())));
    }
    if (data.is_string()) {
        const auto& text = data.get_ref<const std::string&>();
        return py_ref::checked(PyBytes_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size())));
    }
    return py_ref::checked(PyBytes_FromStringAndSize("", 0));
}

// Output events go to the owner's _output(fd, bytes); a failing writer must not lose the reply.
void deliver_events(connection_state& state, std::vector<splitcore::message>& events) {
    for (auto& event : events) {
        const auto& header = event.header;
        if (header.value("ev", "") != "out") continue;
        const auto fd = header.find("fd");
        const auto data = header.find("d");
        if (fd == header.end() || !fd->is_number_integer() || data == header.end()) continue;
        try {
            py_ref py_fd = py_ref::checked(PyLong_FromLong(fd->get<long>()));
            py_ref py_data = bytes_of(*data);
            PyObject* args[] = {py_fd.get(), py_data.get()};
            py_ref done = py_ref::steal(PyObject_Vectorcall(state.output.get(), args, 2, nullptr));
            if (!done) PyErr_WriteUnraisable(state.output.get());
        } catch (const python_error& e) {
            e.restore();
            PyErr_WriteUnraisable(state.output.get());
        }
    }
    events.clear();
}

// A result is a VALUE; a few operations (hello, import, iter) answer with a structure, which may
// come as a tagged dict or as a plain CBOR map of VALUEs: both become a dict.
py_ref decode_result(splitcore::decoder& decoder, const json& value) {
    if (!value.is_object() || value.empty() || value.begin().key().rfind('$', 0) == 0) {
        return decoder.decode(value);
    }
    py_ref dict = py_ref::checked(PyDict_New());
    for (const auto& [key, item] : value.items()) {
        py_ref decoded = decode_result(decoder, item);
        if (PyDict_SetItemString(dict.get(), key.c_str(), decoded.get()) < 0) throw python_error();
    }
    return dict;
}

py_ref decode_optional(splitcore::decoder& decoder, const json& error, const char* field) {
    const auto found = error.find(field);
    if (found == error.end() || found->is_null()) return py_ref::borrow(Py_None);
    return decoder.decode(*found);
}

py_ref text_or_none(const json& error, const char* field) {
    const auto found = error.find(field);
    if (found == error.end() || !found->is_string()) return py_ref::borrow(Py_None);
    const auto& text = found->get_ref<const std::string&>();
    return py_ref::checked(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace"));
}

// An error reply becomes the exception the owner's _error(dict) makes; set as current.
void raise_error_reply(connection_state& state, const splitcore::message& reply) {
    const auto found = reply.header.find("e");
    static const json nothing = json::object();
    const json& error = found != reply.header.end() && found->is_object() ? *found : nothing;
    client_hooks hooks(state);
    splitcore::decoder decoder(hooks, reply.frames);
    py_ref info = py_ref::checked(PyDict_New());
    auto put = [&](const char* key, py_ref value) {
        if (PyDict_SetItemString(info.get(), key, value.get()) < 0) throw python_error();
    };
    put("type", text_or_none(error, "type"));
    put("msg", text_or_none(error, "msg"));
    put("strerror", text_or_none(error, "strerror"));
    put("tb", text_or_none(error, "tb"));
    put("code", text_or_none(error, "code"));
    put("filename", decode_optional(decoder, error, "filename"));
    put("filename2", decode_optional(decoder, error, "filename2"));
    const auto err = error.find("errno");
    put("errno", err != error.end() && err->is_number_integer() ? py_ref::checked(PyLong_FromLongLong(err->get<long long>()))
                                                                  : py_ref::borrow(Py_None));
    py_ref args = py_ref::checked(PyList_New(0));
    const auto remote_args = error.find("args");
    if (remote_args != error.end() && remote_args->is_array()) {
        for (const auto& arg : *remote_args) {
            py_ref value = decoder.decode(arg);
            if (PyList_Append(args.get(), value.get()) < 0) throw python_error();
        }
    }
    put("args", std::move(args));
    py_ref exception = py_ref::checked(PyObject_CallOneArg(state.error.get(), info.get()));
    if (!PyExceptionInstance_Check(exception.get())) {
        throw python_error::make(PyExc_TypeError, "the error hook did not return an exception");
    }
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.get())), exception.get());
}

std::shared_ptr<splitcore::channel> open_channel(connection_state& state) {
    if (!state.channel) throw std::runtime_error("[splitbrain.closed] this connection is closed");
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
    json header{{"op", "release"}, {"ids", std::move(state.releases)}};
    state.releases = json::array();
    std::shared_ptr<splitcore::channel> channel = state.channel;
    ++state.requests;
    splitcore::gil_release unlocked;
    channel->post(std::move(header));
}

// Waits for the reply to `id`, with the GIL released in slices; Ctrl-C cancels the remote call.
// Returns the reply, or nullopt with a Python exception set.
std::optional<splitcore::message> await_reply(connection_state& state, splitcore::channel& channel,
                                              std::uint64_t id, double timeout) {
    std::vector<splitcore::message> events;
    const auto deadline = timeout > 0
        ? splitcore::channel_clock::now() + std::chrono::microseconds(static_cast<long long>(timeout * 1e6))
        : splitcore::channel_clock::time_point::max();
    for (;;) {
        std::optional<splitcore::message> reply;
        {
            splitcore::gil_release unlocked;
            reply = channel.wait(id, std::min(deadline, splitcore::channel_clock::now() + signal_check_interval), events);
        }
        if (!events.empty()) deliver_events(state, events);
        if (reply) return reply;
        if (splitcore::channel_clock::now() >= deadline) {
            channel.abandon(id);
            char seconds[32];
            std::snprintf(seconds, sizeof seconds, "%g", timeout);
            PyErr_Format(PyExc_TimeoutError, "[splitbrain.timeout] %s (%s) did not reply within %s s",
                         channel.options().name.c_str(), channel.options().address.c_str(), seconds);
            return std::nullopt;
        }
        if (PyErr_CheckSignals() == 0) continue;

        // Interrupted: the remote call gets KeyboardInterrupt; we keep ours. Its reply, and the
        // output before it, are awaited briefly so the session is quiet again afterwards.
        python_error interrupt;
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
                if (!events.empty()) deliver_events(state, events);
                if (late) {
                    channel.discard(*late);  // the caller gets KeyboardInterrupt, not this reply
                    break;
                }
            }
        } catch (const std::exception&) {
            // the agent is gone or the channel closed: the interrupt is still what the user sees
        }
        channel.abandon(id);
        interrupt.restore();
        return std::nullopt;
    }
}

PyObject* connection_request(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "request(op, fields=None, timeout=None)");
        return nullptr;
    }
    double timeout = 0;
    if (nargs > 2 && args[2] != Py_None) {
        timeout = PyFloat_AsDouble(args[2]);
        if (timeout == -1.0 && PyErr_Occurred()) return nullptr;
    }
    connection_state& state = *self->state;
    try {
        std::shared_ptr<splitcore::channel> channel = open_channel(state);
        client_hooks hooks(state);
        splitcore::encoder encoder(hooks);
        json header = build_header(args[0], nargs > 1 ? args[1] : nullptr, encoder);
        std::vector<zmq::message_t> frames = encoder.take_frames();
        adopt_orphans(state);
        if (state.releases.size() >= release_batch) flush_releases(state);
        std::uint64_t id;
        ++state.requests;
        {
            splitcore::gil_release unlocked;
            id = channel->send(std::move(header), std::move(frames));
        }
        std::optional<splitcore::message> reply = await_reply(state, *channel, id, timeout);
        if (!reply) return nullptr;
        master_scope master;
        const auto ok = reply->header.find("ok");
        if (ok != reply->header.end() && ok->is_boolean() && ok->get<bool>()) {
            const auto result = reply->header.find("r");
            if (result == reply->header.end()) Py_RETURN_NONE;
            splitcore::decoder decoder(hooks, reply->frames);
            return decode_result(decoder, *result).release();
        }
        raise_error_reply(state, *reply);
        return nullptr;
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
}

PyObject* connection_post(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "post(op, fields=None)");
        return nullptr;
    }
    connection_state& state = *self->state;
    try {
        std::shared_ptr<splitcore::channel> channel = open_channel(state);
        client_hooks hooks(state);
        splitcore::encoder encoder(hooks);
        json header = build_header(args[0], nargs > 1 ? args[1] : nullptr, encoder);
        std::vector<zmq::message_t> frames = encoder.take_frames();
        std::uint64_t id;
        ++state.requests;
        {
            splitcore::gil_release unlocked;
            id = channel->post(std::move(header), std::move(frames));
        }
        return PyLong_FromUnsignedLongLong(id);
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
}

// release(oid, count): queued; sent in batches before a later request or by flush().
PyObject* connection_release(connection_object* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "release(oid, count)");
        return nullptr;
    }
    connection_state& state = *self->state;
    if (!state.channel) Py_RETURN_NONE;
    const unsigned long long oid = PyLong_AsUnsignedLongLong(args[0]);
    const unsigned long long count = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred()) return nullptr;
    state.releases.push_back(json::array({oid, count}));
    Py_RETURN_NONE;
}

PyObject* connection_flush(connection_object* self, PyObject*) {
    try {
        flush_releases(*self->state);
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* connection_cancel_all(connection_object* self, PyObject*) {
    connection_state& state = *self->state;
    if (!state.channel) Py_RETURN_NONE;
    try {
        std::shared_ptr<splitcore::channel> channel = state.channel;
        splitcore::gil_release unlocked;
        for (auto id : channel->pending()) channel->cancel(id);
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
    Py_RETURN_NONE;
}

// Writes output that arrived while nobody was waiting (after a call returned).
PyObject* connection_drain(connection_object* self, PyObject*) {
    connection_state& state = *self->state;
    if (!state.channel) Py_RETURN_NONE;
    std::vector<splitcore::message> events = state.channel->take_events();
    deliver_events(state, events);
    Py_RETURN_NONE;
}

PyObject* connection_close(connection_object* self, PyObject*) {
    connection_state& state = *self->state;
    std::shared_ptr<splitcore::channel> channel = std::move(state.channel);
    state.releases = json::array();
    if (channel) {
        splitcore::gil_release unlocked;
        channel->close();  // wakes threads still waiting on it; they hold their own reference
        channel.reset();
    }
    Py_RETURN_NONE;
}

PyObject* connection_closed(connection_object* self, void*) {
    return PyBool_FromLong(!self->state->channel);
}

PyObject* connection_requests(connection_object* self, void*) {
    return PyLong_FromUnsignedLongLong(self->state->requests);
}

PyObject* connection_pending_releases(connection_object* self, void*) {
    return PyLong_FromSize_t(self->state->releases.size());
}

PyObject* connection_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* self = reinterpret_cast<connection_object*>(type->tp_alloc(type, 0));
    if (self == nullptr) return nullptr;
    self->state = new (std::nothrow) connection_state();
    if (self->state == nullptr) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return reinterpret_cast<PyObject*>(self);
}

int connection_init(connection_object* self, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"name", "address", "server_key", "public_key", "secret_key",
                                     "session", "liveness", "hooks", "keepalive", nullptr};
    const char *name, *address, *server_key = nullptr, *public_key = nullptr, *secret_key = nullptr;
    const char* session = nullptr;
    Py_ssize_t session_size = 0;
    double liveness = 5.0, keepalive = 5.0;
    PyObject* hooks = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sszzzy#dO|d", const_cast<char**>(keywords), &name, &address,
                                     &server_key, &public_key, &secret_key, &session, &session_size, &liveness,
                                     &hooks, &keepalive)) {
        return -1;
    }
    if (self->state->channel) {
        PyErr_SetString(PyExc_RuntimeError, "Connection is already initialised");
        return -1;
    }
    connection_state& state = *self->state;
    try {
        state.box = py_ref::checked(PyObject_GetAttrString(hooks, "_box"));
        state.unbox = py_ref::checked(PyObject_GetAttrString(hooks, "_unbox"));
        state.output = py_ref::checked(PyObject_GetAttrString(hooks, "_output"));
        state.error = py_ref::checked(PyObject_GetAttrString(hooks, "_error"));
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
    } catch (...) {
        set_python_error_from_current();
        return -1;
    }
    return 0;
}

int connection_traverse(connection_object* self, visitproc visit, void* arg) {
    if (self->state) {
        Py_VISIT(self->state->box.get());
        Py_VISIT(self->state->unbox.get());
        Py_VISIT(self->state->output.get());
        Py_VISIT(self->state->error.get());
    }
    return 0;
}

int connection_clear(connection_object* self) {
    if (self->state) {
        self->state->box.reset();
        self->state->unbox.reset();
        self->state->output.reset();
        self->state->error.reset();
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
    {"request", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(connection_request)), METH_FASTCALL,
     "request(op, fields=None, timeout=None) -> value: one round trip. Field 'o' is an object id, "
     "'v'/'k' boxed values, 'a' boxed arguments, 'kw' boxed keyword arguments; the rest is plain header data. Error replies raise what the owner's _error makes of them."},
    {"post", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(connection_post)), METH_FASTCALL,
     "post(op, fields=None) -> id: send without waiting; the reply is dropped."},
    {"release", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(connection_release)), METH_FASTCALL,
     "release(oid, count): queue a release, sent in a batch later (or by flush())."},
    {"flush", reinterpret_cast<PyCFunction>(connection_flush), METH_NOARGS, "Send the queued releases now."},
    {"cancel_all", reinterpret_cast<PyCFunction>(connection_cancel_all), METH_NOARGS,
     "Ask the agent to interrupt every call that a thread is waiting for."},
    {"drain", reinterpret_cast<PyCFunction>(connection_drain), METH_NOARGS,
     "Write output that arrived while no call was waiting."},
    {"close", reinterpret_cast<PyCFunction>(connection_close), METH_NOARGS, "Close the socket; idempotent."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef connection_getset[] = {
    {"closed", reinterpret_cast<getter>(connection_closed), nullptr, "True once close() ran.", nullptr},
    {"requests", reinterpret_cast<getter>(connection_requests), nullptr,
     "Messages sent so far (each request is one round trip; posts are not waited for).", nullptr},
    {"pending_releases", reinterpret_cast<getter>(connection_pending_releases), nullptr,
     "Number of releases queued and not yet sent.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject connection_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

bool add_connection_type(PyObject* module) {
    connection_type.tp_name = "splitbrain._core.Connection";
    connection_type.tp_basicsize = sizeof(connection_object);
    connection_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    connection_type.tp_doc =
        "Connection(name, address, server_key, public_key, secret_key, session, liveness, hooks, keepalive=5.0)\n\n"
        "The channel to one agent. server_key None means plain text (a loopback --insecure agent).";
    connection_type.tp_new = connection_new;
    connection_type.tp_init = reinterpret_cast<initproc>(connection_init);
    connection_type.tp_dealloc = reinterpret_cast<destructor>(connection_dealloc);
    connection_type.tp_traverse = reinterpret_cast<traverseproc>(connection_traverse);
    connection_type.tp_clear = reinterpret_cast<inquiry>(connection_clear);
    connection_type.tp_methods = connection_methods;
    connection_type.tp_getset = connection_getset;
    if (PyType_Ready(&connection_type) < 0) return false;
    Py_INCREF(&connection_type);
    return PyModule_AddObject(module, "Connection", reinterpret_cast<PyObject*>(&connection_type)) == 0;
}

}  // namespace splitbrain_core
