// Owning references to Python objects and the one exception type at the C++/Python boundary.
// Everything here requires the GIL unless said otherwise.
#pragma once

#include <Python.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace splitcore {

// A move-only strong reference. Null is a valid, empty state.
class py_ref {
public:
    py_ref() noexcept = default;
    py_ref(py_ref&& other) noexcept : m_ptr(other.release()) {}
    py_ref& operator=(py_ref&& other) noexcept {
        if (this != &other) {
            PyObject* old = m_ptr;
            m_ptr = other.release();
            Py_XDECREF(old);  // after the store, as Py_SETREF does: a __del__ may look at us
        }
        return *this;
    }
    py_ref(const py_ref&) = delete;
    py_ref& operator=(const py_ref&) = delete;
    ~py_ref() { Py_XDECREF(m_ptr); }

    // Takes over a new reference (the result of most C API calls).
    [[nodiscard]] static py_ref steal(PyObject* ptr) noexcept { return py_ref(ptr); }
    // Adds a reference to a borrowed pointer.
    [[nodiscard]] static py_ref borrow(PyObject* ptr) noexcept {
        Py_XINCREF(ptr);
        return py_ref(ptr);
    }
    // steal(), throwing python_error when ptr is null (the C API's failure convention).
    [[nodiscard]] static py_ref checked(PyObject* ptr);

    [[nodiscard]] PyObject* get() const noexcept { return m_ptr; }
    // Gives up ownership without a decref.
    [[nodiscard]] PyObject* release() noexcept { return std::exchange(m_ptr, nullptr); }
    void reset() noexcept { Py_CLEAR(m_ptr); }
    explicit operator bool() const noexcept { return m_ptr != nullptr; }

private:
    explicit py_ref(PyObject* ptr) noexcept : m_ptr(ptr) {}
    PyObject* m_ptr = nullptr;
};

// The Python exception that was current when it was constructed, taken out of the interpreter and
// carried through C++ (like pybind11's error_already_set). Copies share the state; the last one
// to go drops the references, taking the GIL if needed.
class python_error : public std::exception {
public:
    // Fetches (and clears) the current Python exception; if none is set, carries a SystemError.
    python_error();
    // The same, with what() only the type's name: no str() of the exception, for an error that is
    // described (describe_exception), not logged.
    struct type_name_only_t {};
    static constexpr type_name_only_t type_name_only{};
    explicit python_error(type_name_only_t);

    // Sets `type(message)` as the current exception and returns it fetched, for `throw`.
    [[nodiscard]] static python_error make(PyObject* type, const std::string& message);

    const char* what() const noexcept override { return m_state->what.c_str(); }

    [[nodiscard]] PyObject* type() const noexcept { return m_state->type.get(); }
    [[nodiscard]] PyObject* value() const noexcept { return m_state->value.get(); }
    [[nodiscard]] PyObject* traceback() const noexcept { return m_state->traceback.get(); }

    // True if the carried exception is an instance of `type` (e.g. PyExc_KeyboardInterrupt).
    [[nodiscard]] bool matches(PyObject* type) const noexcept;

    // Makes the carried exception current again (the references stay with this object too).
    void restore() const;

private:
    struct state {
        py_ref type, value, traceback;
        std::string what;
        ~state();
    };
    std::shared_ptr<state> m_state;
};

// Throws python_error if a Python exception is set.
inline void throw_if_error() {
    if (PyErr_Occurred()) throw python_error();
}

// Python's str() of obj as UTF-8, or a fallback text if that fails (never throws, clears errors).
[[nodiscard]] std::string str_or(PyObject* obj, const char* fallback);

// "module.QualName" of a type, as the protocol names types ("builtins.FileNotFoundError").
[[nodiscard]] std::string qualified_name(PyTypeObject* type);

// Scope objects for the GIL.
class gil_release {  // constructed with the GIL held; releases it for the scope
public:
    gil_release() noexcept : m_state(PyEval_SaveThread()) {}
    ~gil_release() { PyEval_RestoreThread(m_state); }
    gil_release(const gil_release&) = delete;
    gil_release& operator=(const gil_release&) = delete;

private:
    PyThreadState* m_state;
};

class gil_acquire {  // from any thread with a Python thread state or none
public:
    gil_acquire() noexcept : m_state(PyGILState_Ensure()) {}
    ~gil_acquire() { PyGILState_Release(m_state); }
    gil_acquire(const gil_acquire&) = delete;
    gil_acquire& operator=(const gil_acquire&) = delete;

private:
    PyGILState_STATE m_state;
};

}  // namespace splitcore
