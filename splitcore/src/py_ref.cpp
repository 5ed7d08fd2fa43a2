#include "splitcore/py_ref.hpp"

namespace splitcore {

py_ref py_ref::checked(PyObject* ptr) {
    if (ptr == nullptr) throw python_error();
    return py_ref(ptr);
}

std::string str_or(PyObject* obj, const char* fallback) {
    if (obj == nullptr) return fallback;
    py_ref text = py_ref::steal(PyObject_Str(obj));
    if (!text) {
        PyErr_Clear();
        return fallback;
    }
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(text.get(), &size);
    if (utf8 == nullptr) {
        PyErr_Clear();
        return fallback;
    }
    return std::string(utf8, static_cast<std::size_t>(size));
}

std::string qualified_name(PyTypeObject* type) {
    std::string module = "builtins";
    std::string name = type->tp_name;
    py_ref module_name = py_ref::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
    if (module_name && PyUnicode_Check(module_name.get())) {
        module = str_or(module_name.get(), "builtins");
    }
    PyErr_Clear();
    py_ref qualname = py_ref::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__qualname__"));
    if (qualname && PyUnicode_Check(qualname.get())) {
        name = str_or(qualname.get(), type->tp_name);
    } else if (auto dot = name.rfind('.'); dot != std::string::npos) {
        name = name.substr(dot + 1);
    }
    PyErr_Clear();
    return module + "." + name;
}

python_error::python_error() : python_error(type_name_only) {
    const std::string message = str_or(m_state->value.get(), "");
    if (!message.empty()) m_state->what += ": " + message;
}

python_error::python_error(type_name_only_t) : m_state(std::make_shared<state>()) {
    PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == nullptr) {
        PyErr_SetString(PyExc_SystemError, "splitbrain: an error was reported without a Python exception");
        PyErr_Fetch(&type, &value, &traceback);
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
    m_state->type = py_ref::steal(type);
    m_state->value = py_ref::steal(value);
    m_state->traceback = py_ref::steal(traceback);
    m_state->what = qualified_name(reinterpret_cast<PyTypeObject*>(type));
}

python_error python_error::make(PyObject* type, const std::string& message) {
    PyErr_SetString(type, message.c_str());
    return python_error();
}

bool python_error::matches(PyObject* type) const noexcept {
    return PyErr_GivenExceptionMatches(m_state->type.get(), type) != 0;
}

void python_error::restore() const {
    PyErr_Restore(py_ref::borrow(m_state->type.get()).release(), py_ref::borrow(m_state->value.get()).release(),
                  py_ref::borrow(m_state->traceback.get()).release());
}

python_error::state::~state() {
    if (!Py_IsInitialized()) {
        // The interpreter is gone; its objects went with it.
        (void)type.release();
        (void)value.release();
        (void)traceback.release();
        return;
    }
    gil_acquire gil;
    type.reset();
    value.reset();
    traceback.reset();
}

}  // namespace splitcore
