// splitbrain._core.install_audit: the PEP 578 hook behind splitbrain/_audit.py. Outside any slave's
// context it costs one read of the context variable per audited event (no Python code runs); inside
// one, events of the watched set go to the Python callback, which decides whether the IO would
// happen on the master from user code and raises the local_io_in_slave_context error.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "active_slave.hpp"
#include "core.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {
namespace {

using splitcore::py_ref;
using splitcore::python_error;

// What install_audit() set. Made once and never destroyed (the hook outlives the interpreter's
// teardown of module state).
struct audit_state {
    py_ref callback;                              // (slave, event, args) -> None, or raises
    std::vector<std::string> names;               // the watched event names
    std::unordered_set<std::string_view> events;  // views of `names`: looked up without a copy
    bool installed = false;
};
audit_state& state = *new audit_state();
thread_local bool in_callback = false;  // the callback's own audited calls (sys._getframe) pass

int audit_hook(const char* event, PyObject* args, void*) {
    if (in_callback || !state.callback) return 0;
    py_ref slave;
    try {
        slave = active_slave();
    } catch (const python_error&) {
        return -1;
    }
    if (!slave || state.events.count(event) == 0) return 0;
    in_callback = true;
    py_ref name = py_ref::steal(PyUnicode_FromString(event));
    py_ref result;
    if (name) {
        PyObject* call_args[] = {slave.get(), name.get(), args};
        result = py_ref::steal(PyObject_Vectorcall(state.callback.get(), call_args, 3, nullptr));
    }
    in_callback = false;
    return result ? 0 : -1;
}

// install_audit(callback, events): callback(slave, event, args) for each event of the iterable
// *events* while a slave is active. Once per process (an audit hook cannot be removed); a second
// call replaces the callback and the events.
py_ref install_audit(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyCallable_Check(args[0])) {
        throw python_error::make(PyExc_TypeError, "install_audit(callback, events)");
    }
    std::vector<std::string> names;
    py_ref iterator = py_ref::checked(PyObject_GetIter(args[1]));
    while (py_ref item = py_ref::steal(PyIter_Next(iterator.get()))) {
        const char* text = PyUnicode_AsUTF8(item.get());
        if (text == nullptr) throw python_error();
        names.emplace_back(text);
    }
    if (PyErr_Occurred()) throw python_error();
    state.callback = py_ref::borrow(args[0]);
    state.events.clear();  // its views into the old names go first
    state.names = std::move(names);
    state.events.insert(state.names.begin(), state.names.end());
    if (!state.installed) {
        if (PySys_AddAuditHook(audit_hook, nullptr) < 0) throw python_error();
        state.installed = true;
    }
    return py_ref::borrow(Py_None);
}

PyMethodDef audit_functions[] = {
    {"install_audit", method(boundary<install_audit>), METH_FASTCALL,
     "install_audit(callback, events): callback(slave, event, args) for the audited events named in "
     "*events* while a slave is active"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void add_audit_functions(PyObject* module) {
    if (PyModule_AddFunctions(module, audit_functions) < 0) throw python_error();
}

}  // namespace splitbrain_core
