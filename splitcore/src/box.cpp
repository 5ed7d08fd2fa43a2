#include "splitcore/box.hpp"

#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace splitcore {
namespace {

using json = nlohmann::json;

std::mutex deferred_mutex;
std::vector<PyObject*> deferred_decrefs;  // guarded by deferred_mutex

// Runs on whichever thread closes the frame (often libzmq's IO thread, without the GIL).
void release_frame_owner(void* /*data*/, void* owner) {
    std::lock_guard<std::mutex> lock(deferred_mutex);
    deferred_decrefs.push_back(static_cast<PyObject*>(owner));
}

bool is_struct_sequence(PyObject* obj) {
    if (!PyTuple_Check(obj) || PyTuple_CheckExact(obj)) return false;
    PyObject* dict = Py_TYPE(obj)->tp_dict;
    return dict != nullptr && PyDict_GetItemString(dict, "n_sequence_fields") != nullptr;
}

// Plain records that cross by value (docs/protocol.md, "$o"): an explicit list, so that no class
// with behaviour of its own is copied by accident. Each is rebuilt on the receiver as that side's
// own type, `type(**fields)`; one whose fields are not all plain data goes by reference.
struct record_type {
    const char* qualified;  // the type's module.__qualname__, as the sender sees it
    const char* module;     // where the receiver finds it ...
    const char* attribute;  // ... under this name
    std::vector<const char*> fields;
};
const std::vector<record_type>& record_types() {
    static const std::vector<record_type> types = {
        {"subprocess.CompletedProcess", "subprocess", "CompletedProcess", {"args", "returncode", "stdout", "stderr"}},
        {"shutil.usage", "shutil", "_ntuple_diskusage", {"total", "used", "free"}},  // shutil.disk_usage()
    };
    return types;
}

const record_type* record_of(PyObject* obj) {
    PyTypeObject* type = Py_TYPE(obj);
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE)) return nullptr;  // all of them are classes written in Python
    for (const record_type& record : record_types()) {
        const char* short_name = std::strrchr(record.qualified, '.') + 1;
        if (std::strcmp(type->tp_name, short_name) == 0 && qualified_name(type) == record.qualified) return &record;
    }
    return nullptr;
}

bool is_plain_at(PyObject* obj, int depth, bool frozen_only = false);

// The record's fields in table order, if all of them are plain data; else empty.
std::optional<std::vector<py_ref>> record_fields(PyObject* obj, const record_type& record, int depth) {
    std::vector<py_ref> fields;
    for (const char* field : record.fields) {
        py_ref value = py_ref::steal(PyObject_GetAttrString(obj, field));
        if (!value) {
            PyErr_Clear();
            return std::nullopt;
        }
        if (!is_plain_at(value.get(), depth + 1, false)) return std::nullopt;
        fields.push_back(std::move(value));
    }
    return fields;
}

// Plain data crosses by value; with frozen_only, only what cannot change after it crossed (no
// bytearray, list, dict or set) counts.
bool is_plain_at(PyObject* obj, int depth, bool frozen_only) {
    if (obj == Py_None || PyBool_Check(obj) || PyLong_Check(obj) || PyFloat_Check(obj) || PyUnicode_Check(obj) ||
        PyBytes_Check(obj) || PyComplex_CheckExact(obj)) {
        return true;
    }
    if (PyByteArray_CheckExact(obj)) return !frozen_only;
    if (depth >= max_value_depth) return false;
    if (frozen_only && (PyList_CheckExact(obj) || PyDict_CheckExact(obj) || PySet_CheckExact(obj))) return false;
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj) || is_struct_sequence(obj)) {
        PyObject* fast = obj;  // lists and tuples are their own fast sequences
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (!is_plain_at(PySequence_Fast_GET_ITEM(fast, i), depth + 1, frozen_only)) return false;
        }
        return true;
    }
    if (PyDict_CheckExact(obj)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value)) {
            if (!is_plain_at(key, depth + 1, frozen_only) || !is_plain_at(value, depth + 1, frozen_only)) return false;
        }
        return true;
    }
    if (PyAnySet_CheckExact(obj)) {
        Py_ssize_t pos = 0;
        PyObject* key;
        Py_hash_t hash;
        while (_PySet_NextEntry(obj, &pos, &key, &hash)) {
            if (!is_plain_at(key, depth + 1, frozen_only)) return false;
        }
        return true;
    }
    if (const record_type* record = frozen_only ? nullptr : record_of(obj)) {
        return record_fields(obj, *record, depth).has_value();
    }
    return false;
}

[[noreturn]] void bad_value(const std::string& detail) { throw splitcore::error(errc::bad_request, detail); }

const json& tagged_array(const json& value, const char* tag) {
    const json& items = value.at(tag);
    if (!items.is_array()) bad_value(std::string("\"") + tag + "\" must hold an array");
    return items;
}

bool is_decimal(const std::string& text) {
    std::size_t i = (!text.empty() && text[0] == '-') ? 1 : 0;
    if (i == text.size()) return false;
    for (; i < text.size(); ++i) {
        if (text[i] < '0' || text[i] > '9') return false;
    }
    return true;
}

// A peer names the type of a struct sequence; importing whatever it names would let it run any
// module's import-time code here. So: modules already loaded, or the few that define struct
// sequences and are side-effect free.
py_ref struct_sequence_module(const std::string& name) {
    if (PyObject* loaded = PyDict_GetItemString(PyImport_GetModuleDict(), name.c_str())) return py_ref::borrow(loaded);
    static const char* const importable[] = {"os",       "posix",  "time", "pwd",        "grp",
                                             "resource", "signal", "spwd", "subprocess", "shutil"};
    for (const char* allowed : importable) {
        if (name == allowed) {
            py_ref module = py_ref::steal(PyImport_ImportModule(allowed));
            PyErr_Clear();
            return module;
        }
    }
    return {};
}

}  // namespace

py_ref box_hooks::unbox_local(const json& /*ref*/) {
    bad_value("\"$l\" (an object of the client's export table) is not accepted here");
}

py_ref box_hooks::unbox_exception(const json& /*error*/) {
    bad_value("\"$e\" (an exception by value) is not accepted here");
}

py_ref box_hooks::unbox_named(const json& /*name*/) { bad_value("\"$n\" (an object by name) is not accepted here"); }

void drain_deferred_decrefs() {
    std::vector<PyObject*> owners;
    {
        std::lock_guard<std::mutex> lock(deferred_mutex);
        owners.swap(deferred_decrefs);
    }
    for (PyObject* owner : owners) Py_DECREF(owner);
}

bool is_plain(PyObject* obj) { return is_plain_at(obj, 0); }

bool is_frozen_plain(PyObject* obj) { return is_plain_at(obj, 0, true); }

// ---------------------------------------------------------------------------------------------
// encoder

encoder::encoder(box_hooks& hooks, std::size_t frame_size)
    : m_hooks(hooks), m_frame_size(frame_size == 0 ? bulk_frame_size : frame_size) {
    drain_deferred_decrefs();
}

json encoder::encode(PyObject* value) {
    m_estimate = 0;
    json boxed = encode_at(value, 0);
    if (m_estimate < spill_threshold) return boxed;
    std::vector<std::uint8_t> cbor = json::to_cbor(boxed);
    if (cbor.size() < spill_threshold) return boxed;
    m_frames.emplace_back(cbor.data(), cbor.size());
    return json{{"$H", m_frames.size() - 1}};
}

std::vector<zmq::message_t> encoder::take_frames() { return std::exchange(m_frames, {}); }

void encoder::fill_writable(std::size_t index, PyObject* bytes) {
    if (index >= m_writable.size() || !PyBytes_Check(bytes)) bad_value("\"w\" names a buffer the request did not send");
    PyObject* target = m_writable[index].get();
    const char* data = PyBytes_AS_STRING(bytes);
    const Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    if (PyByteArray_Check(target)) {  // the callee may have resized it
        if (PyByteArray_Resize(target, size) < 0) throw python_error();
        if (size > 0) std::memcpy(PyByteArray_AS_STRING(target), data, static_cast<std::size_t>(size));
        return;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(target, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) throw python_error();
    const std::size_t length = static_cast<std::size_t>(std::min(view.len, size));
    std::memcpy(view.buf, data, length);
    PyBuffer_Release(&view);
}

json encoder::encode_bytes(PyObject* bytes) {
    char* data = nullptr;
    Py_ssize_t size = 0;
    if (PyBytes_AsStringAndSize(bytes, &data, &size) < 0) throw python_error();
    return encode_buffer(data, static_cast<std::size_t>(size), bytes);
}

// Large buffers become frames that point into owner's memory (64 MiB: 0.01 ms, against 36 ms for
// copying); owner must be immutable and keep the buffer alive.
json encoder::encode_buffer(const char* data, std::size_t total, PyObject* owner) {
    if (total < m_inline_limit) {
        m_estimate += total;
        return json::binary(std::vector<std::uint8_t>(data, data + total));
    }
    const std::size_t first = m_frames.size();
    for (std::size_t offset = 0; offset < total; offset += m_frame_size) {
        const std::size_t length = std::min(m_frame_size, total - offset);
        Py_INCREF(owner);  // owned by the frame until release_frame_owner queues it back
        m_frames.emplace_back(const_cast<char*>(data) + offset, length, &release_frame_owner, owner);
    }
    return json{{"$F", {first, m_frames.size() - first, total}}};
}

json encoder::encode_items(PyObject* iterable, int depth) {
    json items = json::array();
    py_ref iterator = py_ref::checked(PyObject_GetIter(iterable));
    while (py_ref item = py_ref::steal(PyIter_Next(iterator.get()))) {
        items.push_back(encode_at(item.get(), depth + 1));
    }
    throw_if_error();
    return items;
}

json encoder::encode_struct_sequence(PyObject* value, int depth) {
    // __reduce__ of a struct sequence is (type, (visible fields tuple, {extra name: value})).
    py_ref reduced = py_ref::checked(PyObject_CallMethod(value, "__reduce__", nullptr));
    PyObject* args = PyTuple_Check(reduced.get()) && PyTuple_GET_SIZE(reduced.get()) >= 2
                         ? PyTuple_GET_ITEM(reduced.get(), 1)
                         : nullptr;
    if (args == nullptr || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) != 2 ||
        !PyDict_Check(PyTuple_GET_ITEM(args, 1))) {
        return m_hooks.box_reference(value);
    }
    json extras = json::array();
    Py_ssize_t pos = 0;
    PyObject *name, *field;
    while (PyDict_Next(PyTuple_GET_ITEM(args, 1), &pos, &name, &field)) {
        extras.push_back(encode_at(name, depth + 1));
        extras.push_back(encode_at(field, depth + 1));
    }
    return json{{"$q", qualified_name(Py_TYPE(value))},
                {"v", encode_items(PyTuple_GET_ITEM(args, 0), depth)},
                {"x", {{"$d", std::move(extras)}}}};
}

json encoder::encode_record(PyObject* value, int depth) {
    const record_type* record = record_of(value);
    std::optional<std::vector<py_ref>> fields = record ? record_fields(value, *record, depth) : std::nullopt;
    if (!fields) return m_hooks.box_reference(value);
    json items = json::array();
    for (const py_ref& field : *fields) items.push_back(encode_at(field.get(), depth + 1));
    return json{{"$o", record->qualified}, {"f", std::move(items)}};
}

json encoder::encode_at(PyObject* value, int depth) {
    m_estimate += 9;  // the CBOR head of one item, at most
    if (value == Py_None) return nullptr;
    if (PyBool_Check(value)) return value == Py_True;
    if (PyLong_Check(value)) {
        int overflow = 0;
        const long long small = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0) {
            if (small == -1 && PyErr_Occurred()) throw python_error();
            return small;
        }
        // int's own repr: an IntEnum's str() would give its name.
        py_ref text = py_ref::checked(PyLong_Type.tp_repr(value));
        return json{{"$i", str_or(text.get(), "0")}};
    }
    if (PyFloat_Check(value)) return PyFloat_AS_DOUBLE(value);
    if (PyUnicode_Check(value)) {
        Py_ssize_t size = 0;
        const char* utf8 = PyUnicode_AsUTF8AndSize(value, &size);
        if (utf8 == nullptr) {
            // Lone surrogates (a file name decoded with surrogateescape): no valid UTF-8 exists.
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) throw python_error();
            PyErr_Clear();
            py_ref raw = py_ref::checked(PyUnicode_AsEncodedString(value, "utf-8", "surrogatepass"));
            return json{{"$u", encode_bytes(raw.get())}};
        }
        const auto length = static_cast<std::size_t>(size);
        if (length < m_inline_limit) {
            m_estimate += length;
            return std::string(utf8, length);
        }
        return json{{"$u", encode_buffer(utf8, length, value)}};  // str's UTF-8 lives as long as it does
    }
    if (PyBytes_Check(value)) return encode_bytes(value);
    if (m_copy_back && PyObject_CheckBuffer(value) && !PyBytes_Check(value)) {
        Py_buffer view;
        if (PyObject_GetBuffer(value, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) == 0) {
            py_ref copy = py_ref::steal(PyBytes_FromStringAndSize(static_cast<const char*>(view.buf), view.len));
            PyBuffer_Release(&view);
            if (!copy) throw python_error();
            m_writable.push_back(py_ref::borrow(value));
            return json{{"$w", {m_writable.size() - 1, encode_bytes(copy.get())}}};
        }
        PyErr_Clear();  // read-only or not contiguous: crosses as before
    }
    if (PyMemoryView_Check(value) && PyMemoryView_GET_BUFFER(value)->readonly) {
        // a read-only view (pathlib's write_bytes writes memoryview(data)): its bytes, as a copy
        py_ref copy = py_ref::steal(PyBytes_FromObject(value));
        if (copy) return encode_bytes(copy.get());
        PyErr_Clear();  // not contiguous, or not a format bytes() takes: by reference as before
    }
    if (PyByteArray_CheckExact(value)) {
        py_ref copy =
            py_ref::checked(PyBytes_FromStringAndSize(PyByteArray_AS_STRING(value), PyByteArray_GET_SIZE(value)));
        return json{{"$ba", encode_bytes(copy.get())}};
    }
    if (PyComplex_CheckExact(value)) {
        return json{{"$c", {PyComplex_RealAsDouble(value), PyComplex_ImagAsDouble(value)}}};
    }
    if (depth >= max_value_depth) return m_hooks.box_reference(value);
    if (PyTuple_CheckExact(value)) return json{{"$t", encode_items(value, depth)}};
    if (is_struct_sequence(value)) return encode_struct_sequence(value, depth);
    if (PyList_CheckExact(value) && is_plain_at(value, depth)) return encode_items(value, depth);
    if (PyDict_CheckExact(value) && is_plain_at(value, depth)) {
        json items = json::array();
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            items.push_back(encode_at(key, depth + 1));
            items.push_back(encode_at(item, depth + 1));
        }
        return json{{"$d", std::move(items)}};
    }
    if (PyAnySet_CheckExact(value) && (m_sets_by_value || is_plain_at(value, depth))) {
        return json{{PyFrozenSet_CheckExact(value) ? "$fs" : "$s", encode_items(value, depth)}};
    }
    if (record_of(value)) return encode_record(value, depth);
    return m_hooks.box_reference(value);
}

// ---------------------------------------------------------------------------------------------
// decoder

decoder::decoder(box_hooks& hooks, const std::vector<zmq::message_t>& frames)
    : m_hooks(hooks), m_frames(frames), m_spilled_used(frames.size(), false) {
    drain_deferred_decrefs();
}

py_ref decoder::decode(const json& value) { return decode_at(value, 0); }

json decoder::changed_writables(encoder& out) {
    json changed = json::array();
    for (const writable& w : m_writable) {
        PyObject* now = w.buffer.get();
        const Py_ssize_t size = PyByteArray_GET_SIZE(now);
        if (size == PyBytes_GET_SIZE(w.original.get()) &&
            std::memcmp(PyByteArray_AS_STRING(now), PyBytes_AS_STRING(w.original.get()),
                        static_cast<std::size_t>(size)) == 0) {
            continue;
        }
        py_ref copy = py_ref::checked(PyBytes_FromStringAndSize(PyByteArray_AS_STRING(now), size));
        changed.push_back({w.index, out.encode(copy.get())});
    }
    return changed;
}

py_ref decoder::decode_at(const json& value, int depth) {
    if (depth > max_value_depth) bad_value("value nests deeper than " + std::to_string(max_value_depth) + " levels");
    switch (value.type()) {
        case json::value_t::null:
            return py_ref::borrow(Py_None);
        case json::value_t::boolean:
            return py_ref::borrow(value.get<bool>() ? Py_True : Py_False);
        case json::value_t::number_integer:
            return py_ref::checked(PyLong_FromLongLong(value.get<std::int64_t>()));
        case json::value_t::number_unsigned:
            return py_ref::checked(PyLong_FromUnsignedLongLong(value.get<std::uint64_t>()));
        case json::value_t::number_float:
            return py_ref::checked(PyFloat_FromDouble(value.get<double>()));
        case json::value_t::string: {
            const auto& text = value.get_ref<const std::string&>();
            return py_ref::checked(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict"));
        }
        case json::value_t::binary: {
            const auto& bytes = value.get_binary();
            return py_ref::checked(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes.data()),
                                                             static_cast<Py_ssize_t>(bytes.size())));
        }
        case json::value_t::array: {
            py_ref list = py_ref::checked(PyList_New(static_cast<Py_ssize_t>(value.size())));
            Py_ssize_t i = 0;
            for (const auto& item : value) {
                PyList_SET_ITEM(list.get(), i++, decode_at(item, depth + 1).release());
            }
            return list;
        }
        case json::value_t::object:
            return decode_tagged(value, depth);
        default:
            bad_value("unsupported CBOR value");
    }
}

py_ref decoder::decode_frames(const json& spec) {
    if (!spec.is_array() || spec.size() != 3 || !as_uint(spec[0]) || !as_uint(spec[1]) || !as_uint(spec[2])) {
        bad_value("\"$F\" must be [first, count, total] of unsigned integers");
    }
    const auto first = *as_uint(spec[0]);
    const auto count = *as_uint(spec[1]);
    const auto total = *as_uint(spec[2]);
    if (first > m_frames.size() || count > m_frames.size() - first) {
        bad_value("\"$F\" names frames " + std::to_string(first) + ".." + std::to_string(first + count) +
                  " but the message has " + std::to_string(m_frames.size()));
    }
    std::uint64_t sum = 0;
    for (std::uint64_t i = first; i < first + count; ++i) sum += m_frames[i].size();
    if (sum != total)
        bad_value("\"$F\" total " + std::to_string(total) + " does not match the frames' " + std::to_string(sum) +
                  " bytes");
    py_ref bytes = py_ref::checked(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total)));
    char* out = PyBytes_AS_STRING(bytes.get());
    for (std::uint64_t i = first; i < first + count; ++i) {
        std::memcpy(out, m_frames[i].data(), m_frames[i].size());
        out += m_frames[i].size();
    }
    return bytes;
}

// {"$u": bytes}: a str's UTF-8 (surrogatepass); one frame is decoded where it lies, not copied first.
py_ref decoder::decode_text(const json& inner, int depth) {
    if (inner.is_object() && inner.size() == 1) {
        const auto spec = inner.find("$F");
        if (spec != inner.end() && spec->is_array() && spec->size() == 3 && as_uint((*spec)[1]) == 1u) {
            const auto first = as_uint((*spec)[0]);
            const auto total = as_uint((*spec)[2]);
            if (first && total && *first < m_frames.size() && m_frames[*first].size() == *total) {
                const zmq::message_t& frame = m_frames[*first];
                return py_ref::checked(PyUnicode_DecodeUTF8(static_cast<const char*>(frame.data()),
                                                            static_cast<Py_ssize_t>(frame.size()), "surrogatepass"));
            }
        }
    }
    py_ref bytes = decode_at(inner, depth + 1);  // inline bytes, several frames, or what is wrong with them
    if (!PyBytes_Check(bytes.get())) bad_value("\"$u\" must hold bytes");
    return py_ref::checked(
        PyUnicode_DecodeUTF8(PyBytes_AS_STRING(bytes.get()), PyBytes_GET_SIZE(bytes.get()), "surrogatepass"));
}

py_ref decoder::decode_spilled(const json& index, int depth) {
    const auto frame = as_uint(index);
    if (!frame || *frame >= m_frames.size()) bad_value("\"$H\" must name one of the message's frames");
    // Once only: a small header naming one big frame many times must not cost many parses.
    if (m_spilled_used[*frame]) bad_value("\"$H\" names frame " + std::to_string(*frame) + " twice");
    m_spilled_used[*frame] = true;
    const zmq::message_t& data = m_frames[*frame];
    const auto* bytes = static_cast<const std::uint8_t*>(data.data());
    const auto nesting = cbor_depth(bytes, data.size());
    if (!nesting || *nesting > max_header_depth) {
        bad_value("\"$H\" frame is not well-formed CBOR of at most " + std::to_string(max_header_depth) + " levels");
    }
    json value;
    try {
        value = json::from_cbor(bytes, bytes + data.size());
    } catch (const json::exception& e) {
        bad_value(std::string("\"$H\" frame is not valid CBOR: ") + e.what());
    }
    return decode_at(value, depth + 1);
}

py_ref decoder::decode_struct_sequence(const json& value, int depth) {
    const json& name = value.at("$q");
    if (!name.is_string() || !value.contains("v") || !value.contains("x")) {
        bad_value("\"$q\" needs a type name, \"v\" and \"x\"");
    }
    py_ref fields = py_ref::checked(PySequence_Tuple(decode_at(tagged_array(value, "v"), depth + 1).get()));
    py_ref extras = decode_at(value.at("x"), depth + 1);
    if (!PyDict_Check(extras.get())) bad_value("\"x\" of \"$q\" must be a \"$d\" map");

    // Find the type: the longest prefix that is a module, then attributes. If this side lacks it
    // (another platform), the visible fields still arrive, as a tuple.
    const auto& qualified = name.get_ref<const std::string&>();
    py_ref type;
    for (auto dot = qualified.rfind('.'); dot != std::string::npos && dot > 0; dot = qualified.rfind('.', dot - 1)) {
        py_ref module = struct_sequence_module(qualified.substr(0, dot));
        if (!module) continue;
        py_ref found = std::move(module);
        std::size_t start = dot + 1;
        while (found && start <= qualified.size()) {
            const auto end = std::min(qualified.find('.', start), qualified.size());
            found = py_ref::steal(PyObject_GetAttrString(found.get(), qualified.substr(start, end - start).c_str()));
            start = end + 1;
        }
        PyErr_Clear();
        if (found && PyType_Check(found.get()) &&
            PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(found.get()), &PyTuple_Type) &&
            PyObject_HasAttrString(found.get(), "n_sequence_fields")) {
            type = std::move(found);
        }
        break;
    }
    if (!type) return fields;
    return py_ref::checked(PyObject_CallFunctionObjArgs(type.get(), fields.get(), extras.get(), nullptr));
}

py_ref decoder::decode_record(const json& value, int depth) {
    const json& name = value.at("$o");
    if (!name.is_string() || !value.contains("f")) bad_value("\"$o\" needs a record type name and \"f\"");
    const record_type* record = nullptr;
    for (const record_type& known : record_types()) {
        if (name.get_ref<const std::string&>() == known.qualified) record = &known;
    }
    if (record == nullptr) bad_value("\"$o\" names " + name.get<std::string>() + ", which is not a plain record type");
    const json& items = tagged_array(value, "f");
    if (items.size() != record->fields.size()) {
        bad_value("\"$o\" " + name.get<std::string>() + " needs " + std::to_string(record->fields.size()) + " fields");
    }
    py_ref fields = py_ref::checked(PyDict_New());
    for (std::size_t i = 0; i < items.size(); ++i) {
        py_ref item = decode_at(items[i], depth + 1);
        if (PyDict_SetItemString(fields.get(), record->fields[i], item.get()) < 0) throw python_error();
    }
    // This side's own type (on the client, decoding runs outside any slave's context, so a routed
    // module answers with the local one).
    py_ref type;
    if (py_ref module = struct_sequence_module(record->module)) {
        type = py_ref::steal(PyObject_GetAttrString(module.get(), record->attribute));
        PyErr_Clear();
    }
    if (!type || !PyType_Check(type.get())) {
        return py_ref::checked(PySequence_Tuple(py_ref::checked(PyDict_Values(fields.get())).get()));
    }
    py_ref empty = py_ref::checked(PyTuple_New(0));
    return py_ref::checked(PyObject_Call(type.get(), empty.get(), fields.get()));
}

py_ref decoder::decode_tagged(const json& value, int depth) {
    if (value.contains("$r")) return m_hooks.unbox_reference(value);
    if (value.contains("$l")) return m_hooks.unbox_local(value);
    if (value.contains("$e")) return m_hooks.unbox_exception(value.at("$e"));
    if (value.contains("$n")) return m_hooks.unbox_named(value.at("$n"));
    if (value.contains("$q")) return decode_struct_sequence(value, depth);
    if (value.contains("$o")) return decode_record(value, depth);
    if (value.size() != 1) bad_value("a tagged value must have exactly one key");
    const auto entry = value.begin();
    const std::string& tag = entry.key();
    const json& inner = entry.value();
    if (tag == "$i") {
        if (!inner.is_string() || !is_decimal(inner.get_ref<const std::string&>())) {
            bad_value("\"$i\" must hold a decimal integer text");
        }
        return py_ref::checked(PyLong_FromString(inner.get_ref<const std::string&>().c_str(), nullptr, 10));
    }
    if (tag == "$F") return decode_frames(inner);
    if (tag == "$H") return decode_spilled(inner, depth);
    if (tag == "$u") return decode_text(inner, depth);
    if (tag == "$w") {
        if (!inner.is_array() || inner.size() != 2 || !as_uint(inner[0])) bad_value("\"$w\" must be [index, bytes]");
        py_ref bytes = decode_at(inner[1], depth + 1);
        if (!PyBytes_Check(bytes.get())) bad_value("\"$w\" must hold bytes");
        py_ref buffer = py_ref::checked(PyByteArray_FromObject(bytes.get()));
        m_writable.push_back(writable{*as_uint(inner[0]), py_ref::borrow(buffer.get()), std::move(bytes)});
        return buffer;
    }
    if (tag == "$ba") {
        py_ref bytes = decode_at(inner, depth + 1);
        if (!PyBytes_Check(bytes.get())) bad_value("\"$ba\" must hold bytes");
        return py_ref::checked(PyByteArray_FromObject(bytes.get()));
    }
    if (tag == "$c") {
        if (!inner.is_array() || inner.size() != 2 || !inner[0].is_number() || !inner[1].is_number()) {
            bad_value("\"$c\" must be [real, imag]");
        }
        return py_ref::checked(PyComplex_FromDoubles(inner[0].get<double>(), inner[1].get<double>()));
    }
    if (tag == "$t") {
        const json& items = tagged_array(value, "$t");
        py_ref tuple = py_ref::checked(PyTuple_New(static_cast<Py_ssize_t>(items.size())));
        Py_ssize_t i = 0;
        for (const auto& item : items) PyTuple_SET_ITEM(tuple.get(), i++, decode_at(item, depth + 1).release());
        return tuple;
    }
    if (tag == "$d") {
        const json& items = tagged_array(value, "$d");
        if (items.size() % 2 != 0) bad_value("\"$d\" must hold key, value pairs");
        py_ref dict = py_ref::checked(PyDict_New());
        for (std::size_t i = 0; i < items.size(); i += 2) {
            py_ref key = decode_at(items[i], depth + 1);
            py_ref item = decode_at(items[i + 1], depth + 1);
            if (PyDict_SetItem(dict.get(), key.get(), item.get()) < 0) throw python_error();
        }
        return dict;
    }
    if (tag == "$s" || tag == "$fs") {
        py_ref set = py_ref::checked(tag == "$s" ? PySet_New(nullptr) : PyFrozenSet_New(nullptr));
        for (const auto& item : tagged_array(value, tag.c_str())) {
            py_ref element = decode_at(item, depth + 1);
            if (PySet_Add(set.get(), element.get()) < 0) throw python_error();
        }
        return set;
    }
    bad_value("unknown tagged value \"" + tag + "\"");
}

// ---------------------------------------------------------------------------------------------

json class_lineage(PyTypeObject* type) {
    json lineage = json::array();
    PyObject* mro = type->tp_mro;
    const Py_ssize_t n = mro != nullptr && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* entry = PyTuple_GET_ITEM(mro, i);
        py_ref module = py_ref::steal(PyObject_GetAttrString(entry, "__module__"));
        PyErr_Clear();
        py_ref qualname = py_ref::steal(PyObject_GetAttrString(entry, "__qualname__"));
        PyErr_Clear();
        lineage.push_back({str_or(module.get(), "builtins"),
                           str_or(qualname.get(), reinterpret_cast<PyTypeObject*>(entry)->tp_name)});
    }
    return lineage;
}

namespace {

// A str as UTF-8, or nullopt (not a str, or lone surrogates): the caller takes the general way.
std::optional<std::string> utf8_of(PyObject* text) {
    if (text == nullptr || !PyUnicode_Check(text)) return std::nullopt;
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == nullptr) {
        PyErr_Clear();
        return std::nullopt;
    }
    return std::string(utf8, static_cast<std::size_t>(size));
}

// Whether linecache has no line to show for this file: a "<...>" name it holds nothing for
// (linecache.updatecache gives such names no lines; lazycache and checkcache leave them alone).
bool without_source(PyObject* filename, PyObject* linecache_cache) {
    if (!PyUnicode_Check(filename)) return false;
    const Py_ssize_t length = PyUnicode_GET_LENGTH(filename);
    if (length < 1 || PyUnicode_READ_CHAR(filename, 0) != '<' || PyUnicode_READ_CHAR(filename, length - 1) != '>') {
        return false;
    }
    if (linecache_cache == nullptr) return true;
    const int held = PyDict_Contains(linecache_cache, filename);
    if (held < 0) PyErr_Clear();
    return held == 0;
}

// traceback.format_exception's text, written here for the common case of a worker's error: every
// frame without a source line to show (the worker's call stub "<splitbrain>", open()'s helper named
// as it), nothing chained, no notes, not a SyntaxError nor an exception group, sys.tracebacklimit
// unset. The traceback module takes 25-50 µs per error for that; this takes a few. Anything else is
// nullopt, and the traceback module formats it. Same text, line for line, as Lib/traceback.py of
// 3.11: co_positions' line (tb_lineno without one), StackSummary.format's cut-off of a line
// repeated more than 3 times, format_exception_only's type name. tests/splitcore/test_box.cpp
// compares the two.
std::optional<std::string> sourceless_traceback_text(PyObject* value, PyObject* traceback,
                                                     const std::optional<std::string>& message_text) {
    if (value == nullptr || !PyExceptionInstance_Check(value)) return std::nullopt;
    PyTypeObject* type = Py_TYPE(value);
    if (PyType_IsSubtype(type, reinterpret_cast<PyTypeObject*>(PyExc_SyntaxError)) ||
        PyType_IsSubtype(type, reinterpret_cast<PyTypeObject*>(PyExc_BaseExceptionGroup))) {
        return std::nullopt;
    }
    if (PySys_GetObject("tracebacklimit") != nullptr) return std::nullopt;
    py_ref cause = py_ref::steal(PyException_GetCause(value));
    py_ref context = py_ref::steal(PyException_GetContext(value));
    if (cause || (context && !reinterpret_cast<PyBaseExceptionObject*>(value)->suppress_context)) return std::nullopt;
    static PyObject* const notes_name = PyUnicode_InternFromString("__notes__");  // immortal once interned here
    PyObject* notes = nullptr;
    const int has_notes = notes_name != nullptr ? _PyObject_LookupAttr(value, notes_name, &notes) : 1;
    Py_XDECREF(notes);
    if (has_notes != 0) {
        PyErr_Clear();
        return std::nullopt;
    }

    py_ref linecache = py_ref::steal(PyImport_GetModule(py_ref::checked(PyUnicode_FromString("linecache")).get()));
    PyErr_Clear();
    py_ref cache = linecache ? py_ref::steal(PyObject_GetAttrString(linecache.get(), "cache")) : py_ref();
    PyErr_Clear();
    if (linecache && (!cache || !PyDict_Check(cache.get()))) return std::nullopt;

    std::string text;
    if (traceback != nullptr && PyTraceBack_Check(traceback)) text = "Traceback (most recent call last):\n";
    constexpr int recursive_cutoff = 3;
    std::string last;
    int count = 0;
    auto cut_repeats = [&] {
        if (count > recursive_cutoff) {
            const int more = count - recursive_cutoff;
            text += "  [Previous line repeated " + std::to_string(more) + " more time" + (more > 1 ? "s" : "") + "]\n";
        }
    };
    for (auto* tb = reinterpret_cast<PyTracebackObject*>(traceback); tb != nullptr && PyTraceBack_Check(tb);
         tb = tb->tb_next) {
        py_ref code = py_ref::steal(reinterpret_cast<PyObject*>(PyFrame_GetCode(tb->tb_frame)));
        auto* co = reinterpret_cast<PyCodeObject*>(code.get());
        if (!without_source(co->co_filename, cache.get())) return std::nullopt;
        int line = -1, column = 0, end_line = 0, end_column = 0;
        if (tb->tb_lasti >= 0) PyCode_Addr2Location(co, tb->tb_lasti, &line, &column, &end_line, &end_column);
        if (line < 0) line = tb->tb_lineno;
        const std::optional<std::string> filename = utf8_of(co->co_filename), name = utf8_of(co->co_name);
        if (!filename || !name) return std::nullopt;
        std::string entry = "  File \"" + *filename + "\", line " + std::to_string(line) + ", in " + *name + "\n";
        if (entry != last) {
            cut_repeats();
            last = entry;
            count = 0;
        }
        if (++count <= recursive_cutoff) text += entry;
    }
    cut_repeats();

    py_ref qualname = py_ref::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__qualname__"));
    py_ref module = py_ref::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
    PyErr_Clear();
    std::optional<std::string> type_name = utf8_of(qualname.get());
    if (!type_name || !module) return std::nullopt;
    if (!PyUnicode_Check(module.get())) {
        *type_name = "<unknown>." + *type_name;
    } else {
        const std::optional<std::string> module_name = utf8_of(module.get());
        if (!module_name) return std::nullopt;
        if (*module_name != "__main__" && *module_name != "builtins") *type_name = *module_name + "." + *type_name;
    }
    if (!message_text) return std::nullopt;  // "<exception str() failed>": the traceback module's words
    text += message_text->empty() ? *type_name + "\n" : *type_name + ": " + *message_text + "\n";
    return text;
}

// The lineage of a type that cannot change: a static (non-heap) type, the built-in exceptions.
const json& static_lineage(PyTypeObject* type) {
    static std::unordered_map<PyTypeObject*, json> known;  // the GIL guards it; static types never die
    auto found = known.find(type);
    if (found == known.end()) found = known.emplace(type, class_lineage(type)).first;
    return found->second;
}

// The built-in exceptions an ERROR names without its "mro" (fixed_builtin_exception): each has had
// the same MRO since Python 3.6. Not the warnings, nor SystemExit, KeyboardInterrupt and
// GeneratorExit, which the receiver treats apart.
const std::unordered_map<std::string_view, PyObject*>& fixed_builtin_exceptions() {
    static const std::unordered_map<std::string_view, PyObject*> table = {
        {"builtins.BaseException", PyExc_BaseException},
        {"builtins.Exception", PyExc_Exception},
        {"builtins.ArithmeticError", PyExc_ArithmeticError},
        {"builtins.AssertionError", PyExc_AssertionError},
        {"builtins.AttributeError", PyExc_AttributeError},
        {"builtins.BufferError", PyExc_BufferError},
        {"builtins.EOFError", PyExc_EOFError},
        {"builtins.FloatingPointError", PyExc_FloatingPointError},
        {"builtins.ImportError", PyExc_ImportError},
        {"builtins.ModuleNotFoundError", PyExc_ModuleNotFoundError},
        {"builtins.IndexError", PyExc_IndexError},
        {"builtins.KeyError", PyExc_KeyError},
        {"builtins.LookupError", PyExc_LookupError},
        {"builtins.MemoryError", PyExc_MemoryError},
        {"builtins.NameError", PyExc_NameError},
        {"builtins.NotImplementedError", PyExc_NotImplementedError},
        {"builtins.OverflowError", PyExc_OverflowError},
        {"builtins.RecursionError", PyExc_RecursionError},
        {"builtins.ReferenceError", PyExc_ReferenceError},
        {"builtins.RuntimeError", PyExc_RuntimeError},
        {"builtins.StopIteration", PyExc_StopIteration},
        {"builtins.StopAsyncIteration", PyExc_StopAsyncIteration},
        {"builtins.SyntaxError", PyExc_SyntaxError},
        {"builtins.IndentationError", PyExc_IndentationError},
        {"builtins.TabError", PyExc_TabError},
        {"builtins.SystemError", PyExc_SystemError},
        {"builtins.TypeError", PyExc_TypeError},
        {"builtins.UnboundLocalError", PyExc_UnboundLocalError},
        {"builtins.UnicodeError", PyExc_UnicodeError},
        {"builtins.UnicodeDecodeError", PyExc_UnicodeDecodeError},
        {"builtins.UnicodeEncodeError", PyExc_UnicodeEncodeError},
        {"builtins.UnicodeTranslateError", PyExc_UnicodeTranslateError},
        {"builtins.ValueError", PyExc_ValueError},
        {"builtins.ZeroDivisionError", PyExc_ZeroDivisionError},
        {"builtins.OSError", PyExc_OSError},
        {"builtins.BlockingIOError", PyExc_BlockingIOError},
        {"builtins.ChildProcessError", PyExc_ChildProcessError},
        {"builtins.ConnectionError", PyExc_ConnectionError},
        {"builtins.BrokenPipeError", PyExc_BrokenPipeError},
        {"builtins.ConnectionAbortedError", PyExc_ConnectionAbortedError},
        {"builtins.ConnectionRefusedError", PyExc_ConnectionRefusedError},
        {"builtins.ConnectionResetError", PyExc_ConnectionResetError},
        {"builtins.FileExistsError", PyExc_FileExistsError},
        {"builtins.FileNotFoundError", PyExc_FileNotFoundError},
        {"builtins.InterruptedError", PyExc_InterruptedError},
        {"builtins.IsADirectoryError", PyExc_IsADirectoryError},
        {"builtins.NotADirectoryError", PyExc_NotADirectoryError},
        {"builtins.PermissionError", PyExc_PermissionError},
        {"builtins.ProcessLookupError", PyExc_ProcessLookupError},
        {"builtins.TimeoutError", PyExc_TimeoutError},
    };
    return table;
}

}  // namespace

PyObject* fixed_builtin_exception(std::string_view type_name) {
    const auto& table = fixed_builtin_exceptions();
    const auto found = table.find(type_name);
    return found == table.end() ? nullptr : found->second;
}

json describe_exception(const python_error& e, box_hooks& hooks) {
    PyObject* value = e.value();
    auto* type = reinterpret_cast<PyTypeObject*>(e.type());
    py_ref message = value != nullptr ? py_ref::steal(PyObject_Str(value)) : py_ref();
    const std::optional<std::string> message_text = utf8_of(message.get());
    PyErr_Clear();
    std::string type_name = qualified_name(type);
    // One of the fixed built-in exceptions itself (not a class of the same name): its "mro" goes without saying.
    const bool fixed = fixed_builtin_exception(type_name) == reinterpret_cast<PyObject*>(type);
    json error = {{"type", std::move(type_name)}, {"msg", message_text.value_or("")}, {"args", json::array()}};
    if (!fixed) {
        error["mro"] = PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE) ? class_lineage(type) : static_lineage(type);
    }
    encoder values(hooks);
    values.keep_inline();  // an ERROR has no frames
    auto encode_or_repr = [&](PyObject* obj) -> json {
        try {
            json boxed = values.encode(obj);
            if (values.take_frames().empty()) return boxed;
        } catch (const python_error&) {
            (void)values.take_frames();
        }
        py_ref text = py_ref::steal(PyObject_Repr(obj));
        PyErr_Clear();
        return str_or(text.get(), "<unrepresentable>");
    };
    if (value != nullptr) {
        // A fixed built-in's fields are its C struct's (no subclass can have made them properties).
        const bool direct = fixed && Py_TYPE(value) == type;
        py_ref args = direct ? py_ref::borrow(reinterpret_cast<PyBaseExceptionObject*>(value)->args)
                             : py_ref::steal(PyObject_GetAttrString(value, "args"));
        if (args && PyTuple_Check(args.get())) {
            json& items = error["args"];
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args.get()); ++i) {
                items.push_back(encode_or_repr(PyTuple_GET_ITEM(args.get(), i)));
            }
        }
        PyErr_Clear();
        if (PyObject_TypeCheck(value, reinterpret_cast<PyTypeObject*>(PyExc_OSError))) {
            auto* os_error = reinterpret_cast<PyOSErrorObject*>(value);
            const std::pair<const char*, PyObject*> fields[] = {{"errno", os_error->myerrno},
                                                                {"strerror", os_error->strerror},
                                                                {"filename", os_error->filename},
                                                                {"filename2", os_error->filename2}};
            for (const auto& [name, slot] : fields) {
                py_ref attribute = direct ? py_ref::borrow(slot) : py_ref::steal(PyObject_GetAttrString(value, name));
                if (attribute && attribute.get() != Py_None) error[name] = encode_or_repr(attribute.get());
                PyErr_Clear();
            }
        }
        // The attributes a Python __init__ set (CalledProcessError's returncode, cmd, output,
        // stderr): the receiver rebuilds the exception with them instead of guessing __init__'s
        // signature. Dunders (__notes__) and what cannot travel stay here.
        PyObject** dict_slot = _PyObject_GetDictPtr(value);
        if (dict_slot != nullptr && *dict_slot != nullptr && PyDict_Check(*dict_slot)) {
            json pairs = json::array();
            py_ref underscores = py_ref::checked(PyUnicode_FromString("__"));
            Py_ssize_t pos = 0;
            PyObject *name, *attribute;
            while (PyDict_Next(*dict_slot, &pos, &name, &attribute)) {
                if (!PyUnicode_Check(name) || PyUnicode_Tailmatch(name, underscores.get(), 0, 2, -1) == 1) continue;
                pairs.push_back(str_or(name, ""));
                pairs.push_back(encode_or_repr(attribute));
            }
            if (!pairs.empty()) error["dict"] = json{{"$d", std::move(pairs)}};
        }
        // An exception that crossed from the other side in a callback's answer carries the token
        // of the original there: it goes back as that very exception (docs/protocol.md, "Callbacks").
        PyObject* found_origin = nullptr;
        py_ref origin_name = py_ref::checked(PyUnicode_InternFromString("__splitbrain_origin__"));
        if (_PyObject_LookupAttr(value, origin_name.get(), &found_origin) < 0) PyErr_Clear();  // absent: no error made
        py_ref origin = py_ref::steal(found_origin);
        if (origin && PyLong_Check(origin.get())) {
            const unsigned long long token = PyLong_AsUnsignedLongLong(origin.get());
            if (!PyErr_Occurred()) error["origin"] = token;
        }
        PyErr_Clear();
    }
    if (std::optional<std::string> text = sourceless_traceback_text(value, e.traceback(), message_text)) {
        error["tb"] = std::move(*text);
        return error;
    }
    py_ref traceback_module = py_ref::steal(PyImport_ImportModule("traceback"));
    if (traceback_module) {
        py_ref lines =
            py_ref::steal(PyObject_CallMethod(traceback_module.get(), "format_exception", "OOO", e.type(),
                                              value ? value : Py_None, e.traceback() ? e.traceback() : Py_None));
        if (lines) {
            py_ref empty = py_ref::steal(PyUnicode_FromString(""));
            py_ref text = py_ref::steal(PyUnicode_Join(empty.get(), lines.get()));
            if (text) error["tb"] = str_or(text.get(), "");
        }
    }
    PyErr_Clear();
    return error;
}

}  // namespace splitcore
