#include <Python.h>

#include "embedded_python.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "splitcore/errors.hpp"

#ifndef SPLITBRAIN_VENV
#define SPLITBRAIN_VENV ""
#endif

namespace splitbrain {
namespace {
bool is_executable(const std::string& path) {
    // A directory is "executable" to access(2): build trees have a kernel/python folder.
    struct stat info {};
    return !path.empty() && ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

std::string own_directory() {
    char buffer[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
    if (n <= 0) {
        return {};
    }
    std::string path(buffer, static_cast<std::size_t>(n));
    return path.substr(0, path.find_last_of('/'));
}

void check(PyStatus status, PyConfig& config, const char* what) {
    if (PyStatus_Exception(status)) {
        PyConfig_Clear(&config);
        std::string message = splitcore::tagged(splitcore::errc::kernel_python_failed, what);
        if (status.err_msg != nullptr) {
            message += ": ";
            message += status.err_msg;
        }
        throw std::runtime_error(message);
    }
}

// How long shutdown waits for non-daemon threads (why: _splitbrain_kernel/shutdown.py).
constexpr double thread_grace_seconds = 1.0;

// True when Python may be finalised; false when non-daemon threads outlived their grace
// and Python's exit steps other than joining them have run.
bool finish_python_threads() {
    PyObject* steps = PyImport_ImportModule("_splitbrain_kernel.shutdown");
    PyObject* outliving = nullptr;
    if (steps != nullptr) {
        PyObject* ignore = PyObject_CallMethod(steps, "ignore_interrupts", nullptr);
        Py_XDECREF(ignore);
        if (ignore != nullptr) {
            outliving = PyObject_CallMethod(steps, "threads_outliving", "d", thread_grace_seconds);
        }
    }
    bool finalize = true;
    if (outliving == nullptr) {
        PyErr_Print();  // our own code failed: fall back to CPython's way
    } else if (PyList_GET_SIZE(outliving) > 0) {
        finalize = false;
        std::ostringstream detail;
        detail << PyList_GET_SIZE(outliving) << " non-daemon thread(s) still running " << thread_grace_seconds
               << " s after shutdown was asked, left unjoined:";
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(outliving); ++i) {
            const char* name = PyUnicode_AsUTF8(PyList_GET_ITEM(outliving, i));
            detail << ' ' << (name != nullptr ? name : "?");
        }
        std::cerr << splitcore::tagged(splitcore::errc::kernel_threads_left_running, detail.str()) << std::endl;
        PyErr_Clear();
        PyObject* done = PyObject_CallMethod(steps, "exit_without_joining", nullptr);
        if (done == nullptr) {
            PyErr_Print();
        }
        Py_XDECREF(done);
    }
    Py_XDECREF(outliving);
    Py_XDECREF(steps);
    return finalize;
}
}  // namespace

std::string find_environment_python() {
    const std::string beside = own_directory() + "/python";
    if (is_executable(beside)) {
        return beside;
    }
    const std::string configured = std::string(SPLITBRAIN_VENV) + "/bin/python";
    if (std::string(SPLITBRAIN_VENV).size() > 0 && is_executable(configured)) {
        return configured;
    }
    return "/usr/bin/python3";
}

embedded_python::embedded_python(const std::string& python, int argc, char** argv) {
    // A kernel started by a shell script in the background inherits SIGINT ignored, and CPython
    // only installs its KeyboardInterrupt handler over the default disposition.
    std::signal(SIGINT, SIG_DFL);

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0;  // -f connection_file is ours, not Python's
    config.install_signal_handlers = 1;
    // getpath finds the venv from pyvenv.cfg beside program_name: sys.prefix is the venv,
    // sys.base_prefix /usr, and sys.executable this path.
    check(PyConfig_SetBytesString(&config, &config.program_name, python.c_str()), config, "program_name");
    // sys.argv is the kernel alone: IPython's application and argparse in a cell would
    // otherwise read the kernel's -f option.
    check(PyConfig_SetBytesArgv(&config, argc > 0 ? 1 : 0, argv), config, "argv");
    check(Py_InitializeFromConfig(&config), config, "initialisation");
    PyConfig_Clear(&config);
}

embedded_python::~embedded_python() {
    if (finish_python_threads()) {
        Py_FinalizeEx();
    }
    // else the process must end without finalising (main's _Exit): a thread still runs Python.
}
}  // namespace splitbrain
