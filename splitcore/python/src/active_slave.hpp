// The active slave as the C++ half sees it: the context variable splitbrain's Python layer hands
// to install_router(), read by routed modules on every attribute access and set aside by the
// decoder while it rebuilds a reply with the master's types.
#pragma once

#include <Python.h>

#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

// The context variable holding the active slave (a contextvars.ContextVar); until it is set,
// everything is local.
void set_slave_variable(PyObject* variable);

// The active slave, or an empty py_ref for the master (the variable unset or None). Throws
// python_error if the variable cannot be read.
[[nodiscard]] splitcore::py_ref active_slave();

// Makes the master active for its scope when a slave is: values are rebuilt with the master's
// types (the decoder finds os.stat_result by importing os, which is routed). Never fails: if the
// variable cannot be set, the scope changes nothing.
class master_scope {
public:
    master_scope() noexcept;
    ~master_scope();
    master_scope(const master_scope&) = delete;
    master_scope& operator=(const master_scope&) = delete;

private:
    splitcore::py_ref m_token;  // ContextVar.set's token, to reset the variable; empty: nothing set
};

}  // namespace splitbrain_core
