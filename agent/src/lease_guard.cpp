#include "lease_guard.hpp"

namespace splitbrain::agent {

using splitcore::py_ref;

namespace {

// The guard, in Python: it runs inside the user's interpreter, so it keeps to the standard library.
constexpr const char* guard_source = R"PY(
import os, sys, json

class Leased(RuntimeError):
    """Opening a resource another key leased (not an OSError: pyserial would re-wrap that)."""

state = {"file": None, "key": None, "stamp": None, "leases": [], "busy": False}

def _same(a, b):
    if a.startswith("/") or b.startswith("/"):
        return os.path.realpath(a) == os.path.realpath(b)
    return a.upper() == b.upper()

def _refresh():
    try:
        st = os.stat(state["file"])
    except OSError:
        state["leases"] = []
        return
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    if stamp == state["stamp"]:
        return
    with open(state["file"], encoding="utf-8") as f:
        state["leases"] = json.load(f)
    state["stamp"] = stamp

def check(resource):
    if state["file"] is None or state["busy"] or not isinstance(resource, str):
        return
    state["busy"] = True
    try:
        _refresh()
        held = [l for l in state["leases"] if _same(l["resource"], resource) or
                (resource.upper().startswith("ASRL") and _same(l["resource"], resource[4:].split("::")[0]))]
        if held and not any(l["key"] == state["key"] for l in held):
            raise Leased(held[0]["detail"])
    finally:
        state["busy"] = False

def _no_leases():
    # True when the lease file names no lease now: then no open can be refused, and a path outside
    # /dev/ need not be resolved (realpath: an lstat and Python per component, for every open).
    if state["busy"]:
        return False
    state["busy"] = True
    try:
        _refresh()
    except Exception:  # unreadable now: resolve the path, as check() would
        return False
    finally:
        state["busy"] = False
    return not state["leases"]

def _hook(event, args):
    if event == "import" and state["file"] is not None and "pyvisa.highlevel" in sys.modules:
        patch_pyvisa()
    elif event == "open" and args and isinstance(args[0], str) and state["file"] is not None:
        path = args[0]
        if path.startswith("/dev/") or (not _no_leases() and os.path.realpath(path).startswith("/dev/")):
            check(path)

def patch_pyvisa():
    highlevel = sys.modules.get("pyvisa.highlevel")
    manager = getattr(highlevel, "ResourceManager", None)  # None while pyvisa.highlevel is still loading
    if manager is None or getattr(manager.open_resource, "_splitbrain_guarded", False):
        return
    original = manager.open_resource
    def open_resource(self, resource_name, *args, **kwargs):
        check(resource_name)
        return original(self, resource_name, *args, **kwargs)
    open_resource._splitbrain_guarded = True
    open_resource.__wrapped__ = original
    manager.open_resource = open_resource

sys.addaudithook(_hook)
)PY";

}  // namespace

void lease_guard::prepare() {
    if (!m_module) {
        py_ref globals = py_ref::checked(PyDict_New());
        if (PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins()) < 0)
            throw splitcore::python_error();
        py_ref name = py_ref::checked(PyUnicode_FromString("__splitbrain_leases__"));
        if (PyDict_SetItemString(globals.get(), "__name__", name.get()) < 0) throw splitcore::python_error();
        py_ref code = py_ref::checked(Py_CompileString(guard_source, "<splitbrain lease guard>", Py_file_input));
        py_ref done = py_ref::checked(PyEval_EvalCode(code.get(), globals.get(), globals.get()));
        m_module = std::move(globals);
    }
}

void lease_guard::set(const splitcore::json* limits) {
    if (limits == nullptr || !limits->is_object() || !limits->contains("leases")) return;
    prepare();
    PyObject* state = PyDict_GetItemString(m_module.get(), "state");
    py_ref file = py_ref::checked(PyUnicode_FromString(limits->value("leases", std::string()).c_str()));
    py_ref key = py_ref::checked(PyUnicode_FromString(limits->value("key", std::string()).c_str()));
    if (state == nullptr || PyDict_SetItemString(state, "file", file.get()) < 0 ||
        PyDict_SetItemString(state, "key", key.get()) < 0) {
        throw splitcore::python_error();
    }
    after_import();
}

void lease_guard::after_import() {
    if (!m_module) return;
    PyObject* patch = PyDict_GetItemString(m_module.get(), "patch_pyvisa");
    if (patch == nullptr) return;
    py_ref done = py_ref::checked(PyObject_CallNoArgs(patch));
}

std::optional<std::string> lease_guard::leased_detail(PyObject* exc) const {
    if (!m_module || exc == nullptr) return std::nullopt;
    PyObject* marker = PyDict_GetItemString(m_module.get(), "Leased");
    if (marker == nullptr) return std::nullopt;
    PyObject* current = exc;
    for (int depth = 0; current != nullptr && current != Py_None && depth < 16; ++depth) {
        if (PyObject_IsInstance(current, marker) == 1) return splitcore::str_or(current, "");
        PyObject* next = PyException_GetCause(current);  // new references, or null
        if (next == nullptr) next = PyException_GetContext(current);
        Py_XDECREF(next);  // the chain keeps them alive while we walk it
        current = next;
    }
    PyErr_Clear();
    return std::nullopt;
}

}  // namespace splitbrain::agent
