// What the parts of splitbrain._core share: the exception types and the types' set-up functions.
#pragma once

#include <Python.h>

namespace splitbrain_core {

// splitbrain._core exception types, created at module init (new references held for ever).
extern PyObject* agent_unreachable_error;  // ConnectionError subclass
extern PyObject* key_refused_error;        // AgentUnreachable subclass
extern PyObject* slave_closed_error;       // ConnectionError subclass
extern PyObject* protocol_error_type;      // Exception subclass

// Sets a Python exception for whatever C++ exception is in flight; call inside catch (...).
void set_python_error_from_current();

// Adds the Connection type to the module; false with an exception set on failure.
bool add_connection_type(PyObject* module);

// The context variable holding the active slave (borrowed; null before install_router).
PyObject* current_slave_variable();

// Makes the master active for its scope when a slave is: values are rebuilt with the master's
// types (the decoder finds os.stat_result by importing os, which is routed).
class master_scope {
public:
    master_scope();
    ~master_scope();
    master_scope(const master_scope&) = delete;
    master_scope& operator=(const master_scope&) = delete;

private:
    PyObject* m_token = nullptr;
};

// Adds the routed module type and its functions to the module.
bool add_routed_types(PyObject* module);

}  // namespace splitbrain_core
