// The worker's side of resource leases (leases.hpp): an audit hook (PEP 578) on "open" events
// (serial ports, any device path) and a wrapper around pyvisa's ResourceManager.open_resource
// check what user code opens against the supervisor's lease table, a file it rewrites on each
// change (read again here when it changed: one stat per device open). Opening a resource another
// key leased raises a marker exception, which the reply turns into the leased id.
#pragma once

#include <Python.h>

#include <optional>
#include <string>

#include "splitcore/protocol.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain::agent {

class lease_guard {
public:
    // From the hello's "limits" ({key, leases: the table's path, ...}); installs the hook once.
    void set(const splitcore::json* limits);
    // Compiles the guard and installs its hook, which checks nothing until set() names a table:
    // the zygote does it once for all the workers it forks (their hello then only sets the state).
    void prepare();
    // After an import: wraps pyvisa's open_resource once pyvisa.highlevel is loaded.
    void after_import();
    // The detail of the marker exception in `exc` (or its context/cause chain), if there is one.
    [[nodiscard]] std::optional<std::string> leased_detail(PyObject* exc) const;

private:
    splitcore::py_ref m_module;  // the guard's namespace; null until the first hello with a table
};

}  // namespace splitbrain::agent
