// libFuzzer target: bytes from a peer -> header decoder -> box decoder -> encoder.
// Input layout: frames separated by "|SB|"; frame 0 is the CBOR header, the rest raw frames.
// Every VALUE in the header map is decoded; a success is encoded again. Whatever the input, only
// protocol_error and python_error may come out, and nothing may crash or leak memory unsafely.
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"

namespace {

// One object that "$r": 1 names, as the worker's table would; anything else is bad_object.
struct one_object_hooks : splitcore::box_hooks {
    splitcore::py_ref object;
    nlohmann::json box_reference(PyObject*) override { return nlohmann::json{{"$r", 1}}; }
    splitcore::py_ref unbox_reference(const nlohmann::json& ref) override {
        const auto oid = splitcore::as_uint(ref.at("$r"));
        if (!oid || *oid != 1) throw splitcore::error(splitcore::errc::bad_object, "no such object");
        return splitcore::py_ref::borrow(object.get());
    }
};

one_object_hooks* hooks = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    const PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    hooks = new one_object_hooks;
    hooks->object = splitcore::py_ref::steal(PyList_New(0));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> pieces;
    for (std::size_t start = 0;;) {
        const auto end = input.find("|SB|", start);
        pieces.push_back(input.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) break;
        start = end + 4;
    }
    std::vector<zmq::message_t> frames;
    for (std::size_t i = 1; i < pieces.size(); ++i) frames.emplace_back(pieces[i].data(), pieces[i].size());

    nlohmann::json header;
    try {
        header = splitcore::decode_header(pieces[0].data(), pieces[0].size());
        (void)splitcore::request_id(header);
        (void)splitcore::string_field(header, "op");
    } catch (const splitcore::error&) {
        if (header.is_null()) return 0;
    }
    for (const auto& [name, value] : header.items()) {
        try {
            splitcore::decoder in(*hooks, frames);
            splitcore::py_ref decoded = in.decode(value);
            splitcore::encoder out(*hooks, 4096);
            (void)out.encode(decoded.get());
            (void)out.take_frames();
        } catch (const splitcore::error&) {
        } catch (const splitcore::python_error&) {
        }
        if (PyErr_Occurred()) __builtin_trap();  // every failure must have become an exception
    }
    splitcore::drain_deferred_decrefs();
    return 0;
}
