// Python values <-> the protocol's CBOR VALUEs (docs/protocol.md, "Values"). By value or by
// reference is decided here, in one place; references go through the side's box_hooks.
// Everything here runs with the GIL held.
#pragma once

#include <Python.h>

#include <cstddef>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitcore {

// How references are made and resolved; one per side.
struct box_hooks {
    virtual ~box_hooks() = default;
    // obj is not plain data: return the CBOR for it (worker: register, {"$r": oid, "t":…, "cl":…};
    // client: a proxy of this slave → {"$r": oid}, else set a Python TypeError and throw python_error)
    virtual nlohmann::json box_reference(PyObject* obj) = 0;
    // a {"$r": …} map arrived: return a new reference (worker: table lookup, unknown →
    // error{errc::bad_object}; client: make a proxy)
    virtual py_ref unbox_reference(const nlohmann::json& ref) = 0;
    // a {"$l": eid, ...} map arrived: an object of the client's export table (a master's object by
    // reference). Worker: its proxy; client: the object itself. By default refused (bad_request).
    virtual py_ref unbox_local(const nlohmann::json& ref);
    // a {"$e": ERROR} arrived: an exception instance by value (the worker sends them so: an
    // onerror= callback gets a FileNotFoundError). By default refused (bad_request).
    virtual py_ref unbox_exception(const nlohmann::json& error);
    // a {"$n": [module, qualname]} arrived: the receiver's own object of that name (the client sends
    // builtin classes, exception classes and builtin methods so). Worker: it, found; by default
    // refused (bad_request).
    virtual py_ref unbox_named(const nlohmann::json& name);
};

// Containers nested deeper than this go by reference (encoding) or are refused (decoding).
inline constexpr int max_value_depth = 200;

// True if obj crosses by value as a whole (nothing in it needs a reference).
[[nodiscard]] bool is_plain(PyObject* obj);

// is_plain, and nothing in it can change afterwards: no bytearray, list, dict or set inside.
[[nodiscard]] bool is_frozen_plain(PyObject* obj);

// Collects raw frames for large bytes. Large bytes are sent without copying: each frame refers to
// the bytes object's buffer and holds a reference to it, dropped later under the GIL (see
// drain_deferred_decrefs) because libzmq frees frames on its own IO thread.
class encoder {
public:
    explicit encoder(box_hooks& hooks, std::size_t frame_size = bulk_frame_size);
    nlohmann::json encode(PyObject* value);     // throws python_error
    std::vector<zmq::message_t> take_frames();  // frames 1..n of the message, in order

    // Client requests: a bytearray or other writable buffer is sent as {"$w": [index, bytes]}, a
    // copy the peer may change; fill_writable(index, bytes) then writes the peer's copy back into
    // it (copy-in/copy-out: readinto, recv_into). Throws python_error.
    void send_writable_buffers() noexcept { m_copy_back = true; }
    // A set or frozenset crosses by value even when its elements are references (each element boxed
    // alone, as a tuple's are): the receiver gets a set of its own objects, so set operations and
    // comparisons work there (`{os.open, os.stat} <= os.supports_dir_fd`). The client's side.
    void send_sets_by_value() noexcept { m_sets_by_value = true; }
    // str and bytes below frame_threshold stay inline (not frames from inline_threshold on): the
    // values of an ERROR, which travels without frames (describe_exception).
    void keep_inline() noexcept { m_inline_limit = frame_threshold; }
    void fill_writable(std::size_t index, PyObject* bytes);

private:
    nlohmann::json encode_at(PyObject* value, int depth);
    nlohmann::json encode_bytes(PyObject* bytes);
    nlohmann::json encode_buffer(const char* data, std::size_t size, PyObject* owner);
    nlohmann::json encode_struct_sequence(PyObject* value, int depth);
    nlohmann::json encode_record(PyObject* value, int depth);
    nlohmann::json encode_items(PyObject* iterable, int depth);

    box_hooks& m_hooks;
    std::size_t m_frame_size;
    std::vector<zmq::message_t> m_frames;
    std::size_t m_estimate = 0;  // rough CBOR size of the value being encoded
    // str and bytes at least this long become frames
    std::size_t m_inline_limit = inline_threshold;
    bool m_copy_back = false;
    bool m_sets_by_value = false;
    std::vector<py_ref> m_writable;  // the buffers sent as "$w", by index
};

class decoder {
public:
    decoder(box_hooks& hooks, const std::vector<zmq::message_t>& frames);  // frames 1..n
    py_ref decode(const nlohmann::json& value);                            // throws python_error / error

    // After the operation ran: [[index, bytes], ...] for each "$w" buffer it changed, encoded by
    // out (the reply's "w"); empty if none changed.
    nlohmann::json changed_writables(encoder& out);

private:
    py_ref decode_at(const nlohmann::json& value, int depth);
    py_ref decode_tagged(const nlohmann::json& value, int depth);
    py_ref decode_frames(const nlohmann::json& spec);
    py_ref decode_text(const nlohmann::json& inner, int depth);
    py_ref decode_struct_sequence(const nlohmann::json& value, int depth);
    py_ref decode_record(const nlohmann::json& value, int depth);

    py_ref decode_spilled(const nlohmann::json& index, int depth);

    box_hooks& m_hooks;
    const std::vector<zmq::message_t>& m_frames;
    std::vector<bool> m_spilled_used;  // each "$H" frame is decoded at most once
    struct writable {
        std::uint64_t index;
        py_ref buffer;    // the bytearray the operation got
        py_ref original;  // its bytes as they came
    };
    std::vector<writable> m_writable;
};

// A class's MRO as [[module, qualname], ...], the class first: what the receiver needs to find the
// same class, or to mirror its bases (docs/protocol.md, "Classes").
[[nodiscard]] nlohmann::json class_lineage(PyTypeObject* type);

// exception → ERROR map of the protocol (type, msg, args, errno, strerror, filename(s), tb, mro,
// dict: the plain data of its __dict__). Fields that would be null are left out, and so is the mro
// of a type fixed_builtin_exception knows (docs/protocol.md, "Messages").
nlohmann::json describe_exception(const python_error& e, box_hooks& hooks);

// The built-in exception class of that protocol name ("builtins.FileNotFoundError"), if it is one of
// the built-in exceptions whose MRO every Python 3.6 and later shares (OSError and its subclasses,
// ValueError, KeyError, ...: an explicit list in box.cpp, without the warnings and the three that end
// a program); else null. The receiver of an ERROR without "mro" finds its class so. Borrowed.
[[nodiscard]] PyObject* fixed_builtin_exception(std::string_view type_name);

// Drops the references held by frames that libzmq has finished with. Called by encoder and decoder;
// call it from any other place that holds the GIL regularly, too.
void drain_deferred_decrefs();

}  // namespace splitcore
