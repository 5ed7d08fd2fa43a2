// The master's objects on the slave, by reference (docs/protocol.md, "Callbacks"): a "$l" from the
// client becomes a proxy (module _splitbrain_local, below), and every use of the proxy is a callback
// request to the client, sent and answered while the call that received it runs. The wait for the
// answer serves the session's nested requests (serve_loop.cpp): a callback may call the slave again.
#include "worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <string>

namespace splitbrain::agent {

using splitcore::errc;
using splitcore::json;
using splitcore::py_ref;
using splitcore::python_error;

namespace {

// Callbacks waiting for their answer, one inside another's nested call: beyond this, refused.
constexpr int max_callback_depth = 32;

// The proxies' Python side. `ask(op, proxy, name, args, kwargs)` is worker::callback. One class per
// set of protocols the master's type has (sent with the reference, "p"), so that a proxy has exactly
// the special methods of the object it stands for: os.fspath, len, iter, with, == and hash behave as
// they do on the master.
constexpr const char* local_source = R"PY(
import weakref

FORWARDED = frozenset({
    "__len__", "__contains__", "__getitem__", "__setitem__", "__delitem__", "__iter__", "__next__",
    "__reversed__", "__fspath__", "__enter__", "__exit__", "__bool__", "__index__", "__int__",
    "__float__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__add__",
    "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__radd__", "__rsub__", "__rmul__",
    "__and__", "__or__", "__xor__", "__neg__", "__abs__",
})
released = []                            # (eid, count) of proxies gone, sent with the next message
_proxies = weakref.WeakValueDictionary()  # eid -> its one proxy
_classes = {}


class LocalObject:
    """An object of the master, by reference: attribute access, calls and protocols are callbacks to
    the master, answered while the call that received the object runs."""

    __slots__ = ("_sb_eid", "_sb_type", "_sb_refs", "__weakref__")

    def __getattr__(self, name):
        if name.startswith("_sb_"):
            raise AttributeError(name)
        return ask("getattr", self, name, None, None)

    def __setattr__(self, name, value):
        if name.startswith("_sb_"):
            object.__setattr__(self, name, value)
        else:
            ask("setattr", self, name, (value,), None)

    def __delattr__(self, name):
        ask("delattr", self, name, None, None)

    def __repr__(self):
        return ask("method", self, "__repr__", (), None)

    def __str__(self):
        return ask("method", self, "__str__", (), None)

    def __dir__(self):
        return ask("method", self, "__dir__", (), None)

    def __del__(self):
        released.append((self._sb_eid, self._sb_refs))


def _forward(name):
    def forward(self, *args, **kwargs):
        return ask("method", self, name, args, kwargs)
    forward.__name__ = forward.__qualname__ = name
    return forward


def _call(self, *args, **kwargs):
    return ask("call", self, None, args, kwargs)


def _iterate(self):
    items, rest = ask("iter", self, None, None, None)
    while True:
        yield from items
        if rest is None:
            return
        items, rest = ask("next", rest, None, None, None)


def _class(protocols, is_callable):
    cls = _classes.get((protocols, is_callable))
    if cls is None:
        namespace = {"__slots__": ()}
        for name in protocols:
            namespace[name] = _iterate if name == "__iter__" else _forward(name)
        if "__eq__" in protocols and "__hash__" not in protocols:
            namespace["__hash__"] = None  # as on the master: == without hash is unhashable
        if is_callable:
            namespace["__call__"] = _call
        cls = _classes[(protocols, is_callable)] = type("LocalObject", (LocalObject,), namespace)
    return cls


def make(eid, type_name, is_callable, protocols):
    proxy = _proxies.get(eid)
    if proxy is not None:
        proxy._sb_refs += 1
        return proxy
    cls = _class(frozenset(name for name in protocols if name in FORWARDED), bool(is_callable))
    proxy = object.__new__(cls)
    object.__setattr__(proxy, "_sb_eid", eid)
    object.__setattr__(proxy, "_sb_type", type_name)
    object.__setattr__(proxy, "_sb_refs", 1)
    _proxies[eid] = proxy
    return proxy
)PY";

PyObject* ask(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    auto* operations = static_cast<worker*>(PyCapsule_GetPointer(self, "splitbrain.worker"));
    if (operations == nullptr) return nullptr;
    if (nargs != 5 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "ask(op, proxy, name, args, kwargs)");
        return nullptr;
    }
    try {
        return operations->callback(splitcore::str_or(args[0], ""), args[1], args[2], args[3], args[4]).release();
    } catch (const python_error& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

PyMethodDef ask_definition = {"ask", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&ask)), METH_FASTCALL,
                              "ask(op, proxy, name, args, kwargs): one callback to the master"};

[[noreturn]] void unavailable(const std::string& detail) {
    throw python_error::make(PyExc_RuntimeError, splitcore::tagged(errc::callback_unavailable, detail));
}

// The class of an exception the master's callback raised, found here without importing anything: the
// first class of its MRO that a module already loaded (or builtins) has.
py_ref exception_class_of(const json& error) {
    const json* mro = splitcore::optional_field(error, "mro");
    const json* type = splitcore::optional_field(error, "type");
    if (mro == nullptr && type != nullptr && type->is_string()) {  // a fixed built-in comes without its MRO
        if (PyObject* builtin = splitcore::fixed_builtin_exception(type->get_ref<const std::string&>())) {
            return py_ref::borrow(builtin);
        }
    }
    if (mro != nullptr && mro->is_array()) {
        for (const json& entry : *mro) {
            if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_string()) continue;
            PyObject* module = PyDict_GetItemString(PyImport_GetModuleDict(), entry[0].get<std::string>().c_str());
            if (module == nullptr || entry[0].get<std::string>() == "__main__") continue;
            py_ref found = py_ref::borrow(module);
            const std::string qualname = entry[1].get<std::string>();
            for (std::size_t start = 0; found && start <= qualname.size();) {
                const std::size_t end = std::min(qualname.find('.', start), qualname.size());
                found = py_ref::steal(PyObject_GetAttrString(found.get(), qualname.substr(start, end - start).c_str()));
                start = end + 1;
            }
            PyErr_Clear();
            if (found && PyExceptionClass_Check(found.get())) return found;
        }
    }
    return py_ref::borrow(PyExc_Exception);
}

// Raises, as a Python exception here, the ERROR the master's callback answered with: its class (or
// the nearest one this side has), its args, an OSError's errno, strerror and filenames, and the
// token of the original on the master, so that it goes back as that very exception.
[[noreturn]] void raise_answer_error(const json& error, splitcore::decoder& in) {
    if (!error.is_object()) throw splitcore::error(errc::bad_request, "an answer's \"e\" must be an ERROR map");
    py_ref type = exception_class_of(error);
    py_ref args = py_ref::checked(PyList_New(0));
    if (const json* given = splitcore::optional_field(error, "args"); given != nullptr && given->is_array()) {
        for (const json& arg : *given) {
            py_ref value = in.decode(arg);
            if (PyList_Append(args.get(), value.get()) < 0) throw python_error();
        }
    }
    const json* err = splitcore::optional_field(error, "errno");
    if (err != nullptr && err->is_number_integer() &&
        PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type.get()), reinterpret_cast<PyTypeObject*>(PyExc_OSError))) {
        args = py_ref::checked(PyList_New(0));
        py_ref number = py_ref::checked(PyLong_FromLongLong(err->get<long long>()));
        if (PyList_Append(args.get(), number.get()) < 0) throw python_error();
        const json* strerror = splitcore::optional_field(error, "strerror");
        py_ref text = strerror != nullptr && strerror->is_string()
                          ? py_ref::checked(PyUnicode_FromString(strerror->get<std::string>().c_str()))
                          : py_ref::borrow(Py_None);
        if (PyList_Append(args.get(), text.get()) < 0) throw python_error();
        for (const char* field : {"filename", "filename2"}) {
            const json* name = splitcore::optional_field(error, field);
            if (name == nullptr || name->is_null()) break;
            py_ref value = in.decode(*name);
            if (std::string(field) == "filename2" && PyList_Append(args.get(), Py_None) < 0) throw python_error();
            if (PyList_Append(args.get(), value.get()) < 0) throw python_error();
        }
    }
    py_ref tuple = py_ref::checked(PyList_AsTuple(args.get()));
    py_ref instance = py_ref::steal(PyObject_Call(type.get(), tuple.get(), nullptr));
    if (!instance || !PyExceptionInstance_Check(instance.get())) {
        PyErr_Clear();
        const json* message = splitcore::optional_field(error, "msg");
        const std::string text = message != nullptr && message->is_string() ? message->get<std::string>() : "";
        type = py_ref::borrow(PyExc_Exception);
        instance = py_ref::checked(PyObject_CallFunction(type.get(), "s", text.c_str()));
    }
    if (const json* origin = splitcore::optional_field(error, "origin");
        origin != nullptr && origin->is_number_unsigned()) {
        py_ref token = py_ref::checked(PyLong_FromUnsignedLongLong(origin->get<std::uint64_t>()));
        if (PyObject_SetAttrString(instance.get(), "__splitbrain_origin__", token.get()) < 0) PyErr_Clear();
    }
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(instance.get())), instance.get());
    throw python_error();
}

}  // namespace

void worker::install_local_objects() {
    py_ref module = py_ref::checked(PyModule_New("_splitbrain_local"));
    PyObject* names = PyModule_GetDict(module.get());
    if (PyDict_SetItemString(names, "__builtins__", PyEval_GetBuiltins()) < 0) throw python_error();
    py_ref self = py_ref::checked(PyCapsule_New(this, "splitbrain.worker", nullptr));
    py_ref function = py_ref::checked(PyCFunction_NewEx(&ask_definition, self.get(), nullptr));
    if (PyDict_SetItemString(names, "ask", function.get()) < 0) throw python_error();
    py_ref defined = py_ref::checked(PyRun_String(local_source, Py_file_input, names, names));
    m_local_base = py_ref::checked(PyObject_GetAttrString(module.get(), "LocalObject"));
    if (PyDict_SetItemString(PyImport_GetModuleDict(), "_splitbrain_local", module.get()) < 0) throw python_error();
    m_local_module = std::move(module);
}

bool worker::is_local(PyObject* obj) const {
    return m_local_base && PyObject_TypeCheck(obj, reinterpret_cast<PyTypeObject*>(m_local_base.get()));
}

py_ref worker::unbox_local(const json& ref) {
    const auto eid = splitcore::as_uint(ref.at("$l"));
    if (!eid) throw splitcore::error(errc::bad_request, "a \"$l\" must be an unsigned integer");
    const json* type = splitcore::optional_field(ref, "t");
    const json* protocols = splitcore::optional_field(ref, "p");
    const json* is_callable = splitcore::optional_field(ref, "cl");
    py_ref names = py_ref::checked(PyTuple_New(0));
    if (protocols != nullptr && protocols->is_array()) {
        names = py_ref::checked(PyTuple_New(static_cast<Py_ssize_t>(protocols->size())));
        Py_ssize_t i = 0;
        for (const json& name : *protocols) {
            py_ref text =
                py_ref::checked(PyUnicode_FromString(name.is_string() ? name.get<std::string>().c_str() : ""));
            PyTuple_SET_ITEM(names.get(), i++, text.release());
        }
    }
    py_ref make = py_ref::checked(PyObject_GetAttrString(m_local_module.get(), "make"));
    py_ref py_eid = py_ref::checked(PyLong_FromUnsignedLongLong(*eid));
    py_ref py_type = py_ref::checked(PyUnicode_FromString(
        type != nullptr && type->is_string() ? type->get<std::string>().c_str() : "builtins.object"));
    PyObject* callable =
        is_callable != nullptr && is_callable->is_boolean() && is_callable->get<bool>() ? Py_True : Py_False;
    PyObject* args[] = {py_eid.get(), py_type.get(), callable, names.get()};
    return py_ref::checked(PyObject_Vectorcall(make.get(), args, 4, nullptr));
}

// A builtin class, an exception class or a method of a builtin class the client named (its own would
// mean nothing here: `isinstance(0, int)` with the master's int is False): this interpreter's object
// of that module and qualified name. The client names only the standard library's.
py_ref worker::unbox_named(const json& name) {
    if (!name.is_array() || name.size() != 2 || !name[0].is_string() || !name[1].is_string()) {
        throw splitcore::error(errc::bad_request, "a \"$n\" must be [module, qualified name]");
    }
    const std::string& module = name[0].get_ref<const std::string&>();
    const std::string& qualname = name[1].get_ref<const std::string&>();
    const std::string what = module + "." + qualname;
    const auto missing = [&what](const std::string& why) {
        return splitcore::error(errc::not_transferable, "the master's " + what + " crosses by name, and " + why +
                                                            "; pass plain data, or create the object on the slave");
    };
    py_ref found = py_ref::steal(PyImport_ImportModule(module.c_str()));
    if (!found) {
        PyErr_Clear();
        throw missing("this slave's Python has no module " + module);
    }
    for (std::size_t start = 0; start <= qualname.size();) {
        const std::size_t end = std::min(qualname.find('.', start), qualname.size());
        found = py_ref::steal(PyObject_GetAttrString(found.get(), qualname.substr(start, end - start).c_str()));
        if (!found) {
            PyErr_Clear();
            throw missing("this slave's Python has none");
        }
        start = end + 1;
    }
    py_ref own_qualname = py_ref::steal(PyObject_GetAttrString(found.get(), "__qualname__"));
    py_ref own_module =
        PyType_Check(found.get()) ? py_ref::steal(PyObject_GetAttrString(found.get(), "__module__")) : py_ref();
    PyErr_Clear();
    const bool same = own_qualname && splitcore::str_or(own_qualname.get(), "") == qualname &&
                      (!PyType_Check(found.get()) || (own_module && splitcore::str_or(own_module.get(), "") == module));
    if (!same) throw missing("this slave's " + what + " is another object (an alias or a replacement)");
    return found;
}

json worker::take_local_releases() {
    json pairs = json::array();
    if (!m_local_module) return pairs;
    py_ref released = py_ref::steal(PyObject_GetAttrString(m_local_module.get(), "released"));
    if (!released || !PyList_Check(released.get())) {
        PyErr_Clear();
        return pairs;
    }
    const Py_ssize_t n = PyList_GET_SIZE(released.get());
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* pair = PyList_GET_ITEM(released.get(), i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) continue;
        const unsigned long long eid = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(pair, 0));
        const unsigned long long count = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(pair, 1));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            continue;
        }
        pairs.push_back(json::array({eid, count}));
    }
    if (PyList_SetSlice(released.get(), 0, n, nullptr) < 0) PyErr_Clear();
    return pairs;
}

// preexec_fn runs in the child, between fork and exec, on the slave: no callback can reach the master
// from there (the child has no session), so a master's function there is refused before the fork.
void worker::refuse_callbacks_in_child(PyObject* kwargs) const {
    PyObject* preexec = PyDict_GetItemString(kwargs, "preexec_fn");
    if (preexec == nullptr || !is_local(preexec)) return;
    unavailable(
        "preexec_fn= runs in the child process on the slave, between fork and exec, where a function of "
        "the master cannot be called back; do that set-up in the child itself (start_new_session=True, "
        "process_group=, user=, umask=, or a shell command)");
}

py_ref worker::callback(const std::string& op, PyObject* target, PyObject* name, PyObject* args, PyObject* kwargs) {
    if (::getpid() != m_pid) {
        unavailable(
            "a function or object of the master was used in a child process of the slave's worker (after "
            "a fork); only the worker's main thread, during the call that received it, can call back");
    }
    if (!::pthread_equal(::pthread_self(), m_main_thread)) {
        unavailable(
            "a function or object of the master was used from another thread on the slave; only the call "
            "that received it, on the worker's main thread, can call back to the master");
    }
    if (m_serving.empty()) {
        unavailable(
            "a function or object of the master was used on the slave after the call that received it "
            "returned (kept by atexit.register, a registry or a thread there); pass it again in each call, "
            "or run that code on the master");
    }
    if (m_callback_depth >= max_callback_depth) {
        unavailable("callbacks to the master nest deeper than " + std::to_string(max_callback_depth) +
                    " (a callback that calls the slave, whose code calls back, ...)");
    }
    if (!is_local(target)) throw python_error::make(PyExc_TypeError, "ask() needs a proxy of a master's object");
    py_ref eid = py_ref::checked(PyObject_GetAttrString(target, "_sb_eid"));
    splitcore::encoder out(*this);
    json header{{"ev", "cb"},
                {"cb", ++m_callbacks},
                {"for", m_serving.back()},
                {"op", op},
                {"l", {{"$l", PyLong_AsUnsignedLongLong(eid.get())}}}};
    splitcore::throw_if_error();
    if (name != Py_None) header["name"] = out.encode(name);
    if (args != Py_None) {
        py_ref items = py_ref::checked(PySequence_Fast(args, "callback arguments must be a sequence"));
        json array = json::array();
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items.get()); ++i) {
            array.push_back(out.encode(PySequence_Fast_GET_ITEM(items.get(), i)));
        }
        header["a"] = std::move(array);
    }
    if (kwargs != Py_None && PyDict_Check(kwargs) && PyDict_GET_SIZE(kwargs) > 0) {
        json pairs = json::array();
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(kwargs, &pos, &key, &value)) {
            pairs.push_back(out.encode(key));
            pairs.push_back(out.encode(value));
        }
        header["k"] = json{{"$d", std::move(pairs)}};
    }
    if (json released = take_local_releases(); !released.empty()) header["rl"] = std::move(released);
    if (!m_transport) unavailable("this worker cannot reach its client");
    splitcore::message answer;
    ++m_callback_depth;
    try {
        answer = m_transport(std::move(header), out.take_frames());
    } catch (...) {
        --m_callback_depth;
        throw;
    }
    --m_callback_depth;
    splitcore::decoder in(*this, answer.frames);
    const json* ok = splitcore::optional_field(answer.header, "ok");
    if (ok != nullptr && ok->is_boolean() && ok->get<bool>()) {
        const json* result = splitcore::optional_field(answer.header, "r");
        return result == nullptr ? py_ref::borrow(Py_None) : in.decode(*result);
    }
    raise_answer_error(splitcore::field(answer.header, "e"), in);
}

// An answer nobody waits for: its callback was interrupted, or it is not one.
json worker::answer(const request& r) {
    const json* number = splitcore::optional_field(r.header, "cb");
    throw splitcore::error(errc::bad_request, "no callback " + (number != nullptr ? number->dump() : "?") +
                                                  " waits for this answer (it was interrupted, or has been answered)");
}

}  // namespace splitbrain::agent
