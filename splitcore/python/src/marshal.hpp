// Python values to the client's requests and back: header fields, boxed values and their frames
// (through the owner's box hooks), results, output chunks and error replies. Everything here runs
// with the GIL held and throws (python_error, splitcore::error) to fail.
#pragma once

#include <Python.h>

#include <optional>

#include <nlohmann/json.hpp>

#include "splitcore/box.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain_core {

// References as the owner (the Python Slave) makes them: _box(obj) -> an object id (a proxy of
// this slave) or text (a local path-like object); _unbox(oid, type name, callable) -> a proxy.
// _box may also return (eid, type name, callable, protocols): a local object exported by reference,
// {"$l": eid, "t", "cl", "p"}; _local(eid) gives the exported object back when a "$l" arrives.
class client_hooks final : public splitcore::box_hooks {
public:
    client_hooks(PyObject* box, PyObject* unbox, PyObject* local, PyObject* error) noexcept
        : m_box(box), m_unbox(unbox), m_local(local), m_error(error) {}

    nlohmann::json box_reference(PyObject* obj) override;
    splitcore::py_ref unbox_reference(const nlohmann::json& ref) override;
    splitcore::py_ref unbox_local(const nlohmann::json& ref) override;
    splitcore::py_ref unbox_exception(const nlohmann::json& error) override;  // _error(info) makes it

private:
    PyObject* m_box;    // borrowed from the connection, which outlives every request
    PyObject* m_unbox;  // likewise
    PyObject* m_local;  // likewise
    PyObject* m_error;  // likewise
};

// The request header. Python-side field names map to the protocol's: "o" (an object id) becomes
// the reference {"$r": id}; "v" and "k" are boxed values; "a" (arguments) is boxed item by item;
// "kw" (keyword arguments) becomes "k" = {"$d": [name, boxed value, ...]}. Everything else is plain.
[[nodiscard]] nlohmann::json build_header(PyObject* op, PyObject* fields, splitcore::encoder& encoder);

// A reply's result: a VALUE, or (hello, import, iter, the lease operations) a structure of VALUEs: maps become
// dicts, lists lists.
[[nodiscard]] splitcore::py_ref decode_result(splitcore::decoder& decoder, const nlohmann::json& value);

// An output event's arguments for the owner's _output(fd, bytes); nullopt for any other event.
struct output_chunk {
    splitcore::py_ref fd, data;
};
[[nodiscard]] std::optional<output_chunk> output_of(const splitcore::message& event);

// An error reply's "e" map as the dict the owner's _error(dict) turns into an exception: type,
// msg, strerror, tb, code (text or None), filename, filename2 (values), errno, args (a list).
[[nodiscard]] splitcore::py_ref error_info(splitcore::decoder& decoder, const splitcore::message& reply);

// The exception of an error reply whose type is one of the fixed built-in exceptions, which come without
// an "mro" (splitcore::fixed_builtin_exception), and which has no "code", "origin" or "dict": made here
// as the owner's _error makes it (_errors.exception_from_reply: the same class, args, errno, strerror,
// filenames, and the note `traceback_note` + the remote traceback, or `raised_note` without one),
// without a dict of fields nor a call into Python. Null, having decoded nothing, for any other reply.
[[nodiscard]] splitcore::py_ref builtin_exception(splitcore::decoder& decoder, const splitcore::message& reply,
                                                  PyObject* traceback_note, PyObject* raised_note);

}  // namespace splitbrain_core
