// What the parts of splitbrain._core share: the exception types and the types' set-up functions.
#pragma once

#include <Python.h>

#include "splitcore/errors.hpp"

namespace splitbrain_core {

// Raises the exception type splitbrain._errors maps `code` to (RuntimeError before that table is
// set), with `message` (already "[splitbrain.<id>] ...") and `.code` set to the id's name.
void raise_error(splitcore::errc code, const char* message);

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
