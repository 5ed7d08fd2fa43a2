#include "pybind11/pybind11.h"
#include "pybind11/eval.h"
#include "pybind11/stl.h"

#include "interpreter.hpp"

#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <string_view>
#include <utility>

#include "xeus-python/xeus_python_config.hpp"

namespace py = pybind11;

namespace splitbrain
{
    namespace
    {
        constexpr const char* streams_source = R"python(
import io


class KernelStream(io.TextIOBase):
    """sys.stdout / sys.stderr of the splitbrain kernel.

    Any thread may write. Text reaches the frontend coalesced: at most 50 ms after it was
    written, at once when 64 KiB are pending, on flush(), and always before the cell's result,
    a display, an input() prompt and the end of the cell. fileno() is the kernel process's own
    descriptor (for faulthandler and subprocesses), which does not lead to the notebook.
    """

    def __init__(self, name, stream_id, fd):
        super().__init__()
        self._name = name
        self._id = stream_id
        self._fd = fd

    @property
    def name(self):
        return "<%s>" % self._name

    @property
    def encoding(self):
        return "utf-8"

    @property
    def errors(self):
        return "strict"

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        _write(self._id, s)
        return len(s)

    def flush(self):
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        _flush()
)python";

        constexpr const char* startup_source = R"python(
import importlib
import importlib.util
import os
import sys
import traceback


def configure_matplotlib():
    # As ipykernel does: figures of plain `plt.plot(...)` appear inline.
    if "MPLBACKEND" not in os.environ and importlib.util.find_spec("matplotlib_inline") is not None:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def report_error_names(shell):
    # xeus_python_shell 0.5 reports ename as str(etype), "<class 'KeyError'>"; the protocol (and
    # nbclient, and every frontend) expects the name, "KeyError".
    def _showtraceback(etype, evalue, stb):
        shell.last_error = [getattr(etype, "__name__", str(etype)), str(evalue), stb]

    shell._showtraceback = _showtraceback

    # IPython prints a UsageError (a mistake in a magic's arguments) to stderr and the cell would
    # end "ok"; report it as the cell's error, so frontends show it and nbconvert stops on it.
    def show_usage_error(exc):
        shell.last_error = ["UsageError", str(exc), [f"UsageError: {exc}"]]

    shell.show_usage_error = show_usage_error


def load_splitbrain_extension(shell, report):
    """Registers the splitbrain magics (%%slave, ...) when the splitbrain package is installed.
    report(text) writes to the kernel's own stderr (descriptor 2 leads to the notebook by now)."""
    try:
        try:
            module = importlib.import_module("splitbrain_kernel")
        except ModuleNotFoundError as e:
            if e.name in ("splitbrain", "splitbrain_kernel"):
                return
            raise
        module.load_ipython_extension(shell)
        shell.extension_manager.loaded.add("splitbrain_kernel")
    except BaseException:
        report("[splitbrain.kernel_extension_failed] splitbrain_kernel.load_ipython_extension failed; "
               "the kernel runs without the splitbrain magics:\n" + traceback.format_exc())
)python";

        std::string_view utf8_of(py::handle text, py::object& keep_alive)
        {
            Py_ssize_t size = 0;
            const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
            if (data == nullptr)
            {
                // Lone surrogates cannot be sent as JSON text; they show as "?".
                PyErr_Clear();
                keep_alive = py::reinterpret_steal<py::object>(
                    PyUnicode_AsEncodedString(text.ptr(), "utf-8", "replace"));
                if (!keep_alive)
                {
                    throw py::error_already_set();
                }
                char* bytes = nullptr;
                PyBytes_AsStringAndSize(keep_alive.ptr(), &bytes, &size);
                data = bytes;
            }
            return std::string_view(data, static_cast<std::size_t>(size));
        }

        // The reply to a request whose Python code raised outside the cell's own frames.
        nl::json error_reply(const std::string& ename,
                             const std::string& evalue,
                             std::vector<std::string> traceback)
        {
            nl::json reply;
            reply["status"] = "error";
            reply["ename"] = ename;
            reply["evalue"] = evalue;
            reply["traceback"] = std::move(traceback);
            return reply;
        }

        // Never throws: a KeyboardInterrupt raised from C (no frame) has no traceback, and a value
        // that cannot be printed must not cost the client its reply.
        nl::json error_reply(py::error_already_set& e)
        {
            py::gil_scoped_acquire acquire;
            std::string ename = "Exception";
            std::string evalue;
            std::vector<std::string> lines;
            try
            {
                py::object type = py::reinterpret_borrow<py::object>(e.type());
                py::object value = e.value() ? py::reinterpret_borrow<py::object>(e.value()) : py::none();
                py::object trace = e.trace() ? py::reinterpret_borrow<py::object>(e.trace()) : py::none();
                if (type)
                {
                    ename = py::str(type.attr("__name__"));
                }
                evalue = py::str(value.is_none() ? py::str("") : value);
                lines = py::module_::import("traceback").attr("format_exception")(type, value, trace)
                            .cast<std::vector<std::string>>();
            }
            catch (const std::exception&)
            {
                PyErr_Clear();
                lines = {ename + ": " + evalue};
            }
            return error_reply(ename, evalue, std::move(lines));
        }

        nl::json error_reply(const std::exception& e)
        {
            std::string evalue = std::string("[splitbrain.kernel_internal_error] ") + e.what();
            return error_reply("RuntimeError", evalue, {"RuntimeError: " + evalue});
        }
    }

    kernel_interpreter::kernel_interpreter(output_buffer& output)
        : xpyt::interpreter(/*redirect_output_enabled=*/false, /*redirect_display_enabled=*/true)
        , m_output(output)
    {
    }

    kernel_interpreter::~kernel_interpreter() = default;

    void kernel_interpreter::configure_impl()
    {
        // What xpyt::interpreter::configure_impl would do first; the rest is start_shell's.
        m_release_gil = std::make_unique<py::gil_scoped_release>();
        m_release_gil_at_startup = false;
    }

    void kernel_interpreter::start_shell()
    {
        if (m_shell_started)
        {
            return;
        }
        m_shell_started = true;
        try
        {
            xpyt::interpreter::configure_impl();

            py::gil_scoped_acquire acquire;
            install_output_streams();
            py::dict startup;
            startup["__name__"] = "_splitbrain_kernel_startup";
            py::exec(startup_source, startup);
            startup["configure_matplotlib"]();
            startup["report_error_names"](m_ipython_shell);
            startup["load_splitbrain_extension"](m_ipython_shell, py::cpp_function([](const std::string& text)
            {
                std::cerr << text << std::flush;
            }));
        }
        catch (py::error_already_set& e)
        {
            // Without its shell the kernel can serve nothing. We leave at once: unwinding would
            // release half-built Python objects and could deadlock on the GIL instead of exiting.
            // The traceback goes to the kernel's own stderr (std::cerr), as descriptor 2 leads to
            // the notebook by now.
            std::string trace;
            {
                py::gil_scoped_acquire acquire;
                trace = e.what();
            }
            std::cerr << trace << "\n[splitbrain.kernel_start_failed] the IPython shell could not be created "
                         "(Python traceback above)" << std::endl;
            std::_Exit(1);
        }
    }

    void kernel_interpreter::install_output_streams()
    {
        output_buffer* output = &m_output;  // outlives every Python object (see main.cpp)
        py::dict streams;
        streams["__name__"] = "_splitbrain_kernel_streams";
        streams["_write"] = py::cpp_function([output](int stream_id, py::handle text)
        {
            py::object keep_alive;
            output->write(stream_id == 0 ? stream_name::out : stream_name::err, utf8_of(text, keep_alive));
        });
        streams["_flush"] = py::cpp_function([output]()
        {
            py::gil_scoped_release release;
            output->flush();
        });
        py::exec(streams_source, streams);

        py::module_ sys = py::module_::import("sys");
        sys.attr("stdout") = streams["KernelStream"]("stdout", 0, 1);
        sys.attr("stderr") = streams["KernelStream"]("stderr", 1, 2);
    }

    void kernel_interpreter::restore_standard_streams()
    {
        py::gil_scoped_acquire acquire;
        py::module_ sys = py::module_::import("sys");
        sys.attr("stdout") = sys.attr("__stdout__");
        sys.attr("stderr") = sys.attr("__stderr__");
    }

    nl::json kernel_interpreter::execute_request_impl(int execution_counter,
                                                      const std::string& code,
                                                      bool silent,
                                                      bool store_history,
                                                      nl::json user_expressions,
                                                      bool allow_stdin)
    {
        nl::json reply;
        try
        {
            return xpyt::interpreter::execute_request_impl(
                execution_counter, code, silent, store_history, std::move(user_expressions), allow_stdin);
        }
        catch (py::error_already_set& e)
        {
            reply = error_reply(e);
        }
        catch (const std::exception& e)
        {
            reply = error_reply(e);
        }
        if (!silent)
        {
            publish_execution_error(reply["ename"], reply["evalue"], reply["traceback"]);
        }
        reply["payload"] = nl::json::array();
        reply["user_expressions"] = nl::json::object();
        return reply;
    }

    namespace
    {
        // Completion and inspection of a `%%slave NAME` cell answer for NAME: the slave's context
        // (its routed os, glob, ...) is entered around xeus-python's implementation. Without the
        // splitbrain_kernel package, or when NAME is unknown, completion is the plain local one.
        class cell_context
        {
        public:

            explicit cell_context(const std::string& code)
            {
                py::gil_scoped_acquire acquire;
                try
                {
                    py::object context = py::module_::import("splitbrain_kernel").attr("context_for_cell")(code);
                    context.attr("__enter__")();
                    m_context = std::move(context);
                }
                catch (py::error_already_set&)
                {
                }
            }

            ~cell_context()
            {
                if (!m_context)
                {
                    return;
                }
                py::gil_scoped_acquire acquire;
                try
                {
                    m_context.attr("__exit__")(py::none(), py::none(), py::none());
                }
                catch (py::error_already_set&)
                {
                }
                m_context = py::object();  // released while the GIL is held
            }

            cell_context(const cell_context&) = delete;
            cell_context& operator=(const cell_context&) = delete;

        private:

            py::object m_context;
        };
    }

    nl::json kernel_interpreter::complete_request_impl(const std::string& code, int cursor_pos)
    {
        try
        {
            cell_context in_slave(code);
            return xpyt::interpreter::complete_request_impl(code, cursor_pos);
        }
        catch (py::error_already_set& e)
        {
            return error_reply(e);
        }
        catch (const std::exception& e)
        {
            return error_reply(e);
        }
    }

    nl::json kernel_interpreter::inspect_request_impl(const std::string& code, int cursor_pos, int detail_level)
    {
        try
        {
            cell_context in_slave(code);
            return xpyt::interpreter::inspect_request_impl(code, cursor_pos, detail_level);
        }
        catch (py::error_already_set& e)
        {
            return error_reply(e);
        }
        catch (const std::exception& e)
        {
            return error_reply(e);
        }
    }

    nl::json kernel_interpreter::is_complete_request_impl(const std::string& code)
    {
        try
        {
            return xpyt::interpreter::is_complete_request_impl(code);
        }
        catch (const std::exception&)
        {
            return nl::json{{"status", "unknown"}};
        }
    }

    nl::json kernel_interpreter::kernel_info_request_impl()
    {
        nl::json result;
        result["status"] = "ok";
        result["implementation"] = "splitbrain";
        result["implementation_version"] = SPLITBRAIN_VERSION;
        result["banner"] = "splitbrain " SPLITBRAIN_VERSION " (xeus-python " XPYT_VERSION ", Python " PY_VERSION ")\n"
                           "%%slave <machine> runs a cell's os, subprocess, open, sockets, serial and VISA "
                           "on another machine; its variables stay here.\n";
        result["debugger"] = false;
        result["language_info"] = {
            {"name", "python"},
            {"version", PY_VERSION},
            {"mimetype", "text/x-python"},
            {"file_extension", ".py"},
            {"codemirror_mode", {{"name", "ipython"}, {"version", 3}}},
            {"pygments_lexer", "ipython3"},
            {"nbconvert_exporter", "python"}
        };
        result["help_links"] = nl::json::array({
            {{"text", "Python Reference"}, {"url", "https://docs.python.org/3.11/"}},
            {{"text", "IPython Reference"}, {"url", "https://ipython.readthedocs.io/en/stable/"}}
        });
        return result;
    }
}
