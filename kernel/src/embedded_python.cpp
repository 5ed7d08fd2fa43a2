#include <Python.h>

#include "embedded_python.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <stdexcept>
#include <string>

#ifndef SPLITBRAIN_VENV
#define SPLITBRAIN_VENV ""
#endif

namespace splitbrain
{
    namespace
    {
        bool is_executable(const std::string& path)
        {
            // A directory is "executable" to access(2): build trees have a kernel/python folder.
            struct stat info{};
            return !path.empty() && ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)
                && ::access(path.c_str(), X_OK) == 0;
        }

        std::string own_directory()
        {
            char buffer[4096];
            const ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
            if (n <= 0)
            {
                return {};
            }
            std::string path(buffer, static_cast<std::size_t>(n));
            return path.substr(0, path.find_last_of('/'));
        }

        void check(PyStatus status, PyConfig& config, const char* what)
        {
            if (PyStatus_Exception(status))
            {
                PyConfig_Clear(&config);
                std::string message = std::string("[splitbrain.kernel_python_failed] ") + what;
                if (status.err_msg != nullptr)
                {
                    message += ": ";
                    message += status.err_msg;
                }
                throw std::runtime_error(message);
            }
        }

        // Py_FinalizeEx joins every non-daemon thread without limit: a cell that started
        // threading.Thread(target=time.sleep, args=(60,)) would hold the kernel until jupyter_client
        // loses patience (5 s) and kills it. The threads get a grace instead, then Python's own
        // exit steps run except that join. A SIGINT (jupyter_client interrupts before it asks for
        // shutdown) must not cut the grace or an atexit handler short, nor be reported as ignored.
        constexpr const char* shutdown_source = R"python(
import signal
import sys
import time


def ignore_interrupts():
    signal.signal(signal.SIGINT, lambda signum, frame: None)


def threads_outliving(grace):
    """The non-daemon threads still running after waiting up to `grace` seconds for them all."""
    threading = sys.modules.get("threading")
    if threading is None:
        return []
    deadline = time.monotonic() + grace
    main = threading.main_thread()
    waited = [t for t in threading.enumerate() if t is not main and not t.daemon]
    for thread in waited:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in waited if t.is_alive()]


def exit_without_joining():
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
)python";

        constexpr double thread_grace_seconds = 1.0;

        // True when Python may be finalised; false when non-daemon threads outlived their grace
        // and Python's exit steps other than joining them have run.
        bool finish_python_threads()
        {
            PyObject* globals = PyDict_New();
            PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
            PyObject* loaded = PyRun_String(shutdown_source, Py_file_input, globals, globals);
            PyObject* outliving = nullptr;
            if (loaded != nullptr)
            {
                PyObject* ignore = PyObject_CallNoArgs(PyDict_GetItemString(globals, "ignore_interrupts"));
                Py_XDECREF(ignore);
                if (ignore != nullptr)
                {
                    outliving = PyObject_CallFunction(PyDict_GetItemString(globals, "threads_outliving"), "d",
                                                      thread_grace_seconds);
                }
            }
            bool finalize = true;
            if (outliving == nullptr)
            {
                PyErr_Print();  // our own code failed: fall back to CPython's way
            }
            else if (PyList_GET_SIZE(outliving) > 0)
            {
                finalize = false;
                std::cerr << "[splitbrain.kernel_threads_left_running] " << PyList_GET_SIZE(outliving)
                          << " non-daemon thread(s) still running " << thread_grace_seconds
                          << " s after shutdown was asked, left unjoined:";
                for (Py_ssize_t i = 0; i < PyList_GET_SIZE(outliving); ++i)
                {
                    const char* name = PyUnicode_AsUTF8(PyList_GET_ITEM(outliving, i));
                    std::cerr << ' ' << (name != nullptr ? name : "?");
                }
                std::cerr << std::endl;
                PyErr_Clear();
                PyObject* done = PyObject_CallNoArgs(PyDict_GetItemString(globals, "exit_without_joining"));
                if (done == nullptr)
                {
                    PyErr_Print();
                }
                Py_XDECREF(done);
            }
            Py_XDECREF(outliving);
            Py_XDECREF(loaded);
            Py_DECREF(globals);
            return finalize;
        }
    }

    std::string find_environment_python()
    {
        const std::string beside = own_directory() + "/python";
        if (is_executable(beside))
        {
            return beside;
        }
        const std::string configured = std::string(SPLITBRAIN_VENV) + "/bin/python";
        if (std::string(SPLITBRAIN_VENV).size() > 0 && is_executable(configured))
        {
            return configured;
        }
        return "/usr/bin/python3";
    }

    embedded_python::embedded_python(const std::string& python, int argc, char** argv)
    {
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

    embedded_python::~embedded_python()
    {
        if (finish_python_threads())
        {
            Py_FinalizeEx();
        }
        // else the process must end without finalising (main's _Exit): a thread still runs Python.
    }
}
