// splitbrain._core: the C++ half of the splitbrain package.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <zmq.h>

#include <exception>
#include <string>

#include "core.hpp"
#include "splitcore/bulk_memory.hpp"
#include "splitcore/channel.hpp"
#include "splitcore/keys.hpp"
#include "splitcore/errors.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

using splitcore::py_ref;

namespace {
// id → exception type, the table of splitbrain/_errors.py, handed over by set_error_types at
// import. Never destroyed: a static py_ref would drop it at process exit, after the interpreter.
py_ref& error_types = *new py_ref();
}  // namespace

void raise_error(splitcore::errc code, const char* message, PyObject* type) {
    const std::string_view id = splitcore::name(code);
    py_ref name = py_ref::steal(PyUnicode_FromStringAndSize(id.data(), static_cast<Py_ssize_t>(id.size())));
    if (!name) return;
    if (type == nullptr && error_types) {
        type = PyDict_GetItemWithError(error_types.get(), name.get());  // borrowed
        if (type == nullptr && PyErr_Occurred()) return;
    }
    if (type == nullptr) type = PyExc_RuntimeError;  // before splitbrain._errors is imported
    py_ref exc = py_ref::steal(PyObject_CallFunction(type, "s", message));
    if (!exc || PyObject_SetAttrString(exc.get(), "code", name.get()) < 0) return;
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.get())), exc.get());
}

void set_python_error_from_current() {
    try {
        throw;
    } catch (const splitcore::python_error& e) {
        e.restore();
    } catch (const error_as& e) {
        raise_error(e.code(), e.what(), e.type());
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

void add_object(PyObject* module, const char* name, PyObject* value) {
    if (PyModule_AddObjectRef(module, name, value) < 0) throw splitcore::python_error();
}

namespace {

py_ref curve_keypair(PyObject*, PyObject*) {
    const auto pair = splitcore::key_pair::generate();
    return py_ref::checked(Py_BuildValue("(ss)", pair.public_key.c_str(), pair.secret_key.c_str()));
}

const char* utf8_of(PyObject* text) {
    const char* utf8 = PyUnicode_AsUTF8(text);
    if (utf8 == nullptr) throw splitcore::python_error();
    return utf8;
}

py_ref curve_public_key(PyObject*, PyObject* secret) {
    const auto pair = splitcore::key_pair::from_secret(utf8_of(secret));
    return py_ref::checked(PyUnicode_FromString(pair.public_key.c_str()));
}

py_ref is_key(PyObject*, PyObject* text) {
    return py_ref::checked(PyBool_FromLong(splitcore::is_z85_key(utf8_of(text))));
}

py_ref tagged(PyObject*, PyObject* args) {
    const char* id = nullptr;
    const char* detail = nullptr;
    if (!PyArg_ParseTuple(args, "ss:tagged", &id, &detail)) throw splitcore::python_error();
    const auto text = splitcore::tagged(std::string_view(id), std::string_view(detail));
    if (!text) {
        PyErr_Format(PyExc_ValueError, "%R is not an error id of splitbrain (docs/errors.md)",
                     PyTuple_GET_ITEM(args, 0));
        throw splitcore::python_error();
    }
    return py_ref::checked(PyUnicode_FromStringAndSize(text->data(), static_cast<Py_ssize_t>(text->size())));
}

py_ref set_error_types(PyObject*, PyObject* table) {
    if (!PyDict_Check(table)) {
        PyErr_Format(PyExc_TypeError, "set_error_types takes a dict, not %R", table);
        throw splitcore::python_error();
    }
    error_types = py_ref::borrow(table);
    return py_ref::borrow(Py_None);
}

py_ref error_ids() {
    py_ref ids = py_ref::checked(PyTuple_New(static_cast<Py_ssize_t>(splitcore::error_count)));
    for (std::size_t i = 0; i < splitcore::error_count; ++i) {
        const std::string_view id = splitcore::error_names[i];
        py_ref text = py_ref::checked(PyUnicode_FromStringAndSize(id.data(), static_cast<Py_ssize_t>(id.size())));
        PyTuple_SET_ITEM(ids.get(), static_cast<Py_ssize_t>(i), text.release());  // steals
    }
    return ids;
}

PyMethodDef module_functions[] = {
    {"tagged", method(boundary<tagged>), METH_VARARGS,
     "tagged(id, detail) -> the text of error `id` with `detail` after its tag: the one builder of "
     "an error's text; ValueError for an id that is not in error_ids."},
    {"set_error_types", method(boundary<set_error_types>), METH_O,
     "set_error_types({id: exception type}): the table the C++ half raises errors with (splitbrain._errors)."},
    {"curve_keypair", method(boundary<curve_keypair>), METH_NOARGS,
     "curve_keypair() -> (public, secret): a fresh CurveZMQ key pair as Z85 text."},
    {"curve_public_key", method(boundary<curve_public_key>), METH_O,
     "curve_public_key(secret) -> public: the Z85 public key of a Z85 secret key."},
    {"is_key", method(boundary<is_key>), METH_O, "is_key(text) -> bool: 40 characters of Z85 encoding a 32-byte key."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "splitbrain._core",
    "The C++ half of splitbrain: the channel to agents, value boxing and routed modules.",
    -1,
    module_functions,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

py_ref make_module() {
    splitcore::keep_bulk_buffers();  // a 1 MiB chunked read or write without page faults (bulk_memory.hpp)
    py_ref module = py_ref::checked(PyModule_Create(&module_def));
    add_object(module.get(), "error_ids", error_ids().get());
    add_connection_type(module.get());
    add_routed_types(module.get());
    add_audit_functions(module.get());
    return module;
}

}  // namespace
}  // namespace splitbrain_core

PyMODINIT_FUNC PyInit__core() { return splitbrain_core::boundary<splitbrain_core::make_module>(); }
