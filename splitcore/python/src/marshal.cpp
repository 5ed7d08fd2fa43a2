#define PY_SSIZE_T_CLEAN
#include "marshal.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core.hpp"
#include "splitcore/errors.hpp"

namespace splitbrain_core {

using splitcore::errc;
using splitcore::py_ref;
using splitcore::python_error;
using json = nlohmann::json;

json client_hooks::box_reference(PyObject* obj) {
    py_ref answer = py_ref::checked(PyObject_CallOneArg(m_box, obj));
    if (PyLong_Check(answer.get())) {
        const unsigned long long oid = PyLong_AsUnsignedLongLong(answer.get());
        splitcore::throw_if_error();
        return json{{"$r", oid}};
    }
    if (PyUnicode_Check(answer.get())) {  // a local path-like object, sent as its text
        Py_ssize_t size = 0;
        const char* text = PyUnicode_AsUTF8AndSize(answer.get(), &size);
        if (text == nullptr) throw python_error();
        return json(std::string(text, static_cast<std::size_t>(size)));
    }
    if (PyTuple_Check(answer.get()) && PyTuple_GET_SIZE(answer.get()) == 2) {  // the slave's own, by name
        return json{{"$n", json::array({splitcore::str_or(PyTuple_GET_ITEM(answer.get(), 0), ""),
                                        splitcore::str_or(PyTuple_GET_ITEM(answer.get(), 1), "")})}};
    }
    if (PyTuple_Check(answer.get()) && PyTuple_GET_SIZE(answer.get()) == 4) {  // a local object by reference
        PyObject* items = answer.get();
        const unsigned long long eid = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(items, 0));
        splitcore::throw_if_error();
        json protocols = json::array();
        py_ref names = py_ref::checked(PySequence_Fast(PyTuple_GET_ITEM(items, 3), "protocols must be a sequence"));
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(names.get()); ++i) {
            protocols.push_back(splitcore::str_or(PySequence_Fast_GET_ITEM(names.get(), i), ""));
        }
        return json{{"$l", eid},
                    {"t", splitcore::str_or(PyTuple_GET_ITEM(items, 1), "builtins.object")},
                    {"cl", PyObject_IsTrue(PyTuple_GET_ITEM(items, 2)) == 1},
                    {"p", std::move(protocols)}};
    }
    throw splitcore::error(errc::not_transferable, "the box hook returned neither an object id nor text");
}

py_ref client_hooks::unbox_exception(const json& error) {
    if (!error.is_object() || m_error == nullptr) {
        throw splitcore::error(errc::bad_request, "\"$e\" must hold an ERROR");
    }
    static const std::vector<zmq::message_t> no_frames;  // an ERROR's values never use frames
    splitcore::decoder decoder(*this, no_frames);
    splitcore::message carrier{json{{"e", error}}, {}};
    py_ref info = error_info(decoder, carrier);
    return py_ref::checked(PyObject_CallOneArg(m_error, info.get()));
}

py_ref client_hooks::unbox_local(const json& ref) {
    const auto& eid = ref.at("$l");
    if (!eid.is_number_unsigned()) throw splitcore::error(errc::bad_request, "a \"$l\" is not an unsigned integer");
    py_ref py_eid = py_ref::checked(PyLong_FromUnsignedLongLong(eid.get<std::uint64_t>()));
    return py_ref::checked(PyObject_CallOneArg(m_local, py_eid.get()));
}

py_ref client_hooks::unbox_reference(const json& ref) {
    const auto& oid = ref.at("$r");
    if (!oid.is_number_unsigned()) {
        throw splitcore::error(errc::bad_request, "a reference's \"$r\" is not an unsigned integer");
    }
    const auto type = ref.find("t");
    const auto callable = ref.find("cl");
    py_ref py_oid = py_ref::checked(PyLong_FromUnsignedLongLong(oid.get<std::uint64_t>()));
    py_ref py_type = py_ref::checked(PyUnicode_FromString(
        type != ref.end() && type->is_string() ? type->get_ref<const std::string&>().c_str() : "builtins.object"));
    PyObject* py_callable =
        callable != ref.end() && callable->is_boolean() && callable->get<bool>() ? Py_True : Py_False;
    const auto lineage = ref.find("k");
    if (lineage == ref.end() || !lineage->is_array()) {
        PyObject* args[] = {py_oid.get(), py_type.get(), py_callable};
        return py_ref::checked(PyObject_Vectorcall(m_unbox, args, 3, nullptr));
    }
    // A class: its MRO as a tuple of (module, qualname) pairs of text.
    py_ref names = py_ref::checked(PyTuple_New(static_cast<Py_ssize_t>(lineage->size())));
    Py_ssize_t i = 0;
    for (const auto& entry : *lineage) {
        if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_string()) {
            throw splitcore::error(errc::bad_request, "a class reference's \"k\" must be [[module, qualname], ...]");
        }
        const auto& module = entry[0].get_ref<const std::string&>();
        const auto& qualname = entry[1].get_ref<const std::string&>();
        py_ref pair = py_ref::checked(Py_BuildValue("(s#s#)", module.data(), static_cast<Py_ssize_t>(module.size()),
                                                    qualname.data(), static_cast<Py_ssize_t>(qualname.size())));
        PyTuple_SET_ITEM(names.get(), i++, pair.release());
    }
    PyObject* args[] = {py_oid.get(), py_type.get(), py_callable, names.get()};
    return py_ref::checked(PyObject_Vectorcall(m_unbox, args, 4, nullptr));
}

namespace {

// Plain header fields (ids, names, attribute paths): str, int, bool, None, float, lists, dicts.
json plain_json(PyObject* value, int depth = 0) {
    if (depth > 32) throw error_as(PyExc_ValueError, errc::bad_request, "header field nested too deeply");
    if (value == Py_None) return nullptr;
    if (PyBool_Check(value)) return value == Py_True;
    if (PyLong_Check(value)) {
        int overflow = 0;
        const long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow > 0) {
            const unsigned long long big = PyLong_AsUnsignedLongLong(value);
            splitcore::throw_if_error();
            return big;
        }
        splitcore::throw_if_error();
        if (overflow < 0) throw python_error::make(PyExc_OverflowError, "header integer out of range");
        if (number >= 0) return static_cast<std::uint64_t>(number);
        return number;
    }
    if (PyFloat_Check(value)) return PyFloat_AS_DOUBLE(value);
    if (PyUnicode_Check(value)) {
        Py_ssize_t size = 0;
        const char* text = PyUnicode_AsUTF8AndSize(value, &size);
        if (text == nullptr) throw python_error();
        return std::string(text, static_cast<std::size_t>(size));
    }
    if (PyList_Check(value) || PyTuple_Check(value)) {
        py_ref items = py_ref::checked(PySequence_Fast(value, "expected a sequence"));
        json array = json::array();
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(items.get());
        for (Py_ssize_t i = 0; i < n; ++i) {
            array.push_back(plain_json(PySequence_Fast_GET_ITEM(items.get(), i), depth + 1));
        }
        return array;
    }
    if (PyDict_Check(value)) {
        json object = json::object();
        PyObject *key, *item;
        Py_ssize_t pos = 0;
        while (PyDict_Next(value, &pos, &key, &item)) {
            const char* name = PyUnicode_AsUTF8(key);
            if (name == nullptr) throw python_error();
            object[name] = plain_json(item, depth + 1);
        }
        return object;
    }
    throw error_as(PyExc_TypeError, errc::bad_request, "a header field is not plain data");
}

py_ref bytes_of(const json& data) {
    if (data.is_binary()) {
        const auto& bytes = data.get_binary();
        return py_ref::checked(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(bytes.data()),
                                                         static_cast<Py_ssize_t>(bytes.size())));
    }
    if (data.is_string()) {
        const auto& text = data.get_ref<const std::string&>();
        return py_ref::checked(PyBytes_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size())));
    }
    return py_ref::checked(PyBytes_FromStringAndSize("", 0));
}

py_ref decode_optional(splitcore::decoder& decoder, const json& error, const char* field) {
    const auto found = error.find(field);
    if (found == error.end() || found->is_null()) return py_ref::borrow(Py_None);
    return decoder.decode(*found);
}

py_ref text_or_none(const json& error, const char* field) {
    const auto found = error.find(field);
    if (found == error.end() || !found->is_string()) return py_ref::borrow(Py_None);
    const auto& text = found->get_ref<const std::string&>();
    return py_ref::checked(PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace"));
}

}  // namespace

json build_header(PyObject* op, PyObject* fields, splitcore::encoder& encoder) {
    json header = json::object();
    header["op"] = plain_json(op);
    if (fields == nullptr || fields == Py_None) return header;
    if (!PyDict_Check(fields)) throw python_error::make(PyExc_TypeError, "fields must be a dict");
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(fields, &pos, &key, &value)) {
        Py_ssize_t size = 0;
        const char* name = PyUnicode_AsUTF8AndSize(key, &size);
        if (name == nullptr) throw python_error();
        const std::string_view field(name, static_cast<std::size_t>(size));
        if (field == "o" && PyLong_Check(value)) {
            const unsigned long long oid = PyLong_AsUnsignedLongLong(value);
            splitcore::throw_if_error();
            header["o"] = json{{"$r", oid}};
        } else if (field == "v" || field == "k") {
            header[std::string(field)] = encoder.encode(value);
        } else if (field == "a") {
            py_ref items = py_ref::checked(PySequence_Fast(value, "arguments must be a sequence"));
            json array = json::array();
            const Py_ssize_t n = PySequence_Fast_GET_SIZE(items.get());
            for (Py_ssize_t i = 0; i < n; ++i) {
                array.push_back(encoder.encode(PySequence_Fast_GET_ITEM(items.get(), i)));
            }
            header["a"] = std::move(array);
        } else if (field == "kw" || field == "free" || field == "mods") {  // name → VALUE, each boxed alone
            if (value == Py_None) continue;
            if (!PyDict_Check(value)) throw python_error::make(PyExc_TypeError, "keyword arguments must be a dict");
            json pairs = json::array();
            PyObject *k, *v;
            Py_ssize_t kpos = 0;
            while (PyDict_Next(value, &kpos, &k, &v)) {
                pairs.push_back(plain_json(k));
                pairs.push_back(encoder.encode(v));
            }
            header[field == "kw" ? std::string("k") : std::string(field)] = json{{"$d", std::move(pairs)}};
        } else {
            header[std::string(field)] = plain_json(value);
        }
    }
    return header;
}

py_ref decode_result(splitcore::decoder& decoder, const json& value) {
    if (value.is_array()) {  // the supervisor's replies (leases) are lists of plain maps
        py_ref list = py_ref::checked(PyList_New(0));
        for (const json& item : value) {
            py_ref decoded = decode_result(decoder, item);
            if (PyList_Append(list.get(), decoded.get()) < 0) throw python_error();
        }
        return list;
    }
    if (!value.is_object() || value.empty() || value.begin().key().rfind('$', 0) == 0) {
        return decoder.decode(value);
    }
    py_ref dict = py_ref::checked(PyDict_New());
    for (const auto& [key, item] : value.items()) {
        py_ref decoded = decode_result(decoder, item);
        if (PyDict_SetItemString(dict.get(), key.c_str(), decoded.get()) < 0) throw python_error();
    }
    return dict;
}

std::optional<output_chunk> output_of(const splitcore::message& event) {
    const auto& header = event.header;
    if (header.value("ev", "") != "out") return std::nullopt;
    const auto fd = header.find("fd");
    const auto data = header.find("d");
    if (fd == header.end() || !fd->is_number_integer() || data == header.end()) return std::nullopt;
    return output_chunk{py_ref::checked(PyLong_FromLong(fd->get<long>())), bytes_of(*data)};
}

py_ref error_info(splitcore::decoder& decoder, const splitcore::message& reply) {
    const auto found = reply.header.find("e");
    static const json nothing = json::object();
    const json& error = found != reply.header.end() && found->is_object() ? *found : nothing;
    py_ref info = py_ref::checked(PyDict_New());
    auto put = [&](const char* key, py_ref value) {
        if (PyDict_SetItemString(info.get(), key, value.get()) < 0) throw python_error();
    };
    put("type", text_or_none(error, "type"));
    put("msg", text_or_none(error, "msg"));
    put("strerror", text_or_none(error, "strerror"));
    put("tb", text_or_none(error, "tb"));
    put("code", text_or_none(error, "code"));
    put("filename", decode_optional(decoder, error, "filename"));
    put("filename2", decode_optional(decoder, error, "filename2"));
    const auto err = error.find("errno");
    put("errno", err != error.end() && err->is_number_integer()
                     ? py_ref::checked(PyLong_FromLongLong(err->get<long long>()))
                     : py_ref::borrow(Py_None));
    py_ref args = py_ref::checked(PyList_New(0));
    const auto remote_args = error.find("args");
    if (remote_args != error.end() && remote_args->is_array()) {
        for (const auto& arg : *remote_args) {
            py_ref value = decoder.decode(arg);
            if (PyList_Append(args.get(), value.get()) < 0) throw python_error();
        }
    }
    put("args", std::move(args));
    put("dict", decode_optional(decoder, error, "dict"));
    py_ref lineage = py_ref::checked(PyList_New(0));
    const auto mro = error.find("mro");
    const auto type = error.find("type");
    PyObject* builtin = mro == error.end() && type != error.end() && type->is_string()
                            ? splitcore::fixed_builtin_exception(type->get_ref<const std::string&>())
                            : nullptr;
    // A fixed built-in comes without its MRO: ours is the same.
    const json lineage_of_builtin =
        builtin != nullptr ? splitcore::class_lineage(reinterpret_cast<PyTypeObject*>(builtin)) : json();
    const json* entries = mro != error.end() ? &*mro : &lineage_of_builtin;
    if (entries->is_array()) {
        for (const auto& entry : *entries) {
            if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_string()) continue;
            const auto& module = entry[0].get_ref<const std::string&>();
            const auto& qualname = entry[1].get_ref<const std::string&>();
            py_ref pair = py_ref::checked(Py_BuildValue("(s#s#)", module.data(), static_cast<Py_ssize_t>(module.size()),
                                                        qualname.data(), static_cast<Py_ssize_t>(qualname.size())));
            if (PyList_Append(lineage.get(), pair.get()) < 0) throw python_error();
        }
    }
    put("mro", std::move(lineage));
    const auto origin = error.find("origin");
    put("origin", origin != error.end() && origin->is_number_unsigned()
                      ? py_ref::checked(PyLong_FromUnsignedLongLong(origin->get<std::uint64_t>()))
                      : py_ref::borrow(Py_None));
    return info;
}

py_ref builtin_exception(splitcore::decoder& decoder, const splitcore::message& reply, PyObject* traceback_note,
                         PyObject* raised_note) {
    const auto found = reply.header.find("e");
    if (found == reply.header.end() || !found->is_object()) return {};
    const json& error = *found;
    const auto type = error.find("type");
    if (type == error.end() || !type->is_string()) return {};
    for (const char* owners : {"mro", "code", "origin", "dict"}) {
        if (error.contains(owners)) return {};
    }
    PyObject* cls = splitcore::fixed_builtin_exception(type->get_ref<const std::string&>());
    if (cls == nullptr) return {};
    auto* cls_type = reinterpret_cast<PyTypeObject*>(cls);
    py_ref message = text_or_none(error, "msg");
    if (message.get() == Py_None) message = py_ref::checked(PyUnicode_FromString(""));  // `info.get("msg") or ""`
    // The args are decoded whatever the class uses: a reference among them is counted either way.
    py_ref args = py_ref::checked(PyList_New(0));
    if (const auto remote_args = error.find("args"); remote_args != error.end() && remote_args->is_array()) {
        for (const auto& arg : *remote_args) {
            py_ref value = decoder.decode(arg);
            if (PyList_Append(args.get(), value.get()) < 0) throw python_error();
        }
    }
    py_ref exception;
    const auto err = error.find("errno");
    if (PyType_IsSubtype(cls_type, reinterpret_cast<PyTypeObject*>(PyExc_OSError)) && err != error.end() &&
        err->is_number_integer()) {
        // cls.__new__(cls, errno, strerror or message, filename, None, filename2), as _errors._rebuilt
        py_ref number = py_ref::checked(PyLong_FromLongLong(err->get<long long>()));
        py_ref strerror = text_or_none(error, "strerror");
        if (PyObject_IsTrue(strerror.get()) != 1) strerror = py_ref::borrow(message.get());
        py_ref filename = decode_optional(decoder, error, "filename");
        py_ref filename2 = decode_optional(decoder, error, "filename2");
        py_ref ctor =
            py_ref::checked(PyTuple_Pack(5, number.get(), strerror.get(), filename.get(), Py_None, filename2.get()));
        exception = py_ref::checked(cls_type->tp_new(cls_type, ctor.get(), nullptr));
        PyObject* set_errno = reinterpret_cast<PyOSErrorObject*>(exception.get())->myerrno;
        if ((set_errno == nullptr || set_errno == Py_None) &&
            reinterpret_cast<PyTypeObject*>(PyExc_OSError)->tp_init(exception.get(), ctor.get(), nullptr) < 0) {
            throw python_error();
        }
    } else {
        // cls(*args); another signature keeps the text: cls.__new__(cls, message)
        py_ref tuple = py_ref::checked(PyList_AsTuple(args.get()));
        exception = py_ref::steal(PyObject_Call(cls, tuple.get(), nullptr));
        if (!exception) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) throw python_error();
            PyErr_Clear();
            py_ref text = py_ref::checked(PyTuple_Pack(1, message.get()));
            exception = py_ref::checked(cls_type->tp_new(cls_type, text.get(), nullptr));
        }
    }
    if (!PyExceptionInstance_Check(exception.get())) {
        throw python_error::make(PyExc_TypeError, "a built-in exception class made no exception");
    }
    py_ref traceback = text_or_none(error, "tb");
    py_ref note;
    if (PyObject_IsTrue(traceback.get()) == 1) {
        static PyObject* const rstrip = PyUnicode_InternFromString("rstrip");  // immortal once interned here
        if (rstrip == nullptr) throw python_error::make(PyExc_MemoryError, "no name for str.rstrip");
        py_ref stripped = py_ref::checked(PyObject_CallMethodNoArgs(traceback.get(), rstrip));
        note = py_ref::checked(PyUnicode_Concat(traceback_note, stripped.get()));
    } else {
        note = py_ref::borrow(raised_note);
    }
    static PyObject* const add_note = PyUnicode_InternFromString("add_note");
    if (add_note == nullptr) throw python_error::make(PyExc_MemoryError, "no name for add_note");
    py_ref added = py_ref::checked(PyObject_CallMethodOneArg(exception.get(), add_note, note.get()));
    return exception;
}

}  // namespace splitbrain_core
