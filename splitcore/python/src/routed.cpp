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

#include "core.hpp"

namespace splitbrain_core {
namespace {

struct routed_fields {
    PyObject* name;        // str: the name routed ("os.path"), which may differ from real.__name__
    PyObject* real;        // the local module, or null while not (yet) imported locally
    PyObject* submodules;  // dict: attribute → routed submodule (os.path under os), or null
};

Py_ssize_t fields_offset = 0;

// Set once by install_router(); owned for ever.
PyObject* current_slave_var = nullptr;  // contextvars.ContextVar
PyObject* router_getattr = nullptr;     // (slave or None, name, routed, attr) -> value
PyObject* router_setattr = nullptr;     // (slave or None, name, routed, attr, value or NULL-marker)
PyObject* router_dir = nullptr;         // (slave, name, routed) -> list
PyObject* delete_marker = nullptr;      // passed as value for delattr

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

// New reference to the active slave, or null for local (the variable unset or None). -1 on error.
int active_slave(PyObject** slave) {
    *slave = nullptr;
    if (current_slave_var == nullptr) return 0;
    PyObject* value = nullptr;
    if (PyContextVar_Get(current_slave_var, nullptr, &value) < 0) return -1;
    if (value == Py_None) {
        Py_DECREF(value);
        value = nullptr;
    }
    *slave = value;
    return 0;
}

PyObject* routed_getattro(PyObject* self, PyObject* attr) {
    routed_fields& f = fields_of(self);
    if (f.submodules != nullptr && PyDict_GET_SIZE(f.submodules) > 0) {
        PyObject* sub = PyDict_GetItemWithError(f.submodules, attr);
        if (sub != nullptr) return Py_NewRef(sub);
        if (PyErr_Occurred()) return nullptr;
    }
    PyObject* slave;
    if (active_slave(&slave) < 0) return nullptr;
    if (slave == nullptr && f.real != nullptr) return PyObject_GetAttr(f.real, attr);

    if (is_dunder(attr)) {  // the import system's and introspection's questions stay local
        if (f.real != nullptr) {
            Py_XDECREF(slave);
            return PyObject_GetAttr(f.real, attr);
        }
        PyObject* own = PyObject_GenericGetAttr(self, attr);
        if (own != nullptr || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_XDECREF(slave);
            return own;
        }
        PyErr_Clear();
    }
    if (router_getattr == nullptr) {
        Py_XDECREF(slave);
        PyErr_Format(PyExc_AttributeError, "routed module %R has no router", f.name);
        return nullptr;
    }
    PyObject* args[] = {slave != nullptr ? slave : Py_None, f.name, self, attr};
    PyObject* result = PyObject_Vectorcall(router_getattr, args, 4, nullptr);
    Py_XDECREF(slave);
    return result;
}

int routed_setattro(PyObject* self, PyObject* attr, PyObject* value) {
    routed_fields& f = fields_of(self);
    if (value != nullptr && PyObject_TypeCheck(value, &routed_type)) {
        if (f.submodules == nullptr) {
            f.submodules = PyDict_New();
            if (f.submodules == nullptr) return -1;
        }
        return PyDict_SetItem(f.submodules, attr, value);
    }
    if (is_dunder(attr)) return PyObject_GenericSetAttr(self, attr, value);
    PyObject* slave;
    if (active_slave(&slave) < 0) return -1;
    if (slave == nullptr && f.real != nullptr) return PyObject_SetAttr(f.real, attr, value);
    if (router_setattr == nullptr) {
        Py_XDECREF(slave);
        PyErr_Format(PyExc_AttributeError, "routed module %R has no router", f.name);
        return -1;
    }
    PyObject* args[] = {slave != nullptr ? slave : Py_None, f.name, self, attr,
                        value != nullptr ? value : delete_marker};
    PyObject* result = PyObject_Vectorcall(router_setattr, args, 5, nullptr);
    Py_XDECREF(slave);
    if (result == nullptr) return -1;
    Py_DECREF(result);
    return 0;
}

PyObject* routed_dir(PyObject* self, PyObject*) {
    routed_fields& f = fields_of(self);
    PyObject* slave;
    if (active_slave(&slave) < 0) return nullptr;
    if (slave == nullptr || router_dir == nullptr) {
        Py_XDECREF(slave);
        if (f.real != nullptr) return PyObject_Dir(f.real);
        PyObject* dict = PyObject_GetAttrString(self, "__dict__");
        if (dict == nullptr) return nullptr;
        PyObject* keys = PySequence_List(dict);
        Py_DECREF(dict);
        return keys;
    }
    PyObject* args[] = {slave, f.name, self};
    PyObject* result = PyObject_Vectorcall(router_dir, args, 3, nullptr);
    Py_DECREF(slave);
    return result;
}

PyObject* routed_repr(PyObject* self) {
    routed_fields& f = fields_of(self);
    return PyUnicode_FromFormat("<module %R routed by splitbrain>", f.name);
}

int routed_traverse(PyObject* self, visitproc visit, void* arg) {
    routed_fields& f = fields_of(self);
    Py_VISIT(f.name);
    Py_VISIT(f.real);
    Py_VISIT(f.submodules);
    return PyModule_Type.tp_traverse(self, visit, arg);
}

int routed_clear(PyObject* self) {
    routed_fields& f = fields_of(self);
    Py_CLEAR(f.name);
    Py_CLEAR(f.real);
    Py_CLEAR(f.submodules);
    return PyModule_Type.tp_clear(self);
}

void routed_dealloc(PyObject* self) {
    PyObject_GC_UnTrack(self);
    routed_fields& f = fields_of(self);
    Py_CLEAR(f.name);
    Py_CLEAR(f.real);
    Py_CLEAR(f.submodules);
    PyModule_Type.tp_dealloc(self);
}

PyMethodDef routed_methods[] = {
    {"__dir__", routed_dir, METH_NOARGS, "The active slave's names for this module, or the local ones."},
    {nullptr, nullptr, 0, nullptr},
};

bool check_routed(PyObject* obj) {
    if (PyObject_TypeCheck(obj, &routed_type)) return true;
    PyErr_Format(PyExc_TypeError, "expected a routed module, got %R", obj);
    return false;
}

// routed_module(name, real=None) -> a new RoutedModule named `name` standing for `real`.
PyObject* make_routed_module(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "routed_module(name: str, real=None)");
        return nullptr;
    }
    PyObject* module = PyObject_CallOneArg(reinterpret_cast<PyObject*>(&routed_type), args[0]);
    if (module == nullptr) return nullptr;
    routed_fields& f = fields_of(module);
    f.name = Py_NewRef(args[0]);
    if (nargs > 1 && args[1] != Py_None) f.real = Py_NewRef(args[1]);
    return module;
}

PyObject* routed_real(PyObject*, PyObject* routed) {
    if (!check_routed(routed)) return nullptr;
    PyObject* real = fields_of(routed).real;
    return Py_NewRef(real != nullptr ? real : Py_None);
}

PyObject* set_routed_real(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !check_routed(args[0])) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "set_routed_real(routed, real)");
        return nullptr;
    }
    routed_fields& f = fields_of(args[0]);
    Py_XSETREF(f.real, args[1] == Py_None ? nullptr : Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

PyObject* routed_name(PyObject*, PyObject* routed) {
    if (!check_routed(routed)) return nullptr;
    return Py_NewRef(fields_of(routed).name);
}

PyObject* routed_submodules(PyObject*, PyObject* routed) {
    if (!check_routed(routed)) return nullptr;
    PyObject* subs = fields_of(routed).submodules;
    return subs != nullptr ? PyDict_Copy(subs) : PyDict_New();
}

// install_router(context_var, getattr, setattr, dir, delete_marker)
PyObject* install_router(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyContextVar_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "install_router(context_var, getattr, setattr, dir, delete_marker)");
        return nullptr;
    }
    Py_XSETREF(current_slave_var, Py_NewRef(args[0]));
    Py_XSETREF(router_getattr, Py_NewRef(args[1]));
    Py_XSETREF(router_setattr, Py_NewRef(args[2]));
    Py_XSETREF(router_dir, Py_NewRef(args[3]));
    Py_XSETREF(delete_marker, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

PyMethodDef routed_functions[] = {
    {"routed_module", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(make_routed_module)), METH_FASTCALL,
     "routed_module(name, real=None) -> RoutedModule"},
    {"routed_real", routed_real, METH_O, "routed_real(routed) -> the local module, or None"},
    {"set_routed_real", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(set_routed_real)), METH_FASTCALL,
     "set_routed_real(routed, real): the local module behind a routed one (None: none)"},
    {"routed_name", routed_name, METH_O, "routed_name(routed) -> the routed name ('os.path')"},
    {"routed_submodules", routed_submodules, METH_O, "routed_submodules(routed) -> {attr: routed submodule}"},
    {"install_router", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(install_router)), METH_FASTCALL,
     "install_router(context_var, getattr, setattr, dir, delete_marker): where routed modules ask "
     "which slave is active and what to do then"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyObject* current_slave_variable() { return current_slave_var; }

master_scope::master_scope() {
    if (current_slave_var == nullptr) return;
    PyObject* value = nullptr;
    if (PyContextVar_Get(current_slave_var, nullptr, &value) < 0) {
        PyErr_Clear();
        return;
    }
    if (value != nullptr && value != Py_None) {
        m_token = PyContextVar_Set(current_slave_var, Py_None);
        if (m_token == nullptr) PyErr_Clear();
    }
    Py_XDECREF(value);
}

master_scope::~master_scope() {
    if (m_token == nullptr) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);  // the scope may end with an exception set
    if (PyContextVar_Reset(current_slave_var, m_token) < 0) PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    Py_DECREF(m_token);
}

bool add_routed_types(PyObject* module) {
    fields_offset = PyModule_Type.tp_basicsize;
    routed_type.tp_name = "splitbrain._core.RoutedModule";
    routed_type.tp_basicsize = fields_offset + static_cast<Py_ssize_t>(sizeof(routed_fields));
    routed_type.tp_base = &PyModule_Type;
    routed_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
    routed_type.tp_doc = "A module whose attributes come from the active slave, or from the real module when local.";
    routed_type.tp_getattro = routed_getattro;
    routed_type.tp_setattro = routed_setattro;
    routed_type.tp_repr = routed_repr;
    routed_type.tp_traverse = routed_traverse;
    routed_type.tp_clear = routed_clear;
    routed_type.tp_dealloc = routed_dealloc;
    routed_type.tp_methods = routed_methods;
    if (PyType_Ready(&routed_type) < 0) return false;
    Py_INCREF(&routed_type);
    if (PyModule_AddObject(module, "RoutedModule", reinterpret_cast<PyObject*>(&routed_type)) < 0) return false;
    return PyModule_AddFunctions(module, routed_functions) == 0;
}

}  // namespace splitbrain_core
