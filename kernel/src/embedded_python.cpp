#include <Python.h>

#include "embedded_python.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
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
        Py_FinalizeEx();
    }
}
