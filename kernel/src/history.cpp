#include "pybind11/pybind11.h"
#include "pybind11_json/pybind11_json.hpp"

#include "history.hpp"

namespace py = pybind11;

namespace splitbrain {
namespace {
// Calls IPython's HistoryManager.<method>(*args, raw=, output=, **kwargs) and shapes the
// reply as ipykernel does: entries [session, line, input] or [session, line, [input, output]].
nl::json ask_ipython(const char* method, py::tuple args, py::dict kwargs) {
    py::gil_scoped_acquire acquire;
    try {
        py::object shell = py::module_::import("IPython").attr("get_ipython")();
        py::object manager = shell.attr("history_manager");
        py::object session_number = manager.attr("session_number");
        py::list history;
        for (py::handle entry : manager.attr(method)(*args, **kwargs)) {
            // IPython names the current session 0 in get_range; clients want its number.
            py::list fields(py::reinterpret_borrow<py::object>(entry));
            if (fields[0].cast<int>() == 0) {
                fields[0] = session_number;
            }
            history.append(fields);
        }
        nl::json reply;
        reply["status"] = "ok";
        reply["history"] = history;
        return reply;
    } catch (py::error_already_set& e) {
        nl::json reply;
        reply["status"] = "error";
        reply["ename"] = py::str(e.type().attr("__name__")).cast<std::string>();
        reply["evalue"] = py::str(e.value()).cast<std::string>();
        reply["traceback"] = nl::json::array();
        reply["history"] = nl::json::array();
        return reply;
    }
}
}  // namespace

void ipython_history::configure_impl() {}

void ipython_history::store_inputs_impl(int, int, const std::string&, const std::string&) {}

nl::json ipython_history::get_tail_impl(int n, bool raw, bool output) const {
    py::gil_scoped_acquire acquire;
    return ask_ipython("get_tail", py::make_tuple(n),
                       py::dict(py::arg("raw") = raw, py::arg("output") = output, py::arg("include_latest") = true));
}

nl::json ipython_history::get_range_impl(int session, int start, int stop, bool raw, bool output) const {
    py::gil_scoped_acquire acquire;
    return ask_ipython("get_range", py::make_tuple(session, start, stop),
                       py::dict(py::arg("raw") = raw, py::arg("output") = output));
}

nl::json ipython_history::search_impl(const std::string& pattern, bool raw, bool output, int n, bool unique) const {
    py::gil_scoped_acquire acquire;
    return ask_ipython(
        "search", py::make_tuple(pattern),
        py::dict(py::arg("raw") = raw, py::arg("output") = output, py::arg("n") = n, py::arg("unique") = unique));
}
}  // namespace splitbrain
