// splitbrain._core.RoutedModule: the object that stands in sys.modules for a routed module (os,
// subprocess, ...). Attribute access reads the context variable of the active slave: none active
// → the real module's attribute, with no Python code in between (the cost that matters, since
// every `os.x` in the process goes through here); a slave active → the router written in Python.
//
// It is a ModuleType subclass so that `isinstance(os, types.ModuleType)` and the import system keep
// working. ModuleType's instance layout is private in 3.11, so our fields live right after it, at
// an offset known only at run time (PyModule_Type.tp_basicsize).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "active_slave.hpp"
#include "core.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {
namespace {

using splitcore::py_ref;
using splitcore::python_error;

// Constructed by routed_new over ModuleType's zeroed instance, destroyed by routed_dealloc.
struct routed_fields {
    py_ref name;        // str: the name routed ("os.path"), which may differ from real.__name__
    py_ref real;        // the local module, or empty while not (yet) imported locally
    py_ref submodules;  // dict: attribute → routed submodule (os.path under os), or empty
    py_ref callables;   // dict: attribute → its routing callable (see below), or empty
    // Outside any context, attribute → what routed_getattro answered, valid while the real module's
    // namespace keeps the version it had then (CPython bumps a dict's version at every change).
    py_ref answers;
    std::uint64_t answers_version = 0;
};

Py_ssize_t fields_offset = 0;

// What install_router() set. Made once and never destroyed: a static py_ref would drop its
// references at process exit, after the interpreter is gone.
struct router_hooks {
    py_ref getattr;        // (slave or None, name, routed, attr) -> value
    py_ref setattr;        // (slave or None, name, routed, attr, value or delete_marker)
    py_ref dir;            // (slave, name, routed) -> list
    py_ref delete_marker;  // passed as value for delattr
};
router_hooks& router = *new router_hooks();

PyTypeObject routed_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

// A function read from a routed module outside any context (`_unlink = os.unlink` at import,
// `from shutil import rmtree`): called outside a context it is the real function (one read of the
// context variable more); inside a slave's context it is what `os.unlink` looked up then would be.
// Two types, so that only a Python function's stand-in binds as a method (a class body's
// `_rm = os.walk`), as the function itself would. Everything else it is asked (its name, doc,
// signature, hash, ==, isinstance through __class__) is the real function's.
struct routing_callable {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject* routed;  // the RoutedModule it was read from
    PyObject* attr;    // the attribute name
    PyObject* target;  // the real function
    PyObject* weakrefs;
};

PyTypeObject routing_builtin_type = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject routing_function_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

bool is_routing_callable(PyObject* obj) {
    return Py_IS_TYPE(obj, &routing_builtin_type) || Py_IS_TYPE(obj, &routing_function_type);
}

// The real function for a routing callable, else obj itself (borrowed).
PyObject* unrouted(PyObject* obj) {
    return is_routing_callable(obj) ? reinterpret_cast<routing_callable*>(obj)->target : obj;
}

PyObject* routing_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames);
routed_fields& fields_of(PyObject* self);

// `value` read from `self`'s real module as `attr`, outside any context: a function becomes its
// routing callable (one per attribute, made again only when the attribute changed). Steals value.
PyObject* routing_value(PyObject* self, PyObject* attr, PyObject* value) {
    if (value == nullptr || !(PyCFunction_CheckExact(value) || PyFunction_Check(value))) return value;
    routed_fields& f = fields_of(self);
    if (!f.callables) {
        f.callables = py_ref::steal(PyDict_New());
        if (!f.callables) {
            Py_DECREF(value);
            return nullptr;
        }
    }
    PyObject* known = PyDict_GetItemWithError(f.callables.get(), attr);  // borrowed
    if (known != nullptr && reinterpret_cast<routing_callable*>(known)->target == value) {
        Py_DECREF(value);
        return Py_NewRef(known);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(value);
        return nullptr;
    }
    PyTypeObject* type = PyFunction_Check(value) ? &routing_function_type : &routing_builtin_type;
    auto* made = PyObject_GC_New(routing_callable, type);
    if (made == nullptr) {
        Py_DECREF(value);
        return nullptr;
    }
    made->vectorcall = routing_vectorcall;
    made->routed = Py_NewRef(self);
    made->attr = Py_NewRef(attr);
    made->target = value;  // the reference stolen
    made->weakrefs = nullptr;
    PyObject_GC_Track(made);
    PyObject* result = reinterpret_cast<PyObject*>(made);
    if (PyDict_SetItem(f.callables.get(), attr, result) < 0) {
        Py_DECREF(result);
        return nullptr;
    }
    return result;
}

routed_fields& fields_of(PyObject* self) {
    return *reinterpret_cast<routed_fields*>(reinterpret_cast<char*>(self) + fields_offset);
}

bool is_dunder(PyObject* attr) {
    if (!PyUnicode_Check(attr)) return false;
    const Py_ssize_t n = PyUnicode_GET_LENGTH(attr);
    return n > 4 && PyUnicode_READ_CHAR(attr, 0) == '_' && PyUnicode_READ_CHAR(attr, 1) == '_' &&
           PyUnicode_READ_CHAR(attr, n - 1) == '_' && PyUnicode_READ_CHAR(attr, n - 2) == '_';
}

[[noreturn]] void no_router(const routed_fields& f) {
    PyErr_Format(PyExc_AttributeError, "routed module %R has no router", f.name.get());
    throw python_error();
}

// The version of the real module's namespace, or 0 if it has none (a module's __dict__ is a dict).
std::uint64_t namespace_version(PyObject* real) {
    PyObject* names = PyModule_Check(real) ? PyModule_GetDict(real) : nullptr;
    return names != nullptr ? reinterpret_cast<PyDictObject*>(names)->ma_version_tag : 0;
}

// Outside any context: what the attribute was the last time, if the real module has not changed
// since (borrowed), else nullptr with no error set.
PyObject* known_answer(routed_fields& f, PyObject* attr) {
    if (!f.answers || f.answers_version != namespace_version(f.real.get())) return nullptr;
    return PyDict_GetItemWithError(f.answers.get(), attr);
}

// Remembers `value`, the answer for `attr` outside any context, when it is a routed submodule
// (forgotten at every setattr) or the real module's own entry (or our routing callable for it):
// never what a module __getattr__ computed, which may change without the namespace changing.
// Returns value.
PyObject* remember_answer(routed_fields& f, PyObject* attr, PyObject* value, bool submodule) {
    if (value == nullptr || !PyUnicode_CheckExact(attr)) return value;
    const std::uint64_t version = namespace_version(f.real.get());
    if (version == 0) return value;
    if (!submodule) {
        PyObject* held = PyDict_GetItemWithError(PyModule_GetDict(f.real.get()), attr);  // borrowed
        if (held == nullptr) PyErr_Clear();
        if (held == nullptr || held != unrouted(value)) return value;
    }
    if (!f.answers || f.answers_version != version) {
        if (!f.answers) f.answers = py_ref::steal(PyDict_New());
        if (!f.answers) {
            PyErr_Clear();
            return value;
        }
        PyDict_Clear(f.answers.get());
        f.answers_version = version;
    }
    if (PyDict_SetItem(f.answers.get(), attr, value) < 0) PyErr_Clear();
    return value;
}

void forget_answers(routed_fields& f) {
    if (f.answers) PyDict_Clear(f.answers.get());
    f.answers_version = 0;
}

// The hot path: results are the C API's own (an AttributeError is passed through, not thrown).
// Outside any context the second access of an attribute is one read of the context variable, one
// version compare and one dict lookup (bench/routing: ≤ 100 ns over the real module's own).
PyObject* routed_getattro(PyObject* self, PyObject* attr) {
    routed_fields& f = fields_of(self);
    py_ref slave = active_slave();
    if (!slave && f.real) {
        PyObject* known = known_answer(f, attr);
        if (known != nullptr) return Py_NewRef(known);
        if (PyErr_Occurred()) return nullptr;
    }
    if (f.submodules && PyDict_GET_SIZE(f.submodules.get()) > 0) {
        PyObject* sub = PyDict_GetItemWithError(f.submodules.get(), attr);  // borrowed
        if (sub != nullptr) {
            if (!slave && f.real) return remember_answer(f, attr, Py_NewRef(sub), true);
            return Py_NewRef(sub);
        }
        if (PyErr_Occurred()) return nullptr;
    }
    if (!slave && f.real) {
        PyObject* value = PyObject_GetAttr(f.real.get(), attr);
        if (value == nullptr || !router.getattr || is_dunder(attr)) return value;
        return remember_answer(f, attr, routing_value(self, attr, value), false);
    }

    // The import system's and introspection's questions stay local; a slave's `os.__dict__` (what
    // unittest.mock reads the original from) is that slave's.
    if (is_dunder(attr) && !(slave && PyUnicode_CompareWithASCIIString(attr, "__dict__") == 0)) {
        if (f.real) return PyObject_GetAttr(f.real.get(), attr);
        py_ref own = py_ref::steal(PyObject_GenericGetAttr(self, attr));
        if (own || !PyErr_ExceptionMatches(PyExc_AttributeError)) return own.release();
        PyErr_Clear();
    }
    if (!router.getattr) no_router(f);
    PyObject* args[] = {slave ? slave.get() : Py_None, f.name.get(), self, attr};
    return PyObject_Vectorcall(router.getattr.get(), args, 4, nullptr);
}

int routed_setattro(PyObject* self, PyObject* attr, PyObject* value) {
    routed_fields& f = fields_of(self);
    // A submodule set here changes no namespace version: what was remembered goes.
    forget_answers(f);
    if (value != nullptr) value = unrouted(value);  // `os.unlink = saved` puts the real one back
    if (value != nullptr && PyObject_TypeCheck(value, &routed_type)) {
        if (!f.submodules) f.submodules = py_ref::checked(PyDict_New());
        return PyDict_SetItem(f.submodules.get(), attr, value);
    }
    if (is_dunder(attr)) return PyObject_GenericSetAttr(self, attr, value);
    py_ref slave = active_slave();
    if (!slave && f.real) return PyObject_SetAttr(f.real.get(), attr, value);
    if (!router.setattr) no_router(f);
    PyObject* args[] = {slave ? slave.get() : Py_None, f.name.get(), self, attr,
                        value != nullptr ? value : router.delete_marker.get()};
    py_ref result = py_ref::checked(PyObject_Vectorcall(router.setattr.get(), args, 5, nullptr));
    return 0;
}

py_ref routed_dir(PyObject* self, PyObject*) {
    routed_fields& f = fields_of(self);
    py_ref slave = active_slave();
    if (!slave || !router.dir) {
        if (f.real) return py_ref::checked(PyObject_Dir(f.real.get()));
        py_ref dict = py_ref::checked(PyObject_GetAttrString(self, "__dict__"));
        return py_ref::checked(PySequence_List(dict.get()));
    }
    PyObject* args[] = {slave.get(), f.name.get(), self};
    return py_ref::checked(PyObject_Vectorcall(router.dir.get(), args, 3, nullptr));
}

py_ref routed_repr(PyObject* self) {
    return py_ref::checked(PyUnicode_FromFormat("<module %R routed by splitbrain>", fields_of(self).name.get()));
}

// ModuleType's tp_new, then our fields constructed in the zeroed memory after its layout.
PyObject* routed_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    PyObject* self = PyModule_Type.tp_new(type, args, kwargs);
    if (self != nullptr) new (&fields_of(self)) routed_fields();
    return self;
}

int routed_traverse(PyObject* self, visitproc visit, void* arg) {
    routed_fields& f = fields_of(self);
    Py_VISIT(f.name.get());
    Py_VISIT(f.real.get());
    Py_VISIT(f.submodules.get());
    Py_VISIT(f.callables.get());
    Py_VISIT(f.answers.get());
    return PyModule_Type.tp_traverse(self, visit, arg);
}

int routed_clear(PyObject* self) {
    routed_fields& f = fields_of(self);
    f.name.reset();
    f.real.reset();
    f.submodules.reset();
    f.callables.reset();
    f.answers.reset();
    return PyModule_Type.tp_clear(self);
}

void routed_dealloc(PyObject* self) {
    PyObject_GC_UnTrack(self);
    fields_of(self).~routed_fields();  // the py_refs drop their references; ModuleType frees the memory
    PyModule_Type.tp_dealloc(self);
}

PyMethodDef routed_methods[] = {
    {"__dir__", method(boundary<routed_dir>), METH_NOARGS,
     "The active slave's names for this module, or the local ones."},
    {nullptr, nullptr, 0, nullptr},
};

routed_fields& routed_fields_of(PyObject* obj) {
    if (!PyObject_TypeCheck(obj, &routed_type)) {
        PyErr_Format(PyExc_TypeError, "expected a routed module, got %R", obj);
        throw python_error();
    }
    return fields_of(obj);
}

// routed_module(name, real=None) -> a new RoutedModule named `name` standing for `real`.
py_ref make_routed_module(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2 || !PyUnicode_Check(args[0])) {
        throw python_error::make(PyExc_TypeError, "routed_module(name: str, real=None)");
    }
    py_ref module = py_ref::checked(PyObject_CallOneArg(reinterpret_cast<PyObject*>(&routed_type), args[0]));
    routed_fields& f = fields_of(module.get());
    f.name = py_ref::borrow(args[0]);
    if (nargs > 1 && args[1] != Py_None) f.real = py_ref::borrow(args[1]);
    return module;
}

py_ref routed_real(PyObject*, PyObject* routed) {
    const py_ref& real = routed_fields_of(routed).real;
    return py_ref::borrow(real ? real.get() : Py_None);
}

py_ref set_routed_real(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) throw python_error::make(PyExc_TypeError, "set_routed_real(routed, real)");
    routed_fields& f = routed_fields_of(args[0]);
    f.real = args[1] == Py_None ? py_ref() : py_ref::borrow(args[1]);
    forget_answers(f);
    return py_ref::borrow(Py_None);
}

py_ref routed_name(PyObject*, PyObject* routed) { return py_ref::borrow(routed_fields_of(routed).name.get()); }

py_ref routed_submodules(PyObject*, PyObject* routed) {
    const py_ref& subs = routed_fields_of(routed).submodules;
    return py_ref::checked(subs ? PyDict_Copy(subs.get()) : PyDict_New());
}

// install_router(context_var, getattr, setattr, dir, delete_marker)
py_ref install_router(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyContextVar_CheckExact(args[0])) {
        throw python_error::make(PyExc_TypeError, "install_router(context_var, getattr, setattr, dir, delete_marker)");
    }
    set_slave_variable(args[0]);
    router.getattr = py_ref::borrow(args[1]);
    router.setattr = py_ref::borrow(args[2]);
    router.dir = py_ref::borrow(args[3]);
    router.delete_marker = py_ref::borrow(args[4]);
    return py_ref::borrow(Py_None);
}

// -- routing callables ------------------------------------------------------------------------------

routing_callable* as_routing(PyObject* self) { return reinterpret_cast<routing_callable*>(self); }

PyObject* routing_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    routing_callable* r = as_routing(self);
    py_ref slave;
    try {
        slave = active_slave();
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
    if (!slave) return PyObject_Vectorcall(r->target, args, nargsf, kwnames);
    // What `os.unlink` looked up now gives: the slave's function (or the router's choice).
    PyObject* hook_args[] = {slave.get(), fields_of(r->routed).name.get(), r->routed, r->attr};
    py_ref now = py_ref::steal(PyObject_Vectorcall(router.getattr.get(), hook_args, 4, nullptr));
    if (!now) return nullptr;
    return PyObject_Vectorcall(now.get(), args, nargsf, kwnames);
}

// Our own: how it pickles and copies, and __call__ (which must route too); the rest is the target's.
bool own_attribute(PyObject* attr) {
    return PyUnicode_Check(attr) && (PyUnicode_CompareWithASCIIString(attr, "__reduce__") == 0 ||
                                     PyUnicode_CompareWithASCIIString(attr, "__reduce_ex__") == 0 ||
                                     PyUnicode_CompareWithASCIIString(attr, "__call__") == 0 ||
                                     PyUnicode_CompareWithASCIIString(attr, "__get__") == 0);
}

PyObject* routing_getattro(PyObject* self, PyObject* attr) {
    if (own_attribute(attr)) return PyObject_GenericGetAttr(self, attr);
    return PyObject_GetAttr(as_routing(self)->target, attr);
}

int routing_setattro(PyObject* self, PyObject* attr, PyObject* value) {
    return PyObject_SetAttr(as_routing(self)->target, attr, value);
}

PyObject* routing_repr(PyObject* self) { return PyObject_Repr(as_routing(self)->target); }

Py_hash_t routing_hash(PyObject* self) { return PyObject_Hash(as_routing(self)->target); }

PyObject* routing_richcompare(PyObject* self, PyObject* other, int op) {
    return PyObject_RichCompare(unrouted(self), unrouted(other), op);
}

// A Python function's stand-in binds as the function does; a builtin's never binds.
PyObject* routing_descr_get(PyObject* self, PyObject* obj, PyObject*) {
    if (obj == nullptr || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

// Pickled by name: pkgutil.resolve_name("posix:stat") gives the real function back anywhere.
py_ref routing_reduce(PyObject* self, PyObject*) {
    PyObject* target = as_routing(self)->target;
    py_ref module = py_ref::checked(PyObject_GetAttrString(target, "__module__"));
    py_ref qualname = py_ref::checked(PyObject_GetAttrString(target, "__qualname__"));
    py_ref name = py_ref::checked(PyUnicode_FromFormat("%S:%S", module.get(), qualname.get()));
    py_ref pkgutil = py_ref::checked(PyImport_ImportModule("pkgutil"));
    py_ref resolve = py_ref::checked(PyObject_GetAttrString(pkgutil.get(), "resolve_name"));
    return py_ref::checked(Py_BuildValue("(O(O))", resolve.get(), name.get()));
}

py_ref routing_reduce_ex(PyObject* self, PyObject*) { return routing_reduce(self, nullptr); }

int routing_traverse(PyObject* self, visitproc visit, void* arg) {
    routing_callable* r = as_routing(self);
    Py_VISIT(r->routed);
    Py_VISIT(r->attr);
    Py_VISIT(r->target);
    return 0;
}

int routing_clear(PyObject* self) {
    routing_callable* r = as_routing(self);
    Py_CLEAR(r->routed);
    Py_CLEAR(r->attr);
    Py_CLEAR(r->target);
    return 0;
}

void routing_dealloc(PyObject* self) {
    PyObject_GC_UnTrack(self);
    if (as_routing(self)->weakrefs != nullptr) PyObject_ClearWeakRefs(self);
    routing_clear(self);
    PyObject_GC_Del(self);
}

PyMethodDef routing_methods[] = {
    {"__reduce__", method(boundary<routing_reduce>), METH_NOARGS, "pickled as the real function, by name"},
    {"__reduce_ex__", method(boundary<routing_reduce_ex>), METH_O, "pickled as the real function, by name"},
    {nullptr, nullptr, 0, nullptr},
};

void ready_routing_type(PyTypeObject& type, const char* name, bool binds) {
    type.tp_name = name;
    type.tp_basicsize = sizeof(routing_callable);
    type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
    type.tp_doc =
        "A function read from a routed module: the real one outside any slave's context, the active "
        "slave's inside one.";
    type.tp_vectorcall_offset = offsetof(routing_callable, vectorcall);
    type.tp_call = PyVectorcall_Call;
    type.tp_getattro = routing_getattro;
    type.tp_setattro = routing_setattro;
    type.tp_repr = routing_repr;
    type.tp_hash = routing_hash;
    type.tp_richcompare = routing_richcompare;
    type.tp_weaklistoffset = offsetof(routing_callable, weakrefs);
    type.tp_traverse = routing_traverse;
    type.tp_clear = routing_clear;
    type.tp_dealloc = routing_dealloc;
    type.tp_methods = routing_methods;
    if (binds) type.tp_descr_get = routing_descr_get;
    if (PyType_Ready(&type) < 0) throw python_error();
}

// unrouted(obj) -> the real function behind a routing callable, else obj.
py_ref unrouted_function(PyObject*, PyObject* obj) { return py_ref::borrow(unrouted(obj)); }

PyMethodDef routed_functions[] = {
    {"routed_module", method(boundary<make_routed_module>), METH_FASTCALL,
     "routed_module(name, real=None) -> RoutedModule"},
    {"routed_real", method(boundary<routed_real>), METH_O, "routed_real(routed) -> the local module, or None"},
    {"set_routed_real", method(boundary<set_routed_real>), METH_FASTCALL,
     "set_routed_real(routed, real): the local module behind a routed one (None: none)"},
    {"routed_name", method(boundary<routed_name>), METH_O, "routed_name(routed) -> the routed name ('os.path')"},
    {"routed_submodules", method(boundary<routed_submodules>), METH_O,
     "routed_submodules(routed) -> {attr: routed submodule}"},
    {"unrouted", method(boundary<unrouted_function>), METH_O,
     "unrouted(obj) -> the real function behind a routing callable (os.unlink read outside a context), else obj"},
    {"install_router", method(boundary<install_router>), METH_FASTCALL,
     "install_router(context_var, getattr, setattr, dir, delete_marker): where routed modules ask "
     "which slave is active and what to do then"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void add_routed_types(PyObject* module) {
    fields_offset = PyModule_Type.tp_basicsize;
    routed_type.tp_name = "splitbrain._core.RoutedModule";
    routed_type.tp_basicsize = fields_offset + static_cast<Py_ssize_t>(sizeof(routed_fields));
    routed_type.tp_base = &PyModule_Type;
    routed_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    routed_type.tp_doc = "A module whose attributes come from the active slave, or from the real module when local.";
    routed_type.tp_new = boundary<routed_new>;
    routed_type.tp_getattro = boundary<routed_getattro>;
    routed_type.tp_setattro = boundary<routed_setattro>;
    routed_type.tp_repr = boundary<routed_repr>;
    routed_type.tp_traverse = routed_traverse;
    routed_type.tp_clear = routed_clear;
    routed_type.tp_dealloc = routed_dealloc;
    routed_type.tp_methods = routed_methods;
    if (PyType_Ready(&routed_type) < 0) throw python_error();
    add_object(module, "RoutedModule", reinterpret_cast<PyObject*>(&routed_type));
    ready_routing_type(routing_builtin_type, "splitbrain._core.RoutingBuiltin", false);
    ready_routing_type(routing_function_type, "splitbrain._core.RoutingFunction", true);
    add_object(module, "RoutingBuiltin", reinterpret_cast<PyObject*>(&routing_builtin_type));
    add_object(module, "RoutingFunction", reinterpret_cast<PyObject*>(&routing_function_type));
    if (PyModule_AddFunctions(module, routed_functions) < 0) throw python_error();
}

}  // namespace splitbrain_core
