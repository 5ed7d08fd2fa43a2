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

// The hot path: results are the C API's own (an AttributeError is passed through, not thrown).
PyObject* routed_getattro(PyObject* self, PyObject* attr) {
    routed_fields& f = fields_of(self);
    if (f.submodules && PyDict_GET_SIZE(f.submodules.get()) > 0) {
        PyObject* sub = PyDict_GetItemWithError(f.submodules.get(), attr);  // borrowed
        if (sub != nullptr) return py_ref::borrow(sub).release();
        if (PyErr_Occurred()) return nullptr;
    }
    py_ref slave = active_slave();
    if (!slave && f.real) return PyObject_GetAttr(f.real.get(), attr);

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
    return PyModule_Type.tp_traverse(self, visit, arg);
}

int routed_clear(PyObject* self) {
    routed_fields& f = fields_of(self);
    f.name.reset();
    f.real.reset();
    f.submodules.reset();
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
    routed_fields_of(args[0]).real = args[1] == Py_None ? py_ref() : py_ref::borrow(args[1]);
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

PyMethodDef routed_functions[] = {
    {"routed_module", method(boundary<make_routed_module>), METH_FASTCALL,
     "routed_module(name, real=None) -> RoutedModule"},
    {"routed_real", method(boundary<routed_real>), METH_O, "routed_real(routed) -> the local module, or None"},
    {"set_routed_real", method(boundary<set_routed_real>), METH_FASTCALL,
     "set_routed_real(routed, real): the local module behind a routed one (None: none)"},
    {"routed_name", method(boundary<routed_name>), METH_O, "routed_name(routed) -> the routed name ('os.path')"},
    {"routed_submodules", method(boundary<routed_submodules>), METH_O,
     "routed_submodules(routed) -> {attr: routed submodule}"},
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
    if (PyModule_AddFunctions(module, routed_functions) < 0) throw python_error();
}

}  // namespace splitbrain_core
