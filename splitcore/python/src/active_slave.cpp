#include "active_slave.hpp"

namespace splitbrain_core {

using splitcore::py_ref;

namespace {
// Made once and never destroyed: a static py_ref would drop its reference at process exit, after
// the interpreter is gone.
py_ref& slave_variable = *new py_ref();
}  // namespace

void set_slave_variable(PyObject* variable) { slave_variable = py_ref::borrow(variable); }

py_ref active_slave() {
    if (!slave_variable) return {};
    PyObject* value = nullptr;
    if (PyContextVar_Get(slave_variable.get(), nullptr, &value) < 0) throw splitcore::python_error();
    py_ref slave = py_ref::steal(value);
    if (slave.get() == Py_None) slave.reset();
    return slave;
}

master_scope::master_scope() noexcept {
    if (!slave_variable) return;
    PyObject* value = nullptr;
    if (PyContextVar_Get(slave_variable.get(), nullptr, &value) < 0) {
        PyErr_Clear();
        return;
    }
    py_ref slave = py_ref::steal(value);
    if (slave && slave.get() != Py_None) {
        m_token = py_ref::steal(PyContextVar_Set(slave_variable.get(), Py_None));
        if (!m_token) PyErr_Clear();
    }
}

master_scope::~master_scope() {
    if (!m_token) return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);  // the scope may end with an exception set
    if (PyContextVar_Reset(slave_variable.get(), m_token.get()) < 0) PyErr_Clear();
    PyErr_Restore(type, value, traceback);
}

}  // namespace splitbrain_core
