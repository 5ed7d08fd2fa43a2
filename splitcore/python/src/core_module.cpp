// splitbrain._core: the C++ half of the splitbrain package.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <zmq.h>

#include <exception>
#include <string>

#include "core.hpp"
#include "splitcore/channel.hpp"
#include "splitcore/keys.hpp"
#include "splitcore/errors.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

using splitcore::py_ref;

namespace {
// id → exception type, the table of splitbrain/_errors.py, handed over by set_error_types at import.
PyObject* error_types = nullptr;
}  // namespace

void raise_error(splitcore::errc code, const char* message) {
    const std::string_view id = splitcore::name(code);
    PyObject* type = nullptr;
    if (error_types != nullptr) {
        py_ref key = py_ref::steal(PyUnicode_FromStringAndSize(id.data(), static_cast<Py_ssize_t>(id.size())));
        if (!key) return;
        type = PyDict_GetItemWithError(error_types, key.get());  // borrowed
        if (type == nullptr && PyErr_Occurred()) return;
    }
    if (type == nullptr) type = PyExc_RuntimeError;  // before splitbrain._errors is imported
    py_ref exc = py_ref::steal(PyObject_CallFunction(type, "s", message));
    if (!exc) return;
    py_ref name = py_ref::steal(PyUnicode_FromStringAndSize(id.data(), static_cast<Py_ssize_t>(id.size())));
    if (!name || PyObject_SetAttrString(exc.get(), "code", name.get()) < 0) return;
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
}

void set_python_error_from_current() {
    try {
        throw;
    } catch (const splitcore::python_error& e) {
        e.restore();
    } catch (const splitcore::error& e) {
        raise_error(e.code(), e.what());
    } catch (const zmq::error_t& e) {
        raise_error(splitcore::errc::transport, splitcore::tagged(splitcore::errc::transport, e.what()).c_str());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
}

namespace {

PyObject* curve_keypair(PyObject*, PyObject*) {
    try {
        const auto pair = splitcore::key_pair::generate();
        return Py_BuildValue("(ss)", pair.public_key.c_str(), pair.secret_key.c_str());
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
}

PyObject* curve_public_key(PyObject*, PyObject* secret) {
    const char* text = PyUnicode_AsUTF8(secret);
    if (text == nullptr) {
        return nullptr;
    }
    try {
        const auto pair = splitcore::key_pair::from_secret(text);
        return PyUnicode_FromString(pair.public_key.c_str());
    } catch (...) {
        set_python_error_from_current();
        return nullptr;
    }
}

PyObject* is_key(PyObject*, PyObject* text) {
    const char* utf8 = PyUnicode_AsUTF8(text);
    if (utf8 == nullptr) {
        return nullptr;
    }
    return PyBool_FromLong(splitcore::is_z85_key(utf8));
}

PyObject* tagged(PyObject*, PyObject* args) {
    const char* id = nullptr;
    const char* detail = nullptr;
    if (!PyArg_ParseTuple(args, "ss:tagged", &id, &detail)) return nullptr;
    const auto text = splitcore::tagged(std::string_view(id), std::string_view(detail));
    if (!text) return PyErr_Format(PyExc_ValueError, "%R is not an error id of splitbrain (docs/errors.md)", PyTuple_GET_ITEM(args, 0));
    return PyUnicode_FromStringAndSize(text->data(), static_cast<Py_ssize_t>(text->size()));
}

PyObject* set_error_types(PyObject*, PyObject* table) {
    if (!PyDict_Check(table)) return PyErr_Format(PyExc_TypeError, "set_error_types takes a dict, not %R", table);
    Py_INCREF(table);
    Py_XSETREF(error_types, table);
    Py_RETURN_NONE;
}

py_ref error_ids() {
    py_ref ids = py_ref::steal(PyTuple_New(static_cast<Py_ssize_t>(splitcore::error_count)));
    if (!ids) return ids;
    for (std::size_t i = 0; i < splitcore::error_count; ++i) {
        const std::string_view id = splitcore::error_names[i];
        PyObject* text = PyUnicode_FromStringAndSize(id.data(), static_cast<Py_ssize_t>(id.size()));
        if (text == nullptr) return {};
        PyTuple_SET_ITEM(ids.get(), static_cast<Py_ssize_t>(i), text);
    }
    return ids;
}

PyMethodDef module_functions[] = {
    {"tagged", tagged, METH_VARARGS,
     "tagged(id, detail) -> '[splitbrain.<id>] <detail>', the one builder of an error's text; "
     "ValueError for an id that is not in error_ids."},
    {"set_error_types", set_error_types, METH_O,
     "set_error_types({id: exception type}): the table the C++ half raises errors with (splitbrain._errors)."},
    {"curve_keypair", curve_keypair, METH_NOARGS,
     "curve_keypair() -> (public, secret): a fresh CurveZMQ key pair as Z85 text."},
    {"curve_public_key", curve_public_key, METH_O,
     "curve_public_key(secret) -> public: the Z85 public key of a Z85 secret key."},
    {"is_key", is_key, METH_O, "is_key(text) -> bool: 40 characters of Z85 encoding a 32-byte key."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "splitbrain._core",
    "The C++ half of splitbrain: the channel to agents, value boxing and routed modules.", -1,
    module_functions, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace
}  // namespace splitbrain_core

PyMODINIT_FUNC PyInit__core() {
    using namespace splitbrain_core;
    PyObject* module = PyModule_Create(&module_def);
    if (module == nullptr) {
        return nullptr;
    }
    py_ref ids = error_ids();
    if (!ids || PyModule_AddObject(module, "error_ids", ids.get()) < 0 || !add_connection_type(module) ||
        !add_routed_types(module)) {
        Py_DECREF(module);
        return nullptr;
    }
    (void)ids.release();  // PyModule_AddObject stole it
    return module;
}
