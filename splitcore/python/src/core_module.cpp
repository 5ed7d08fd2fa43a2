// splitbrain._core: the C++ half of the splitbrain package.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <zmq.h>

#include <exception>
#include <string>

#include "core.hpp"
#include "splitcore/channel.hpp"
#include "splitcore/keys.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

PyObject* agent_unreachable_error = nullptr;
PyObject* key_refused_error = nullptr;
PyObject* slave_closed_error = nullptr;
PyObject* protocol_error_type = nullptr;

void set_python_error_from_current() {
    try {
        throw;
    } catch (const splitcore::python_error& e) {
        e.restore();
    } catch (const splitcore::refused_error& e) {
        PyErr_SetString(key_refused_error, e.what());
    } catch (const splitcore::unreachable_error& e) {
        PyErr_SetString(agent_unreachable_error, e.what());
    } catch (const splitcore::protocol_error& e) {
        PyErr_SetString(protocol_error_type, e.what());
    } catch (const zmq::error_t& e) {
        PyErr_Format(PyExc_ConnectionError, "[splitbrain.transport] %s", e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        const std::string text = e.what();
        if (text.rfind("[splitbrain.closed]", 0) == 0) {
            PyErr_SetString(slave_closed_error, text.c_str());
        } else {
            PyErr_SetString(PyExc_RuntimeError, text.c_str());
        }
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

PyMethodDef module_functions[] = {
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

bool add_exception(PyObject* module, const char* name, PyObject* base, const char* doc, PyObject*& slot) {
    const std::string qualified = std::string("splitbrain._core.") + name;
    slot = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base, nullptr);
    if (slot == nullptr) {
        return false;
    }
    Py_INCREF(slot);
    return PyModule_AddObject(module, name, slot) == 0;
}

}  // namespace
}  // namespace splitbrain_core

PyMODINIT_FUNC PyInit__core() {
    using namespace splitbrain_core;
    PyObject* module = PyModule_Create(&module_def);
    if (module == nullptr) {
        return nullptr;
    }
    if (!add_exception(module, "AgentUnreachable", PyExc_ConnectionError,
                       "The agent did not answer for the liveness timeout.", agent_unreachable_error) ||
        !add_exception(module, "KeyRefused", agent_unreachable_error,
                       "The agent refused this client's key during the CURVE handshake.", key_refused_error) ||
        !add_exception(module, "SlaveClosed", PyExc_ConnectionError,
                       "The connection to this slave was closed.", slave_closed_error) ||
        !add_exception(module, "ProtocolError", PyExc_Exception,
                       "A peer broke the wire protocol.", protocol_error_type) ||
        !add_connection_type(module) || !add_routed_types(module)) {
        Py_DECREF(module);
        return nullptr;
    }
    return module;
}
