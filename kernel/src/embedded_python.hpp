#ifndef SPLITBRAIN_KERNEL_EMBEDDED_PYTHON_HPP
#define SPLITBRAIN_KERNEL_EMBEDDED_PYTHON_HPP

#include <string>

namespace splitbrain {
// The python whose environment the kernel sees: a `python` next to the kernel executable (the
// kernel installed into a venv's bin/), else the venv configured at build time
// (SPLITBRAIN_VENV), else Debian's /usr/bin/python3.
std::string find_environment_python();

// Debian's CPython 3.11 embedded with sys.executable naming `python`, so that its venv's
// packages import. sys.argv is [argv[0]]. The calling thread becomes Python's main
// thread and holds the GIL. Destruction (GIL held) waits up to 1 s for non-daemon threads, then
// runs Py_FinalizeEx; when a thread outlives that grace it runs the atexit handlers and flushes
// sys.stdout/stderr but leaves Python initialised: the process must then end with _Exit.
class embedded_python {
public:
    embedded_python(const std::string& python, int argc, char** argv);
    ~embedded_python();

    embedded_python(const embedded_python&) = delete;
    embedded_python& operator=(const embedded_python&) = delete;
};
}  // namespace splitbrain

#endif
