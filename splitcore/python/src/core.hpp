// What the parts of splitbrain._core share: the boundary between C++ and the C API (how errors
// cross it, and the one wrapper every entry point goes through) and the types' set-up functions.
#pragma once

#include <Python.h>

#include <string_view>
#include <type_traits>

#include "splitcore/errors.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

// A splitcore::error raised as `type` instead of the type splitbrain._errors maps its id to: the
// header fields the client refuses itself stay the ValueError/TypeError they always were.
class error_as : public splitcore::error {
public:
    error_as(PyObject* type, splitcore::errc code, std::string_view detail)
        : splitcore::error(code, detail), m_type(type) {}
    [[nodiscard]] PyObject* type() const noexcept { return m_type; }

private:
    PyObject* m_type;  // borrowed: one of the interpreter's built-in exception types (PyExc_*)
};

// Raises the exception type splitbrain._errors maps `code` to (RuntimeError before that table is
// set), or `type` when given, with `message` (already tagged()) and `.code` set to the id's name.
void raise_error(splitcore::errc code, const char* message, PyObject* type = nullptr);

// Sets a Python exception for whatever C++ exception is in flight; call inside catch (...).
void set_python_error_from_current();

namespace detail {

template <typename R>
struct c_result {
    using type = R;
};
template <>
struct c_result<splitcore::py_ref> {
    using type = PyObject*;
};

template <auto F, typename Signature>
struct entry_point;

template <auto F, typename R, typename... Args>
struct entry_point<F, R (*)(Args...)> {
    static typename c_result<R>::type call(Args... args) noexcept {
        static_assert(std::is_same_v<R, splitcore::py_ref> || std::is_same_v<R, PyObject*> || std::is_same_v<R, int>,
                      "an entry point returns an object (py_ref or the C API's PyObject*) or a status (int)");
        try {
            if constexpr (std::is_same_v<R, splitcore::py_ref>) {
                return F(args...).release();
            } else {
                return F(args...);
            }
        } catch (...) {
            set_python_error_from_current();
            if constexpr (std::is_same_v<R, int>) {
                return -1;
            } else {
                return nullptr;
            }
        }
    }
};

}  // namespace detail

// The one boundary: boundary<f> is f as a C API function of the same parameters. f throws to fail
// (python_error, splitcore::error, anything); the boundary turns that into the C API's failure
// (null or -1) with the Python exception set. f returns a py_ref (released to the caller), the C
// API's own PyObject* (null with an exception set is passed through), or an int status.
template <auto F>
inline constexpr auto boundary = &detail::entry_point<F, decltype(F)>::call;

// A function as a PyMethodDef's ml_meth, whatever its parameters (METH_FASTCALL, a typed self).
template <typename F>
PyCFunction method(F* function) noexcept {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(function));
}

// Adds `value` to `module` as `name`; throws python_error on failure.
void add_object(PyObject* module, const char* name, PyObject* value);

// Add the Connection type and the routed module type with its functions to the module.
void add_connection_type(PyObject* module);
void add_routed_types(PyObject* module);
// install_audit (audit.cpp).
void add_audit_functions(PyObject* module);

}  // namespace splitbrain_core
