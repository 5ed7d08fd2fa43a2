#include "worker.hpp"

#include "descriptors.hpp"

#include <unistd.h>

#include <chrono>
#include <iterator>
#include <optional>
#include <set>
#include <stdexcept>

namespace splitbrain::agent {

using splitcore::json;
using splitcore::errc;
using splitcore::py_ref;
using splitcore::python_error;

namespace {

// The most items one iter/next answer carries, whatever the client asks for.
constexpr std::uint64_t max_batch = 10000;

json bool_value(int truth) {
    if (truth < 0) throw python_error();
    return truth != 0;
}

json none_or_throw(int status) {
    if (status < 0) throw python_error();
    return nullptr;
}

py_ref attribute(PyObject* obj, const std::string& name) {
    return py_ref::checked(PyObject_GetAttrString(obj, name.c_str()));
}

std::uint64_t batch_size(const json& header) {
    const json* n = splitcore::optional_field(header, "n");
    if (n == nullptr) return 100;
    const auto value = splitcore::as_uint(*n);
    if (!value || *value == 0) throw splitcore::error(errc::bad_request, "field \"n\" must be a positive integer");
    return std::min(*value, max_batch);
}

// The exception class a client names in "exit": a builtin, or one from an already imported module.
py_ref exception_class(const std::string& qualified) {
    const auto dot = qualified.rfind('.');
    const std::string module = dot == std::string::npos ? "builtins" : qualified.substr(0, dot);
    const std::string name = dot == std::string::npos ? qualified : qualified.substr(dot + 1);
    PyObject* loaded = PyDict_GetItemString(PyImport_GetModuleDict(), module.c_str());
    if (loaded != nullptr) {
        py_ref found = py_ref::steal(PyObject_GetAttrString(loaded, name.c_str()));
        PyErr_Clear();
        if (found && PyExceptionClass_Check(found.get())) return found;
    }
    return py_ref::borrow(PyExc_Exception);
}

// Names a module does not rebind after import, by convention: ALL_CAPS (O_RDONLY, SEEK_SET) and
// os's platform constants. Everything else (tempfile.tempdir, sys.path) may change at run time,
// so the client fetches it when used instead of keeping the value of import time.
bool is_constant_name(const std::string& name) {
    static const std::set<std::string, std::less<>> known = {"sep",
                                                             "altsep",
                                                             "pathsep",
                                                             "curdir",
                                                             "pardir",
                                                             "extsep",
                                                             "linesep",
                                                             "devnull",
                                                             "defpath",
                                                             "name",
                                                             "supports_bytes_environ",
                                                             "__name__",
                                                             "__file__",
                                                             "__version__"};
    if (known.count(name) != 0) return true;
    if (name.rfind("__", 0) == 0) return false;
    bool letter = false;
    for (const char c : name) {
        if (c >= 'a' && c <= 'z') return false;
        letter = letter || (c >= 'A' && c <= 'Z');
    }
    return letter;
}

// os.fork(), os.forkpty() and os._exit() would fork or end this worker, the session's one
// process: each is replaced by a function raising not_on_a_slave (its text is the function's self).
PyObject* refuse(PyObject* text, PyObject* /*args*/, PyObject* /*kwargs*/) {
    PyErr_SetObject(PyExc_RuntimeError, text);
    return nullptr;
}

void refuse_process_calls() {
    static const auto function = reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&refuse));
    static PyMethodDef definitions[] = {{"fork", function, METH_VARARGS | METH_KEYWORDS, nullptr},
                                        {"forkpty", function, METH_VARARGS | METH_KEYWORDS, nullptr},
                                        {"_exit", function, METH_VARARGS | METH_KEYWORDS, nullptr}};
    static const char* const texts[] = {
        "os.fork() on a slave would fork the agent's worker that serves this session; start processes with "
        "subprocess (Popen, run) instead",
        "os.forkpty() (and pty.fork()) on a slave would fork the agent's worker that serves this session; start the "
        "program with subprocess and a pty from os.openpty() instead",
        "os._exit() on a slave would end the agent's worker that serves this session; end the session with "
        "slave.close(), or a child process with its own exit",
    };
    for (const char* module_name : {"posix", "os"}) {
        py_ref module = py_ref::checked(PyImport_ImportModule(module_name));
        for (std::size_t i = 0; i < std::size(definitions); ++i) {
            if (!PyObject_HasAttrString(module.get(), definitions[i].ml_name)) continue;
            py_ref message =
                py_ref::checked(PyUnicode_FromString(splitcore::tagged(errc::not_on_a_slave, texts[i]).c_str()));
            py_ref refused = py_ref::checked(PyCFunction_NewEx(&definitions[i], message.get(), module.get()));
            if (PyObject_SetAttrString(module.get(), definitions[i].ml_name, refused.get()) < 0) throw python_error();
        }
    }
}

// User code on the slave must not end or stop this worker with a signal short of killing it on
// purpose. A child that signals its parent (os.kill(os.getppid(), signal.SIGUSR1), a test that
// installed its handler on the master) finds a handler that does nothing for the signals whose
// default would end or stop the worker and which processes send each other (exec resets it to the
// default in the children). A signal the worker would send itself, its process group or everyone
// (os.kill, os.killpg, signal.raise_signal, signal.pthread_kill) that would end or stop it as things
// stand (SIGKILL, SIGSTOP, or a signal left at its default that ends the process) is
// not_on_a_slave instead; signal 0 and signals with a handler go through.
void guard_worker_signals() {
    const std::string tag = splitcore::tagged(errc::not_on_a_slave, "");
    py_ref globals = py_ref::checked(PyDict_New());
    if (PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) throw python_error();
    py_ref text = py_ref::checked(PyUnicode_FromString(tag.c_str()));
    if (PyDict_SetItemString(globals.get(), "TAG", text.get()) < 0) throw python_error();
    static const char source[] = R"PY(
import os, posix, signal

def stray_signal(signum, frame):
    """splitbrain's worker: a signal another process sent the worker, ignored (it would end the session)."""

for name in ("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGHUP", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGTSTP",
             "SIGTTIN", "SIGTTOU"):
    if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) == signal.SIG_DFL:
        signal.signal(getattr(signal, name), stray_signal)

HARMLESS = {signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT}

def _ends_worker(sig):
    sig = int(sig)
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        return True
    if sig == 0 or sig in HARMLESS:
        return False
    try:
        return signal.getsignal(sig) == signal.SIG_DFL
    except (ValueError, OSError):
        return False

def _refuse(call, sig):
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return RuntimeError(f"{TAG}{call} on a slave would end or stop the agent's worker that serves this session "
                        f"({name}: " + ("it cannot be caught" if int(sig) in (signal.SIGKILL, signal.SIGSTOP) else
                                        "its default action, no handler is installed") +
                        "); end the session with slave.close(), or signal a child process")

_kill, _killpg, _raise_signal, _pthread_kill = posix.kill, posix.killpg, signal.raise_signal, signal.pthread_kill

def kill(pid, signal, /):
    if (pid in (0, -1) or abs(pid) == posix.getpid() or pid == -posix.getpgrp()) and _ends_worker(signal):
        raise _refuse(f"os.kill({pid}, {int(signal)})", signal)
    return _kill(pid, signal)

def killpg(pgid, signal, /):
    if pgid in (0, posix.getpgrp()) and _ends_worker(signal):
        raise _refuse(f"os.killpg({pgid}, {int(signal)})", signal)
    return _killpg(pgid, signal)

def raise_signal(signalnum, /):
    if _ends_worker(signalnum):
        raise _refuse(f"signal.raise_signal({int(signalnum)})", signalnum)
    return _raise_signal(signalnum)

def pthread_kill(thread_id, signalnum, /):
    if _ends_worker(signalnum):
        raise _refuse(f"signal.pthread_kill({thread_id}, {int(signalnum)})", signalnum)
    return _pthread_kill(thread_id, signalnum)

for module, function, original in ((posix, kill, _kill), (os, kill, _kill), (posix, killpg, _killpg),
                                   (os, killpg, _killpg), (signal, raise_signal, _raise_signal),
                                   (signal, pthread_kill, _pthread_kill)):
    function.__module__, function.__doc__ = original.__module__, original.__doc__
    setattr(module, function.__name__, function)
)PY";
    py_ref code = py_ref::checked(Py_CompileString(source, "<splitbrain worker signals>", Py_file_input));
    py_ref done = py_ref::checked(PyEval_EvalCode(code.get(), globals.get(), globals.get()));
}

// Warnings raised on the slave reach the master's warnings machinery (its filters, assertWarns,
// catch_warnings): here every warning is kept (filter "always": the master's filters decide) instead
// of printed, at most max_warnings a request, and rides on the next reply as "wn" (docs/protocol.md).
constexpr Py_ssize_t max_warnings = 64;
PyObject* pending_warnings = nullptr;  // the list _showwarnmsg appends to; main thread, with the GIL

void keep_warnings() {
    py_ref globals = py_ref::checked(PyDict_New());
    if (PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) throw python_error();
    py_ref limit = py_ref::checked(PyLong_FromSsize_t(max_warnings));
    if (PyDict_SetItemString(globals.get(), "LIMIT", limit.get()) < 0) throw python_error();
    static const char source[] = R"PY(
import warnings

pending = []

def _showwarnmsg(msg):
    """splitbrain's worker: the warning goes to the master with the reply of the call that raised it."""
    if len(pending) < LIMIT:
        category = msg.category
        pending.append((getattr(category, "__module__", "builtins"), getattr(category, "__qualname__", "Warning"),
                        str(msg.message), str(msg.filename), int(msg.lineno or 0)))

warnings._showwarnmsg = _showwarnmsg
warnings.simplefilter("always")
)PY";
    py_ref code = py_ref::checked(Py_CompileString(source, "<splitbrain worker warnings>", Py_file_input));
    py_ref done = py_ref::checked(PyEval_EvalCode(code.get(), globals.get(), globals.get()));
    PyObject* list = PyDict_GetItemString(globals.get(), "pending");
    if (list == nullptr || !PyList_Check(list)) throw std::logic_error("keep_warnings: no list");
    Py_INCREF(list);
    pending_warnings = list;
}

// [[category module, qualname, message, filename, lineno], ...] kept since the last reply; empties it.
json take_warnings() {
    json taken = json::array();
    if (pending_warnings == nullptr || PyList_GET_SIZE(pending_warnings) == 0) return taken;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pending_warnings); ++i) {
        PyObject* item = PyList_GET_ITEM(pending_warnings, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 5) continue;
        json entry = json::array();
        for (Py_ssize_t k = 0; k < 4; ++k) entry.push_back(splitcore::str_or(PyTuple_GET_ITEM(item, k), ""));
        const long long line = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 4));
        if (line == -1 && PyErr_Occurred()) PyErr_Clear();
        entry.push_back(line < 0 ? 0 : line);
        taken.push_back(std::move(entry));
    }
    if (PyList_SetSlice(pending_warnings, 0, PyList_GET_SIZE(pending_warnings), nullptr) < 0) PyErr_Clear();
    return taken;
}

}  // namespace

worker::worker() {
    m_handler["hello"] = &worker::hello;
    m_handler["import"] = &worker::import_module;
    m_handler["getattr"] = &worker::getattr;
    m_handler["setattr"] = &worker::setattr;
    m_handler["delattr"] = &worker::delattr;
    m_handler["call"] = &worker::call;
    m_handler["run"] = &worker::run;
    m_handler["getitem"] = &worker::getitem;
    m_handler["setitem"] = &worker::setitem;
    m_handler["delitem"] = &worker::delitem;
    m_handler["len"] = &worker::len;
    m_handler["bool"] = &worker::truth;
    m_handler["hash"] = &worker::hash;
    m_handler["repr"] = &worker::repr;
    m_handler["str"] = &worker::str;
    m_handler["dir"] = &worker::dir;
    m_handler["cmp"] = &worker::compare;
    m_handler["iter"] = &worker::iter;
    m_handler["next"] = &worker::next;
    m_handler["enter"] = &worker::enter;
    m_handler["exit"] = &worker::exit;
    m_handler["release"] = &worker::release;
    m_handler["stats"] = &worker::stats;
    m_handler["bye"] = &worker::bye;
    m_handler["answer"] = &worker::answer;
    check_handlers();

    // Calls run as a line typed at the slave's prompt: a frame whose globals and locals are
    // __main__'s. A builtin that reads its caller's frame (eval or exec without globals, globals(),
    // locals(), vars()) then finds one, instead of failing with "SystemError: frame does not
    // exist", and what exec defines stays for the next eval.
    m_main = py_ref::borrow(PyModule_GetDict(py_ref::checked(PyImport_AddModule("__main__")).get()));
    refuse_process_calls();
    guard_worker_signals();
    keep_warnings();
    install_local_objects();
    m_call = py_ref::checked(Py_CompileString(
        "__splitbrain_call__[0](*__splitbrain_call__[1], **__splitbrain_call__[2])", "<splitbrain>", Py_eval_input));
}

// One handler per operation the main thread answers, and no other: the table and the constructor
// cannot drift apart unnoticed (the worker would not start).
void worker::check_handlers() const {
    for (const splitcore::operation& op : splitcore::operations) {
        if (op.answered_by == splitcore::tier::main_thread && m_handler.count(op.name) == 0) {
            throw std::logic_error("no handler for the operation \"" + std::string(op.name) + "\"");
        }
    }
    for (const auto& registered : m_handler) {
        const splitcore::operation* op = splitcore::op::find(registered.first);
        if (op == nullptr || op->answered_by != splitcore::tier::main_thread) {
            throw std::logic_error("a handler for \"" + registered.first +
                                   "\", which is not an operation of the main thread");
        }
    }
}

splitcore::message worker::dispatch(const json& header, const std::vector<zmq::message_t>& frames) {
    splitcore::message reply = dispatch_one(header, frames);
    // Proxies of the master's objects that died meanwhile ride on the reply (callbacks.cpp).
    if (json released = take_local_releases(); !released.empty()) reply.header["rl"] = std::move(released);
    if (json warned = take_warnings(); !warned.empty()) reply.header["wn"] = std::move(warned);
    return reply;
}

splitcore::message worker::failure_reply(std::uint64_t id, const python_error& e) {
    if (auto leased = m_lease_guard.leased_detail(e.value())) {
        return {splitcore::error_reply(id, splitcore::error_value(errc::leased, *leased)), {}};
    }
    return {splitcore::error_reply(id, splitcore::describe_exception(e, *this)), {}};
}

splitcore::message worker::dispatch_one(const json& header, const std::vector<zmq::message_t>& frames) {
    std::uint64_t id = 0;
    splitcore::encoder out(*this);
    try {
        id = splitcore::request_id(header);
        const std::string& op = splitcore::string_field(header, "op");
        const auto found = m_handler.find(op);
        if (found == m_handler.end()) throw splitcore::error(errc::unknown_op, "no operation \"" + op + "\"");
        splitcore::decoder in(*this, frames);
        m_serving.push_back(id);  // a callback made during this request belongs to it
        struct served {
            std::vector<std::uint64_t>& ids;
            ~served() { ids.pop_back(); }
        } done{m_serving};
        m_call_failed.reset();
        json result = (this->*found->second)(request{header, in, out});
        if (m_call_failed) {  // the call raised: call_with returned instead of throwing
            const python_error failed = std::move(*m_call_failed);
            m_call_failed.reset();
            (void)out.take_frames();
            return failure_reply(id, failed);
        }
        json reply = splitcore::ok_reply(id, std::move(result));
        if (json written = in.changed_writables(out); !written.empty()) reply["w"] = std::move(written);
        return {std::move(reply), out.take_frames()};
    } catch (const python_error& e) {
        (void)out.take_frames();
        return failure_reply(id, e);
    } catch (const splitcore::error& e) {
        return {splitcore::error_reply(id, splitcore::error_value(e)), {}};
    } catch (const std::exception& e) {
        PyErr_Clear();
        return {splitcore::error_reply(id, splitcore::error_value(errc::bad_request, e.what())), {}};
    }
}

// ---------------------------------------------------------------------------------------------
// object table

json worker::box_reference(PyObject* obj) {
    if (is_local(obj)) {  // the master's own object goes back as itself
        py_ref eid = py_ref::checked(PyObject_GetAttrString(obj, "_sb_eid"));
        const unsigned long long value = PyLong_AsUnsignedLongLong(eid.get());
        splitcore::throw_if_error();
        return json{{"$l", value}};
    }
    if (PyExceptionInstance_Check(obj)) {  // by value, as the client raises ours: onerror= gets an OSError
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(obj)), obj);
        const python_error instance;
        json error = splitcore::describe_exception(instance, *this);
        error.erase("tb");  // it was not raised here
        return json{{"$e", std::move(error)}};
    }
    std::uint64_t oid;
    if (const auto known = m_oid_of.find(obj); known != m_oid_of.end()) {
        oid = known->second;
        ++m_objects[oid].count;
    } else {
        oid = m_next_oid++;
        m_objects[oid] = entry{py_ref::borrow(obj), 1};
        m_oid_of[obj] = oid;
    }
    json ref{{"$r", oid}, {"t", splitcore::qualified_name(Py_TYPE(obj))}, {"cl", PyCallable_Check(obj) != 0}};
    // A class says which it is: the client then uses its own exception classes, and answers
    // isinstance/issubclass with local objects against its own twin of the class.
    if (PyType_Check(obj)) ref["k"] = splitcore::class_lineage(reinterpret_cast<PyTypeObject*>(obj));
    return ref;
}

py_ref worker::unbox_reference(const json& ref) {
    const auto oid = splitcore::as_uint(ref.at("$r"));
    const auto found = oid ? m_objects.find(*oid) : m_objects.end();
    if (found == m_objects.end()) {
        throw splitcore::error(errc::bad_object, "no object " + ref.at("$r").dump() +
                                                     " in this session (released, or from another session)");
    }
    return py_ref::borrow(found->second.object.get());
}

void worker::clear_objects() {
    m_oid_of.clear();
    // Move out first: a __del__ running during the clear must not see a half-destroyed table.
    auto objects = std::move(m_objects);
    m_objects.clear();
    objects.clear();
}

py_ref worker::request::object(const char* field) const {
    const json& ref = splitcore::field(header, field);
    py_ref value = in.decode(ref);
    return value;
}

py_ref worker::request::value(const char* field) const { return in.decode(splitcore::field(header, field)); }

const std::string& worker::request::name(const char* field) const { return splitcore::string_field(header, field); }

// ---------------------------------------------------------------------------------------------
// operations

namespace {
// The steady clock the IO thread checks a request's "until" against (the client learns it here).
std::uint64_t agent_clock_us() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}
}  // namespace

json worker::hello(const request& r) {
    release_low_descriptors();  // a request came through the supervisor's connection: it is up
    m_modules.set(splitcore::optional_field(r.header, "limits"));
    m_lease_guard.set(splitcore::optional_field(r.header, "limits"));
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    py_ref sys = py_ref::checked(PyImport_ImportModule("sys"));
    py_ref os = py_ref::checked(PyImport_ImportModule("os"));
    const json* resumed = splitcore::optional_field(r.header, "resumed");
    return json{{"resumed", resumed != nullptr && resumed->is_boolean() && resumed->get<bool>()},
                {"pid", ::getpid()},
                {"platform", splitcore::str_or(attribute(sys.get(), "platform").get(), "")},
                {"python", splitcore::str_or(attribute(sys.get(), "version").get(), "")},
                {"hostname", host},
                {"sep", splitcore::str_or(attribute(os.get(), "sep").get(), "/")},
                {"flavour", splitcore::str_or(attribute(os.get(), "name").get(), "posix") == "nt" ? "nt" : "posix"},
                {"executable", splitcore::str_or(attribute(sys.get(), "executable").get(), "")},
                {"clock", agent_clock_us()}};
}

json worker::import_module(const request& r) {
    m_modules.check(r.name());
    py_ref module = py_ref::checked(PyImport_ImportModule(r.name().c_str()));
    m_lease_guard.after_import();
    json callables = json::array();
    json constants = json::array();
    json modules = json::array();
    json exceptions = json::array();
    // The module's own namespace, not dir(): no lazy __getattr__ runs, nothing is imported.
    PyObject* names = PyModule_Check(module.get()) ? PyModule_GetDict(module.get()) : nullptr;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (names != nullptr && PyDict_Next(names, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) continue;
        const std::string name = splitcore::str_or(key, "");
        if (PyModule_Check(value)) {
            modules.push_back(name);
        } else if (PyExceptionClass_Check(value)) {  // the client uses its own classes: none to fetch
            exceptions.push_back(name);
            exceptions.push_back(splitcore::class_lineage(reinterpret_cast<PyTypeObject*>(value)));
        } else if (PyCallable_Check(value)) {
            callables.push_back(name);
        } else if (is_constant_name(name) && splitcore::is_frozen_plain(value)) {
            constants.push_back(name);
            constants.push_back(r.out.encode(value));
        }
    }
    return json{{"mod", r.out.encode(module.get())},
                {"callables", std::move(callables)},
                {"consts", {{"$d", std::move(constants)}}},
                {"modules", std::move(modules)},
                {"exceptions", std::move(exceptions)}};
}

json worker::getattr(const request& r) {
    py_ref target = r.object();
    return r.out.encode(attribute(target.get(), r.name()).get());
}

json worker::setattr(const request& r) {
    py_ref target = r.object();
    py_ref value = r.value("v");
    return none_or_throw(PyObject_SetAttrString(target.get(), r.name().c_str(), value.get()));
}

json worker::delattr(const request& r) {
    py_ref target = r.object();
    return none_or_throw(PyObject_DelAttrString(target.get(), r.name().c_str()));
}

json worker::call(const request& r) {
    py_ref target = r.object();
    if (const json* path = splitcore::optional_field(r.header, "path"); path != nullptr && !path->is_null()) {
        if (!path->is_array()) throw splitcore::error(errc::bad_request, "field \"path\" must be a list of names");
        for (const json& step : *path) {
            if (!step.is_string()) throw splitcore::error(errc::bad_request, "field \"path\" must be a list of names");
            target = attribute(target.get(), step.get_ref<const std::string&>());
        }
    }
    return call_with(r, target.get());
}

// box.run: the function is defined from its source in a namespace of its own (its modules imported,
// its free variables bound as globals), then called as `call` calls.
json worker::run(const request& r) {
    const std::string& src = splitcore::string_field(r.header, "src");
    const std::string& name = splitcore::string_field(r.header, "name");
    if (src.find('\0') != std::string::npos) throw splitcore::error(errc::bad_request, "field \"src\" holds a NUL");
    py_ref globals = py_ref::checked(PyDict_New());
    if (PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0) throw python_error();
    py_ref module_name = py_ref::checked(PyUnicode_FromString("__splitbrain_run__"));
    if (PyDict_SetItemString(globals.get(), "__name__", module_name.get()) < 0) throw python_error();
    for (const char* field : {"mods", "free"}) {
        const json* given = splitcore::optional_field(r.header, field);
        if (given == nullptr || given->is_null()) continue;
        py_ref names = r.in.decode(*given);
        if (!PyDict_Check(names.get())) {
            throw splitcore::error(errc::bad_request,
                                   std::string("field \"") + field + "\" must be a {\"$d\": [...]} map");
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(names.get(), &pos, &key, &value)) {
            py_ref bound = py_ref::borrow(value);
            if (std::string(field) == "mods") {
                m_modules.check(splitcore::str_or(value, ""));
                bound = py_ref::checked(PyImport_Import(value));
            }
            if (PyDict_SetItem(globals.get(), key, bound.get()) < 0) throw python_error();
        }
    }
    const std::string filename = "<box.run " + name + ">";
    py_ref code = py_ref::checked(Py_CompileString(src.c_str(), filename.c_str(), Py_file_input));
    py_ref defined = py_ref::checked(PyEval_EvalCode(code.get(), globals.get(), globals.get()));
    PyObject* function = PyDict_GetItemString(globals.get(), name.c_str());
    if (function == nullptr || !PyCallable_Check(function)) {
        throw splitcore::error(errc::bad_request, "field \"src\" does not define a function \"" + name + "\"");
    }
    py_ref target = py_ref::borrow(function);
    return call_with(r, target.get());
}

json worker::call_with(const request& r, PyObject* target) {
    py_ref args;
    if (const json* a = splitcore::optional_field(r.header, "a"); a != nullptr && !a->is_null()) {
        if (!a->is_array()) throw splitcore::error(errc::bad_request, "field \"a\" must be a list of values");
        args = py_ref::checked(PySequence_Tuple(r.in.decode(*a).get()));
    } else {
        args = py_ref::checked(PyTuple_New(0));
    }
    py_ref kwargs;
    if (const json* k = splitcore::optional_field(r.header, "k"); k != nullptr && !k->is_null()) {
        kwargs = r.in.decode(*k);
        if (!PyDict_Check(kwargs.get()))
            throw splitcore::error(errc::bad_request, "field \"k\" must be a {\"$d\": [...]} map");
    }
    if (!kwargs) kwargs = py_ref::checked(PyDict_New());
    refuse_callbacks_in_child(kwargs.get());
    py_ref call = py_ref::checked(PyTuple_Pack(3, target, args.get(), kwargs.get()));
    if (PyDict_SetItemString(m_main.get(), "__splitbrain_call__", call.get()) < 0) throw python_error();
    py_ref result = py_ref::steal(PyEval_EvalCode(m_call.get(), m_main.get(), m_main.get()));
    std::optional<python_error> failed;
    // fetched before the clean-up below may touch the error state; described, never logged
    if (!result) failed.emplace(python_error::type_name_only);
    if (PyDict_DelItemString(m_main.get(), "__splitbrain_call__") < 0) PyErr_Clear();  // the call may have removed it
    if (failed) {  // dispatch_one takes it: no C++ throw through the handlers on a call's ordinary failure
        m_call_failed = std::move(failed);
        return json();
    }
    return r.out.encode(result.get());
}

json worker::getitem(const request& r) {
    py_ref target = r.object();
    py_ref key = r.value("k");
    py_ref result = py_ref::checked(PyObject_GetItem(target.get(), key.get()));
    return r.out.encode(result.get());
}

json worker::setitem(const request& r) {
    py_ref target = r.object();
    py_ref key = r.value("k");
    py_ref value = r.value("v");
    return none_or_throw(PyObject_SetItem(target.get(), key.get(), value.get()));
}

json worker::delitem(const request& r) {
    py_ref target = r.object();
    py_ref key = r.value("k");
    return none_or_throw(PyObject_DelItem(target.get(), key.get()));
}

json worker::len(const request& r) {
    py_ref target = r.object();
    const Py_ssize_t length = PyObject_Length(target.get());
    if (length < 0) throw python_error();
    return static_cast<std::int64_t>(length);
}

json worker::truth(const request& r) { return bool_value(PyObject_IsTrue(r.object().get())); }

json worker::hash(const request& r) {
    py_ref target = r.object();
    const Py_hash_t value = PyObject_Hash(target.get());
    if (value == -1 && PyErr_Occurred()) throw python_error();
    return static_cast<std::int64_t>(value);
}

json worker::repr(const request& r) {
    py_ref text = py_ref::checked(PyObject_Repr(r.object().get()));
    return r.out.encode(text.get());
}

json worker::str(const request& r) {
    py_ref text = py_ref::checked(PyObject_Str(r.object().get()));
    return r.out.encode(text.get());
}

json worker::dir(const request& r) {
    py_ref names = py_ref::checked(PyObject_Dir(r.object().get()));
    json result = json::array();
    py_ref iterator = py_ref::checked(PyObject_GetIter(names.get()));
    while (py_ref name = py_ref::steal(PyIter_Next(iterator.get()))) {
        if (PyUnicode_Check(name.get())) result.push_back(splitcore::str_or(name.get(), ""));
    }
    splitcore::throw_if_error();
    return result;
}

json worker::compare(const request& r) {
    static const std::map<std::string, int, std::less<>> operators = {{"eq", Py_EQ}, {"ne", Py_NE}, {"lt", Py_LT},
                                                                      {"le", Py_LE}, {"gt", Py_GT}, {"ge", Py_GE}};
    const auto found = operators.find(r.name("cmp"));
    if (found == operators.end())
        throw splitcore::error(errc::bad_request, "field \"cmp\" must be one of eq ne lt le gt ge");
    py_ref left = r.object();
    py_ref right = r.value("v");
    py_ref result = py_ref::checked(PyObject_RichCompare(left.get(), right.get(), found->second));
    return r.out.encode(result.get());
}

json worker::take_items(PyObject* iterator, const request& r, bool& done) {
    const std::uint64_t n = batch_size(r.header);  // checked again: cheap, and next() needs it
    json items = json::array();
    done = false;
    while (items.size() < n) {
        py_ref item = py_ref::steal(PyIter_Next(iterator));
        if (!item) {
            splitcore::throw_if_error();
            done = true;
            break;
        }
        items.push_back(r.out.encode(item.get()));
    }
    return items;
}

json worker::iter(const request& r) {
    (void)batch_size(r.header);  // a bad "n" is the client's mistake, whatever the object is
    py_ref iterator = py_ref::checked(PyObject_GetIter(r.object().get()));
    bool done = false;
    json items = take_items(iterator.get(), r, done);
    return json{
        {"it", done ? json(nullptr) : r.out.encode(iterator.get())}, {"items", std::move(items)}, {"done", done}};
}

json worker::next(const request& r) {
    py_ref iterator = r.object();
    if (!PyIter_Check(iterator.get())) {
        throw python_error::make(PyExc_TypeError,
                                 std::string("'") + Py_TYPE(iterator.get())->tp_name + "' object is not an iterator");
    }
    bool done = false;
    json items = take_items(iterator.get(), r, done);
    return json{{"items", std::move(items)}, {"done", done}};
}

json worker::enter(const request& r) {
    py_ref result = py_ref::checked(PyObject_CallMethod(r.object().get(), "__enter__", nullptr));
    return r.out.encode(result.get());
}

json worker::exit(const request& r) {
    py_ref target = r.object();
    const json& exc = splitcore::field(r.header, "exc");
    py_ref result;
    if (exc.is_null()) {
        result = py_ref::checked(PyObject_CallMethod(target.get(), "__exit__", "OOO", Py_None, Py_None, Py_None));
    } else {
        if (!exc.is_array() || exc.size() != 2 || !exc[0].is_string() || !exc[1].is_string()) {
            throw splitcore::error(errc::bad_request, "field \"exc\" must be null or [type name, message]");
        }
        py_ref type = exception_class(exc[0].get<std::string>());
        py_ref instance = py_ref::checked(PyObject_CallFunction(type.get(), "s", exc[1].get<std::string>().c_str()));
        result =
            py_ref::checked(PyObject_CallMethod(target.get(), "__exit__", "OOO", type.get(), instance.get(), Py_None));
    }
    return bool_value(PyObject_IsTrue(result.get()));
}

json worker::release(const request& r) {
    const json& ids = splitcore::field(r.header, "ids");
    if (!ids.is_array()) throw splitcore::error(errc::bad_request, "field \"ids\" must be [[oid, count], ...]");
    std::vector<py_ref> dropped;  // destroyed after the table is consistent again
    for (const json& pair : ids) {
        if (!pair.is_array() || pair.size() != 2 || !splitcore::as_uint(pair[0]) || !splitcore::as_uint(pair[1])) {
            throw splitcore::error(errc::bad_request, "field \"ids\" must be [[oid, count], ...]");
        }
        const auto found = m_objects.find(*splitcore::as_uint(pair[0]));
        if (found == m_objects.end()) continue;  // already gone: releases are batched and may cross
        const std::uint64_t count = *splitcore::as_uint(pair[1]);
        if (count < found->second.count) {
            found->second.count -= count;
            continue;
        }
        m_oid_of.erase(found->second.object.get());
        dropped.push_back(std::move(found->second.object));
        m_objects.erase(found);
    }
    return nullptr;
}

void worker::rehearse_first_requests() {
    const std::vector<zmq::message_t> no_frames;
    for (const char* name : {"os", "posixpath"}) {
        (void)dispatch_one(json{{"op", "import"}, {"id", 1}, {"name", name}}, no_frames);
    }
    clear_objects();
    m_next_oid = 1;
    PyErr_Clear();
}

json worker::stats(const request&) { return json{{"objects", m_objects.size()}}; }

json worker::bye(const request&) {
    m_finished = true;
    return nullptr;
}

}  // namespace splitbrain::agent
