#include "pybind11/pybind11.h"
#include "pybind11/stl.h"

#include "interpreter.hpp"

#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <string_view>
#include <utility>

#include "xeus-python/xeus_python_config.hpp"

#include "splitcore/errors.hpp"

namespace py = pybind11;

namespace splitbrain {
namespace {
std::string_view utf8_of(py::handle text, py::object& keep_alive) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
    if (data == nullptr) {
        // Lone surrogates cannot be sent as JSON text; they show as "?".
        PyErr_Clear();
        keep_alive = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(text.ptr(), "utf-8", "replace"));
        if (!keep_alive) {
            throw py::error_already_set();
        }
        char* bytes = nullptr;
        PyBytes_AsStringAndSize(keep_alive.ptr(), &bytes, &size);
        data = bytes;
    }
    return std::string_view(data, static_cast<std::size_t>(size));
}

// The reply to a request whose Python code raised outside the cell's own frames.
nl::json error_reply(const std::string& ename, const std::string& evalue, std::vector<std::string> traceback) {
    nl::json reply;
    reply["status"] = "error";
    reply["ename"] = ename;
    reply["evalue"] = evalue;
    reply["traceback"] = std::move(traceback);
    return reply;
}

// Never throws: a KeyboardInterrupt raised from C (no frame) has no traceback, and a value
// that cannot be printed must not cost the client its reply.
nl::json error_reply(py::error_already_set& e) {
    py::gil_scoped_acquire acquire;
    std::string ename = "Exception";
    std::string evalue;
    std::vector<std::string> lines;
    try {
        py::object type = py::reinterpret_borrow<py::object>(e.type());
        py::object value = e.value() ? py::reinterpret_borrow<py::object>(e.value()) : py::none();
        py::object trace = e.trace() ? py::reinterpret_borrow<py::object>(e.trace()) : py::none();
        if (type) {
            ename = py::str(type.attr("__name__"));
        }
        evalue = py::str(value.is_none() ? py::str("") : value);
        lines = py::module_::import("traceback")
                    .attr("format_exception")(type, value, trace)
                    .cast<std::vector<std::string>>();
    } catch (const std::exception&) {
        PyErr_Clear();
        lines = {ename + ": " + evalue};
    }
    return error_reply(ename, evalue, std::move(lines));
}

nl::json error_reply(const std::exception& e) {
    std::string evalue = splitcore::tagged(splitcore::errc::kernel_internal_error, e.what());
    return error_reply("RuntimeError", evalue, {"RuntimeError: " + evalue});
}
}  // namespace

kernel_interpreter::kernel_interpreter(output_buffer& output)
    : xpyt::interpreter(/*redirect_output_enabled=*/false, /*redirect_display_enabled=*/true), m_output(output) {}

kernel_interpreter::~kernel_interpreter() = default;

void kernel_interpreter::configure_impl() {
    // What xpyt::interpreter::configure_impl would do first; the rest is start_shell's.
    m_release_gil = std::make_unique<py::gil_scoped_release>();
    m_release_gil_at_startup = false;
}

void kernel_interpreter::start_shell() {
    if (m_shell_started) {
        return;
    }
    m_shell_started = true;
    try {
        {
            // Before xeus-python imports IPython: what the first cell does not need waits for its use.
            py::gil_scoped_acquire acquire;
            py::module_::import("_splitbrain_kernel.deferred").attr("install")();
        }
        xpyt::interpreter::configure_impl();

        py::gil_scoped_acquire acquire;
        install_output_streams();
        py::module_::import("_splitbrain_kernel.startup")
            .attr("run")(m_ipython_shell, py::cpp_function([](const std::string& detail) {
                             std::cerr << splitcore::tagged(splitcore::errc::kernel_extension_failed, detail)
                                       << std::flush;
                         }));
    } catch (py::error_already_set& e) {
        // Without its shell the kernel can serve nothing. We leave at once: unwinding would
        // release half-built Python objects and could deadlock on the GIL instead of exiting.
        // The traceback goes to the kernel's own stderr (std::cerr), as descriptor 2 leads to
        // the notebook by now.
        std::string trace;
        {
            py::gil_scoped_acquire acquire;
            trace = e.what();
        }
        std::cerr << trace << "\n"
                  << splitcore::tagged(splitcore::errc::kernel_start_failed,
                                       "the IPython shell could not be created (Python traceback above)")
                  << std::endl;
        std::_Exit(1);
    }
}

void kernel_interpreter::install_output_streams() {
    output_buffer* output = &m_output;  // outlives every Python object (see main.cpp)
    auto write = py::cpp_function([output](int stream_id, py::handle text) {
        py::object keep_alive;
        output->write(stream_id == 0 ? stream_name::out : stream_name::err, utf8_of(text, keep_alive));
    });
    auto flush = py::cpp_function([output]() {
        py::gil_scoped_release release;
        output->flush();
    });
    py::module_::import("_splitbrain_kernel.streams").attr("install")(write, flush);
}

void kernel_interpreter::restore_standard_streams() {
    py::gil_scoped_acquire acquire;
    py::module_ sys = py::module_::import("sys");
    sys.attr("stdout") = sys.attr("__stdout__");
    sys.attr("stderr") = sys.attr("__stderr__");
}

nl::json kernel_interpreter::execute_request_impl(int execution_counter, const std::string& code, bool silent,
                                                  bool store_history, nl::json user_expressions, bool allow_stdin) {
    nl::json reply;
    try {
        // Inside the try: an interrupt (or a shutdown's) that lands here is the cell's.
        colour_tracebacks(allow_stdin);
        return xpyt::interpreter::execute_request_impl(execution_counter, code, silent, store_history,
                                                       std::move(user_expressions), allow_stdin);
    } catch (py::error_already_set& e) {
        reply = error_reply(e);
    } catch (const std::exception& e) {
        reply = error_reply(e);
    }
    if (!silent) {
        publish_execution_error(reply["ename"], reply["evalue"], reply["traceback"]);
    }
    reply["payload"] = nl::json::array();
    reply["user_expressions"] = nl::json::object();
    return reply;
}

void kernel_interpreter::colour_tracebacks(bool interactive) {
    if (m_tracebacks_coloured == interactive) {
        return;
    }
    py::gil_scoped_acquire acquire;
    try {
        py::module_::import("_splitbrain_kernel.startup").attr("colour_tracebacks")(m_ipython_shell, interactive);
        m_tracebacks_coloured = interactive;
    } catch (py::error_already_set& e) {
        if (e.matches(PyExc_KeyboardInterrupt)) throw;  // meant for the cell about to run
        std::cerr << splitcore::tagged(splitcore::errc::kernel_internal_error,
                                       std::string("cannot switch the traceback colours: ") + e.what())
                  << std::endl;
    }
}

namespace {
// Completion and inspection of a `%%slave NAME` cell answer for NAME: the slave's context
// (its routed os, glob, ...) is entered around xeus-python's implementation. Without the
// splitbrain_kernel package, or when NAME is unknown, completion is the plain local one.
class cell_context {
public:
    explicit cell_context(const std::string& code) {
        py::gil_scoped_acquire acquire;
        try {
            py::object context = py::module_::import("splitbrain_kernel").attr("context_for_cell")(code);
            context.attr("__enter__")();
            m_context = std::move(context);
        } catch (py::error_already_set&) {
        }
    }

    ~cell_context() {
        if (!m_context) {
            return;
        }
        py::gil_scoped_acquire acquire;
        try {
            m_context.attr("__exit__")(py::none(), py::none(), py::none());
        } catch (py::error_already_set&) {
        }
        m_context = py::object();  // released while the GIL is held
    }

    cell_context(const cell_context&) = delete;
    cell_context& operator=(const cell_context&) = delete;

private:
    py::object m_context;
};
}  // namespace

nl::json kernel_interpreter::complete_request_impl(const std::string& code, int cursor_pos) {
    try {
        cell_context in_slave(code);
        return xpyt::interpreter::complete_request_impl(code, cursor_pos);
    } catch (py::error_already_set& e) {
        return error_reply(e);
    } catch (const std::exception& e) {
        return error_reply(e);
    }
}

nl::json kernel_interpreter::inspect_request_impl(const std::string& code, int cursor_pos, int detail_level) {
    try {
        cell_context in_slave(code);
        return xpyt::interpreter::inspect_request_impl(code, cursor_pos, detail_level);
    } catch (py::error_already_set& e) {
        return error_reply(e);
    } catch (const std::exception& e) {
        return error_reply(e);
    }
}

nl::json kernel_interpreter::is_complete_request_impl(const std::string& code) {
    try {
        return xpyt::interpreter::is_complete_request_impl(code);
    } catch (const std::exception&) {
        return nl::json{{"status", "unknown"}};
    }
}

nl::json kernel_interpreter::kernel_info_request_impl() {
    nl::json result;
    result["status"] = "ok";
    result["implementation"] = "splitbrain";
    result["implementation_version"] = SPLITBRAIN_VERSION;
    result["banner"] = "splitbrain " SPLITBRAIN_VERSION " (xeus-python " XPYT_VERSION ", Python " PY_VERSION
                       ")\n"
                       "%%slave <machine> runs a cell's os, subprocess, open, sockets, serial and VISA "
                       "on another machine; its variables stay here.\n";
    result["debugger"] = false;
    result["language_info"] = {{"name", "python"},
                               {"version", PY_VERSION},
                               {"mimetype", "text/x-python"},
                               {"file_extension", ".py"},
                               {"codemirror_mode", {{"name", "ipython"}, {"version", 3}}},
                               {"pygments_lexer", "ipython3"},
                               {"nbconvert_exporter", "python"}};
    result["help_links"] =
        nl::json::array({{{"text", "Python Reference"}, {"url", "https://docs.python.org/3.11/"}},
                         {{"text", "IPython Reference"}, {"url", "https://ipython.readthedocs.io/en/stable/"}}});
    return result;
}
}  // namespace splitbrain
