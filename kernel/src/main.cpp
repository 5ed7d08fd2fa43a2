#include "pybind11/pybind11.h"

#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "xeus/xeus_context.hpp"
#include "xeus/xkernel.hpp"
#include "xeus/xkernel_configuration.hpp"

#include "splitcore/errors.hpp"

#include "embedded_python.hpp"
#include "history.hpp"
#include "interpreter.hpp"
#include "output.hpp"
#include "server.hpp"

namespace {
constexpr const char* usage =
    "usage: splitbrain-kernel [-f CONNECTION_FILE]\n"
    "\n"
    "The splitbrain Jupyter kernel (xeus-python, Python 3.11). Jupyter starts it through the\n"
    "kernelspec share/jupyter/kernels/splitbrain with -f {connection_file}. Without -f it picks\n"
    "free ports on 127.0.0.1 and prints the connection file to use with\n"
    "`jupyter console --existing`.\n";

// xkernel takes the server builder as a plain function pointer; it reaches main's output
// buffer and the interpreter through these.
splitbrain::output_buffer* the_output = nullptr;
splitbrain::kernel_interpreter* the_interpreter = nullptr;

std::unique_ptr<xeus::xserver> make_server(xeus::xcontext& context, const xeus::xconfiguration& config,
                                           nl::json::error_handler_t eh) {
    splitbrain::kernel_interpreter* interpreter = the_interpreter;
    return splitbrain::make_kernel_server(context.get_wrapped_context<zmq::context_t>(), config, eh, *the_output,
                                          [interpreter] { interpreter->start_shell(); });
}

void print_connection_info(const xeus::xconfiguration& config) {
    nl::json info = {{"transport", config.m_transport},
                     {"ip", config.m_ip},
                     {"control_port", std::stoi(config.m_control_port)},
                     {"shell_port", std::stoi(config.m_shell_port)},
                     {"stdin_port", std::stoi(config.m_stdin_port)},
                     {"iopub_port", std::stoi(config.m_iopub_port)},
                     {"hb_port", std::stoi(config.m_hb_port)},
                     {"signature_scheme", config.m_signature_scheme},
                     {"key", config.m_key}};
    std::cout << "Save this as kernel.json and run `jupyter console --existing kernel.json`:\n"
              << info.dump(4) << std::endl;
}

// Runs the kernel until a shutdown_request; returns once its sockets are closed and the
// interpreter has let go of its Python objects.
void serve(const std::string& connection_file, splitbrain::output_buffer& output) {
    auto interpreter = std::make_unique<splitbrain::kernel_interpreter>(output);
    splitbrain::kernel_interpreter& python_side = *interpreter;
    the_interpreter = &python_side;
    auto context = xeus::make_context<zmq::context_t>();
    auto eh = nl::json::error_handler_t::replace;  // bad UTF-8 from a peer is replaced, not fatal

    // Without a connection file xeus's defaults apply (tcp on 127.0.0.1, a fresh key) and the
    // server binds free ports, which the kernel's configuration then names.
    const xeus::xconfiguration config =
        connection_file.empty() ? xeus::xconfiguration{} : xeus::load_configuration(connection_file);
    xeus::xkernel kernel(config, xeus::get_user_name(), std::move(context), std::move(interpreter), make_server,
                         std::make_unique<splitbrain::ipython_history>(), nullptr, xeus::make_null_debugger,
                         nl::json::object(), eh);
    if (connection_file.empty()) {
        print_connection_info(kernel.get_config());
    }
    try {
        kernel.start();
    } catch (const std::exception& e) {
        // The server failed (not a cell: cells' errors are replies). Leave without unwinding
        // the kernel: its destructors would release Python objects from a broken state.
        std::cerr << splitcore::tagged(splitcore::errc::kernel_failed, e.what()) << std::endl;
        std::_Exit(1);
    }
    python_side.restore_standard_streams();
}
}  // namespace

int main(int argc, char* argv[]) {
    std::string connection_file;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
            connection_file = argv[++i];
        } else if (std::strcmp(argv[i], "--version") == 0) {
            std::cout << "splitbrain-kernel " SPLITBRAIN_VERSION << std::endl;
            return 0;
        } else if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
            std::cout << usage;
            return 0;
        } else {
            std::cerr << splitcore::tagged(splitcore::errc::kernel_usage,
                                           std::string("unexpected argument '") + argv[i] + "'")
                      << '\n'
                      << usage;
            return 2;
        }
    }

    // SIGINT stays blocked on this thread, and so in every thread started from it, until the
    // IPython shell exists (kernel_server::warm_up_once): an interrupt that comes earlier, before
    // CPython's handler is installed, while Python initialises or while the kernel imports and
    // creates its shell, would kill the process or raise KeyboardInterrupt in start-up code. It
    // stays pending and reaches the idle kernel afterwards, which consumes it.
    sigset_t interrupt;
    sigemptyset(&interrupt);
    sigaddset(&interrupt, SIGINT);
    pthread_sigmask(SIG_BLOCK, &interrupt, nullptr);

    // xeus announces itself on std::clog; the kernel's stderr is kept for problems.
    std::clog.setstate(std::ios_base::failbit);

    // Lives until _Exit: Python stream objects and helper threads may still reach it while
    // Python finalises.
    static splitbrain::output_buffer output;
    the_output = &output;

    int status = 0;
    try {
        splitbrain::embedded_python python(splitbrain::find_environment_python(), argc, argv);
        serve(connection_file, output);
    } catch (const std::exception& e) {
        std::cerr << splitcore::tagged(splitcore::errc::kernel_start_failed, e.what()) << std::endl;
        status = 1;
    }

    // Python is finalised; libraries' static destructors (xeus-python keeps Python modules in
    // function-local statics) must not run after that.
    std::cout.flush();
    std::fflush(nullptr);
    std::_Exit(status);
}
