#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "splitcore/box.hpp"

using splitcore::json;
using splitcore::py_ref;

namespace {

// References as one side of a real session keeps them: a table of objects, "$r" is the index.
struct table_hooks : splitcore::box_hooks {
    std::vector<py_ref> objects;
    json box_reference(PyObject* obj) override {
        objects.push_back(py_ref::borrow(obj));
        return json{{"$r", objects.size() - 1},
                    {"t", splitcore::qualified_name(Py_TYPE(obj))},
                    {"cl", PyCallable_Check(obj) != 0}};
    }
    py_ref unbox_reference(const json& ref) override {
        const json& oid = ref.at("$r");
        if (!oid.is_number_unsigned() || oid.get<std::size_t>() >= objects.size()) {
            throw splitcore::error(splitcore::errc::bad_object, "no object " + oid.dump());
        }
        return py_ref::borrow(objects[oid.get<std::size_t>()].get());
    }
};

py_ref eval(const std::string& expression) {
    py_ref globals = py_ref::checked(PyDict_New());
    PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
    py_ref code = py_ref::checked(PyRun_String(("import os, time, enum, fractions\n__result = " + expression).c_str(),
                                               Py_file_input, globals.get(), globals.get()));
    return py_ref::borrow(PyDict_GetItemString(globals.get(), "__result"));
}

struct box_test : ::testing::Test {
    PyGILState_STATE gil{};
    table_hooks hooks;
    void SetUp() override { gil = PyGILState_Ensure(); }
    void TearDown() override {
        hooks.objects.clear();
        splitcore::drain_deferred_decrefs();
        PyGILState_Release(gil);
    }

    struct crossed {
        json value;
        std::size_t frames;
        py_ref back;
    };
    crossed cross(PyObject* obj, std::size_t frame_size = 1 << 20) {
        splitcore::encoder out(hooks, frame_size);
        json value = out.encode(obj);
        // The CBOR really crosses: encode and parse the header as the wire does.
        json header = splitcore::decode_header(splitcore::encode_header(json{{"v", value}}));
        auto frames = out.take_frames();
        splitcore::decoder in(hooks, frames);
        py_ref back = in.decode(header["v"]);
        return crossed{value, frames.size(), std::move(back)};
    }
    void expect_round_trip(const std::string& expression) {
        py_ref original = eval(expression);
        crossed result = cross(original.get());
        ASSERT_TRUE(result.back) << expression;
        EXPECT_EQ(Py_TYPE(result.back.get()), Py_TYPE(original.get())) << expression;
        EXPECT_EQ(PyObject_RichCompareBool(result.back.get(), original.get(), Py_EQ), 1)
            << expression << " came back as " << splitcore::str_or(result.back.get(), "?");
    }
    std::string decode_error(const json& value, std::vector<zmq::message_t> frames = {}) {
        splitcore::decoder in(hooks, frames);
        try {
            (void)in.decode(value);
        } catch (const splitcore::error& e) {
            return e.what();
        } catch (const splitcore::python_error& e) {
            return e.what();
        }
        return "no error";
    }
};

}  // namespace

TEST_F(box_test, plain_scalars_round_trip_with_their_type) {
    for (const char* expression :
         {"None", "True", "False", "0", "-5", "2**63 - 1", "-2**63", "2**64", "-(10**40)", "1.5", "float('inf')", "''",
          "'grüße ✓'", "b''", "b'\\x00\\xff'", "bytearray(b'xy')", "complex(1, -2)"}) {
        expect_round_trip(expression);
    }
}

TEST_F(box_test, scalars_use_the_cbor_of_the_spec_table) {
    EXPECT_EQ(cross(eval("None").get()).value, nullptr);
    EXPECT_EQ(cross(eval("7").get()).value, 7);
    EXPECT_EQ(cross(eval("'s'").get()).value, "s");
    EXPECT_EQ(cross(eval("2**70").get()).value, (json{{"$i", "1180591620717411303424"}}));
    EXPECT_EQ(cross(eval("1j").get()).value, (json{{"$c", {0.0, 1.0}}}));
    EXPECT_TRUE(cross(eval("b'ab'").get()).value.is_binary());
    EXPECT_EQ(cross(eval("(1, 'a')").get()).value, (json{{"$t", {1, "a"}}}));
    EXPECT_EQ(cross(eval("{'k': 1}").get()).value, (json{{"$d", {"k", 1}}}));
    EXPECT_EQ(cross(eval("[1, [2]]").get()).value, (json{1, {2}}));
}

TEST_F(box_test, containers_of_plain_data_round_trip_by_value) {
    for (const char* expression :
         {"[]", "[1, 'a', None, [2.5, b'x']]", "()", "(1, (2, (3,)))", "{}", "{'a': 1, 2: [3], (1, 2): {'x': None}}",
          "set()", "{1, 'two', (3,)}", "frozenset({1, 2})", "[{'deep': [({1: frozenset({b'z'})},)]}]"}) {
        expect_round_trip(expression);
    }
}

TEST_F(box_test, struct_sequences_are_rebuilt_as_their_type_with_extra_fields) {
    py_ref original = eval("os.stat('/')");
    crossed result = cross(original.get());
    EXPECT_EQ(result.value["$q"], "os.stat_result");
    EXPECT_EQ(result.value["v"].size(), 10u);
    EXPECT_EQ(Py_TYPE(result.back.get()), Py_TYPE(original.get()));
    py_ref mtime_ns = py_ref::checked(PyObject_GetAttrString(result.back.get(), "st_mtime_ns"));
    py_ref original_mtime_ns = py_ref::checked(PyObject_GetAttrString(original.get(), "st_mtime_ns"));
    EXPECT_EQ(PyObject_RichCompareBool(mtime_ns.get(), original_mtime_ns.get(), Py_EQ), 1);
    expect_round_trip("time.gmtime(0)");
}

TEST_F(box_test, an_unknown_struct_sequence_type_arrives_as_its_visible_fields) {
    splitcore::decoder in(hooks, {});
    py_ref value = in.decode(json{{"$q", "nosuchmodule.nosuch_result"}, {"v", {1, 2}}, {"x", {{"$d", json::array()}}}});
    EXPECT_TRUE(PyTuple_CheckExact(value.get()));
    EXPECT_EQ(PyTuple_GET_SIZE(value.get()), 2);
}

TEST_F(box_test, int_and_str_subclasses_cross_as_their_base_value) {
    py_ref flag = eval("enum.IntFlag('F', 'A B')(3)");
    crossed result = cross(flag.get());
    EXPECT_EQ(result.value, 3);
    EXPECT_TRUE(PyLong_CheckExact(result.back.get()));
    py_ref text = eval("type('S', (str,), {})('hi')");
    EXPECT_EQ(cross(text.get()).value, "hi");
}

TEST_F(box_test, everything_else_crosses_by_reference_and_comes_back_as_the_same_object) {
    py_ref fraction = eval("fractions.Fraction(1, 3)");
    crossed result = cross(fraction.get());
    EXPECT_EQ(result.value["t"], "fractions.Fraction");
    EXPECT_EQ(result.value["cl"], false);
    EXPECT_EQ(result.back.get(), fraction.get());
    py_ref function = eval("len");
    EXPECT_EQ(cross(function.get()).value["cl"], true);
}

TEST_F(box_test, a_list_holding_a_reference_goes_by_reference_but_a_tuple_boxes_each_element) {
    py_ref list = eval("[1, fractions.Fraction(1, 3)]");
    crossed as_list = cross(list.get());
    EXPECT_TRUE(as_list.value.contains("$r"));
    EXPECT_EQ(as_list.back.get(), list.get());
    py_ref tuple = eval("(1, fractions.Fraction(1, 3))");
    crossed as_tuple = cross(tuple.get());
    EXPECT_EQ(as_tuple.value["$t"][0], 1);
    EXPECT_TRUE(as_tuple.value["$t"][1].contains("$r"));
    EXPECT_EQ(PyTuple_GET_ITEM(as_tuple.back.get(), 1), PyTuple_GET_ITEM(tuple.get(), 1));
    py_ref dict = eval("{'f': fractions.Fraction(1, 3)}");
    EXPECT_TRUE(cross(dict.get()).value.contains("$r"));
}

TEST_F(box_test, a_set_holding_references_goes_by_value_from_the_client_each_element_boxed_alone) {
    py_ref set = eval("{1, fractions.Fraction(1, 3)}");
    EXPECT_TRUE(cross(set.get()).value.contains("$r"));  // the agent's way: the set by reference
    splitcore::encoder out(hooks);
    out.send_sets_by_value();
    json value = out.encode(set.get());
    ASSERT_TRUE(value.contains("$s"));
    const std::vector<zmq::message_t> none;
    splitcore::decoder in(hooks, none);
    py_ref back = in.decode(value);
    ASSERT_TRUE(PySet_CheckExact(back.get()));
    EXPECT_EQ(PyObject_RichCompareBool(back.get(), set.get(), Py_EQ), 1);  // the same elements, the same objects
}

TEST_F(box_test, local_references_and_exceptions_by_value_are_refused_where_the_hooks_do_not_take_them) {
    const std::vector<zmq::message_t> none;
    splitcore::decoder in(hooks, none);
    EXPECT_THROW((void)in.decode(json{{"$l", 1}}), splitcore::error);
    EXPECT_THROW((void)in.decode(json{{"$e", json::object()}}), splitcore::error);
    EXPECT_THROW((void)in.decode(json{{"$n", json::array({"builtins", "int"})}}), splitcore::error);
}

TEST_F(box_test, a_self_containing_list_goes_by_reference) {
    py_ref list = eval("(lambda l: (l.append(l), l)[1])([])");
    crossed result = cross(list.get());
    EXPECT_TRUE(result.value.contains("$r"));
}

TEST_F(box_test, large_bytes_travel_as_raw_frames_outside_the_cbor) {
    py_ref small = eval("b'x' * (64 * 1024 - 1)");
    // one frame below frame_threshold too (from inline_threshold on)
    EXPECT_EQ(cross(small.get()).value, (json{{"$F", {0, 1, 65535}}}));
    py_ref large = eval("bytes(range(256)) * 10000");  // 2 560 000 bytes
    crossed result = cross(large.get(), 1 << 20);
    EXPECT_EQ(result.frames, 3u);
    EXPECT_EQ(result.value, (json{{"$F", {0, 3, 2560000}}}));
    EXPECT_EQ(PyObject_RichCompareBool(result.back.get(), large.get(), Py_EQ), 1);
    py_ref two = eval("(b'a' * 100000, bytearray(b'b' * 70000))");
    crossed pair = cross(two.get(), 65536);
    EXPECT_EQ(pair.frames, 4u);
    EXPECT_EQ(pair.value["$t"][1], (json{{"$ba", {{"$F", {2, 2, 70000}}}}}));
    EXPECT_EQ(PyObject_RichCompareBool(pair.back.get(), two.get(), Py_EQ), 1);
}

TEST_F(box_test, large_text_travels_as_utf8_frames) {
    py_ref text = eval("'grüße ✓ ' * 20000");
    crossed result = cross(text.get(), 1 << 16);
    EXPECT_TRUE(result.value["$u"].contains("$F"));
    EXPECT_GT(result.frames, 1u);
    EXPECT_TRUE(PyUnicode_CheckExact(result.back.get()));
    EXPECT_EQ(PyObject_RichCompareBool(result.back.get(), text.get(), Py_EQ), 1);
}

TEST_F(box_test, str_and_bytes_from_the_inline_threshold_on_travel_as_one_frame) {
    ASSERT_EQ(splitcore::inline_threshold, 1024u);
    // Below it, inline CBOR; from it on, one frame ({"$u": {"$F"}} for a str: its UTF-8), both ways.
    EXPECT_EQ(cross(eval("'a' * 1023").get()).value, std::string(1023, 'a'));
    EXPECT_EQ(cross(eval("'a' * 1024").get()).value, (json{{"$u", {{"$F", {0, 1, 1024}}}}}));
    EXPECT_EQ(cross(eval("'\\u00e9' * 511 + 'a'").get()).value.is_string(), true);  // 1023 bytes of UTF-8
    EXPECT_EQ(cross(eval("'\\u00e9' * 512").get()).value, (json{{"$u", {{"$F", {0, 1, 1024}}}}}));
    EXPECT_TRUE(cross(eval("b'b' * 1023").get()).value.is_binary());
    EXPECT_EQ(cross(eval("b'b' * 1024").get()).value, (json{{"$F", {0, 1, 1024}}}));
    EXPECT_EQ(cross(eval("bytearray(4096)").get()).value, (json{{"$ba", {{"$F", {0, 1, 4096}}}}}));
    for (const char* expression :
         {"'a' * 1023", "'a' * 1024", "'a' * 1025", "'splitbrain\\n' * 372 + '0123'", "'\\u00e9' * 512",
          "'\\u00e9' * 511 + 'a'", "'\\U0001f600' * 300", "'x' * 65535", "'x' * 65536", "b'\\xff' * 1024",
          "b'\\x00' * 4096", "bytearray(b'z' * 5000)", "['a' * 2000, {'k' * 3000: b'v' * 1500}, ('t' * 1024,)]",
          "{'s' * 1100, 's' * 1200}", "'\\udcff' * 2000", "'ok' + '\\ud800' + 'x' * 3000"}) {
        expect_round_trip(expression);
    }
    py_ref three = eval("('a' * 2000, 'b', b'c' * 3000, '\\u00e9' * 800)");
    crossed result = cross(three.get());
    EXPECT_EQ(result.frames, 3u);
    EXPECT_EQ(result.value["$t"][1], "b");
    EXPECT_EQ(result.value["$t"][3], (json{{"$u", {{"$F", {2, 1, 1600}}}}}));
}

TEST_F(box_test, keep_inline_keeps_str_and_bytes_below_the_frame_threshold_in_the_cbor) {
    splitcore::encoder out(hooks);
    out.keep_inline();
    EXPECT_EQ(out.encode(eval("'a' * 4096").get()), std::string(4096, 'a'));
    EXPECT_TRUE(out.encode(eval("b'a' * 65535").get()).is_binary());
    EXPECT_TRUE(out.take_frames().empty());
    // an exception's long args stay values (not their repr): its ERROR has no frames
    PyErr_SetObject(PyExc_ValueError, eval("'v' * 5000").get());
    splitcore::python_error error;
    const json described = splitcore::describe_exception(error, hooks);
    EXPECT_EQ(described["args"], json::array({std::string(5000, 'v')}));
}

TEST_F(box_test, a_str_in_one_frame_is_decoded_from_the_frame_and_checked) {
    std::vector<zmq::message_t> frames;
    frames.emplace_back(std::string("caf\xc3\xa9"));
    splitcore::decoder in(hooks, frames);
    py_ref text = in.decode(json{{"$u", {{"$F", {0, 1, 5}}}}});
    EXPECT_EQ(splitcore::str_or(text.get(), "?"), "caf\xc3\xa9");
    std::vector<zmq::message_t> short_frame;
    short_frame.emplace_back(std::string("abc"));
    EXPECT_NE(decode_error(json{{"$u", {{"$F", {0, 1, 4}}}}}, std::move(short_frame)).find("does not match"),
              std::string::npos);
    EXPECT_NE(decode_error(json{{"$u", {{"$F", {3, 1, 4}}}}}).find("[splitbrain.bad_request]"), std::string::npos);
    std::vector<zmq::message_t> bad_utf8;
    bad_utf8.emplace_back(std::string("\xff\xfe"));
    EXPECT_NE(decode_error(json{{"$u", {{"$F", {0, 1, 2}}}}}, std::move(bad_utf8)).find("UnicodeDecodeError"),
              std::string::npos);
}

TEST_F(box_test, text_with_lone_surrogates_round_trips) {
    py_ref name = eval("b'caf\\xe9.txt'.decode('utf-8', 'surrogateescape')");
    crossed result = cross(name.get());
    EXPECT_TRUE(result.value["$u"].is_binary());
    EXPECT_EQ(PyObject_RichCompareBool(result.back.get(), name.get(), Py_EQ), 1);
}

TEST_F(box_test, a_value_too_large_for_a_header_travels_as_cbor_in_its_own_frame) {
    py_ref names = eval("[f'file-{i:06}.txt' for i in range(40000)] + [b'x' * 70000]");
    crossed result = cross(names.get());
    EXPECT_EQ(result.value, (json{{"$H", 1}}));  // frame 0 holds the large bytes, named inside it
    EXPECT_EQ(result.frames, 2u);
    EXPECT_EQ(PyObject_RichCompareBool(result.back.get(), names.get(), Py_EQ), 1);
    py_ref small = eval("['a'] * 10");
    EXPECT_TRUE(cross(small.get()).value.is_array());
}

TEST_F(box_test, a_spilled_frame_is_decoded_once_and_must_be_cbor) {
    std::vector<zmq::message_t> frames;
    const auto cbor = json::to_cbor(json::array({1, 2}));
    frames.emplace_back(cbor.data(), cbor.size());
    frames.emplace_back(std::string("\xff\xff"));
    EXPECT_NE(decode_error(json::array({{{"$H", 0}}, {{"$H", 0}}}), std::move(frames)).find("twice"),
              std::string::npos);
    std::vector<zmq::message_t> bad;
    bad.emplace_back(std::string("\xff\xff"));
    EXPECT_NE(decode_error(json{{"$H", 0}}, std::move(bad)).find("not well-formed"), std::string::npos);
    std::vector<zmq::message_t> deep;
    std::string nested(100000, '\x81');
    nested += '\x00';
    deep.emplace_back(nested);
    EXPECT_NE(decode_error(json{{"$H", 0}}, std::move(deep)).find("[splitbrain.bad_request]"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$H", 5}}).find("[splitbrain.bad_request]"), std::string::npos);
}

TEST_F(box_test, frames_keep_the_bytes_alive_until_libzmq_is_done_with_them) {
    py_ref large = eval("b'q' * 300000");
    const Py_ssize_t before = Py_REFCNT(large.get());
    {
        splitcore::encoder out(hooks, 100000);
        (void)out.encode(large.get());
        auto frames = out.take_frames();
        EXPECT_EQ(Py_REFCNT(large.get()), before + 3);
    }
    splitcore::drain_deferred_decrefs();
    EXPECT_EQ(Py_REFCNT(large.get()), before);
}

TEST_F(box_test, malformed_values_are_refused_with_a_clear_error) {
    EXPECT_EQ(decode_error(json{{"$zz", 1}}), "[splitbrain.bad_request] unknown tagged value \"$zz\"");
    EXPECT_NE(decode_error(json{{"$i", "12a"}}).find("[splitbrain.bad_request]"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$F", {0, 1, 5}}}).find("[splitbrain.bad_request]"), std::string::npos);
    std::vector<zmq::message_t> frames;
    frames.emplace_back(std::string("abc"));
    EXPECT_NE(decode_error(json{{"$F", {0, 1, 4}}}, std::move(frames)).find("does not match"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$F", {json::number_unsigned_t(-1), 2, 0}}}).find("[splitbrain.bad_request]"),
              std::string::npos);
    EXPECT_NE(decode_error(json{{"$d", {1}}}).find("pairs"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$d", {json::array(), 1}}}).find("TypeError"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$c", {"a", 1}}}).find("[splitbrain.bad_request]"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$r", 99}}).find("[splitbrain.bad_object]"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$t", 5}}).find("[splitbrain.bad_request]"), std::string::npos);
    EXPECT_NE(decode_error(json{{"$q", "os.stat_result"}, {"v", 3}, {"x", 1}}).find("[splitbrain.bad_request]"),
              std::string::npos);
    EXPECT_NE(decode_error(json{{"a", 1}, {"b", 2}}).find("[splitbrain.bad_request]"), std::string::npos);
    EXPECT_NE(decode_error(json(std::string("\xff\xfe"))).find("UnicodeDecodeError"), std::string::npos);
    json deep = 1;
    for (int i = 0; i < 300; ++i) deep = json::array({deep});
    EXPECT_NE(decode_error(deep).find("deeper"), std::string::npos);
}

TEST_F(box_test, exceptions_are_described_with_errno_filename_and_traceback) {
    PyRun_SimpleString("def _open_missing():\n    open('/no/such/file')\n");
    py_ref main = py_ref::borrow(PyImport_AddModule("__main__"));
    py_ref function = py_ref::checked(PyObject_GetAttrString(main.get(), "_open_missing"));
    ASSERT_EQ(PyObject_CallNoArgs(function.get()), nullptr);
    splitcore::python_error error;
    EXPECT_TRUE(error.matches(PyExc_FileNotFoundError));
    const json described = splitcore::describe_exception(error, hooks);
    EXPECT_EQ(described["type"], "builtins.FileNotFoundError");
    EXPECT_EQ(described["errno"], 2);
    EXPECT_EQ(described["strerror"], "No such file or directory");
    EXPECT_EQ(described["filename"], "/no/such/file");
    EXPECT_FALSE(described.contains("filename2"));  // null fields are left out
    EXPECT_FALSE(described.contains("dict"));
    EXPECT_EQ(described["args"], (json{2, "No such file or directory"}));
    EXPECT_NE(described["tb"].get<std::string>().find("_open_missing"), std::string::npos);
    EXPECT_EQ(described["msg"], "[Errno 2] No such file or directory: '/no/such/file'");
    // a fixed built-in exception goes without its MRO: the receiver's class of that name has the same
    EXPECT_FALSE(described.contains("mro"));
    EXPECT_EQ(splitcore::fixed_builtin_exception("builtins.FileNotFoundError"), PyExc_FileNotFoundError);
}

splitcore::python_error raised_by(const char* source, const char* filename);

// Only the fixed built-in classes themselves go without their MRO: a subclass, a class that takes a
// built-in's name, the ones the receiver treats apart and the warnings carry theirs.
TEST_F(box_test, an_exception_class_other_than_a_fixed_builtin_carries_its_mro) {
    const std::vector<std::pair<const char*, json>> cases = {
        {"class Gone(FileNotFoundError):\n    pass\nraise Gone(2, 'gone', 'f')\n",
         json::parse(R"([["__main__", "Gone"], ["builtins", "FileNotFoundError"], ["builtins", "OSError"],
                         ["builtins", "Exception"], ["builtins", "BaseException"], ["builtins", "object"]])")},
        {"class FileNotFoundError(Exception):\n    pass\nFileNotFoundError.__module__ = 'builtins'\n"
         "raise FileNotFoundError('a namesake')\n",
         json::parse(R"([["builtins", "FileNotFoundError"], ["builtins", "Exception"], ["builtins", "BaseException"],
                         ["builtins", "object"]])")},
        {"raise SystemExit(3)\n", json::parse(R"([["builtins", "SystemExit"], ["builtins", "BaseException"],
                                                  ["builtins", "object"]])")},
        {"raise KeyboardInterrupt\n", json::parse(R"([["builtins", "KeyboardInterrupt"], ["builtins", "BaseException"],
                                                      ["builtins", "object"]])")},
        {"raise UserWarning('w')\n", json::parse(R"([["builtins", "UserWarning"], ["builtins", "Warning"],
                                                     ["builtins", "Exception"], ["builtins", "BaseException"],
                                                     ["builtins", "object"]])")},
    };
    for (const auto& [source, mro] : cases) {
        splitcore::python_error error = raised_by(source, "<mro>");
        const json described = splitcore::describe_exception(error, hooks);
        ASSERT_TRUE(described.contains("mro")) << source;
        EXPECT_EQ(described["mro"], mro) << source;
    }
    EXPECT_EQ(splitcore::fixed_builtin_exception("builtins.SystemExit"), nullptr);
    EXPECT_EQ(splitcore::fixed_builtin_exception("builtins.UserWarning"), nullptr);
    EXPECT_EQ(splitcore::fixed_builtin_exception("os.FileNotFoundError"), nullptr);
    // a subclass's errno and filename are read as attributes (a Python subclass may make them properties)
    splitcore::python_error odd = raised_by(
        "class Odd(FileNotFoundError):\n    @property\n    def filename(self):\n        return 'from a property'\n"
        "raise Odd(2, 'gone', 'f')\n",
        "<odd>");
    EXPECT_EQ(splitcore::describe_exception(odd, hooks)["filename"], "from a property");
}

// The worker writes the remote traceback itself when no frame has a source line to show (the
// call stub, open()'s helper): it SHALL be the text traceback.format_exception gives, in those cases
// and in the ones it leaves to the traceback module.
std::string formatted_by_the_traceback_module(const splitcore::python_error& error) {
    py_ref traceback = py_ref::checked(PyImport_ImportModule("traceback"));
    py_ref lines = py_ref::checked(PyObject_CallMethod(traceback.get(), "format_exception", "OOO", error.type(),
                                                       error.value(), error.traceback() ? error.traceback() : Py_None));
    py_ref empty = py_ref::checked(PyUnicode_FromString(""));
    py_ref text = py_ref::checked(PyUnicode_Join(empty.get(), lines.get()));
    return splitcore::str_or(text.get(), "?");
}

splitcore::python_error raised_by(const char* source, const char* filename) {
    py_ref globals = py_ref::checked(PyDict_New());
    PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
    py_ref name = py_ref::checked(PyUnicode_FromString("__main__"));
    PyDict_SetItemString(globals.get(), "__name__", name.get());
    py_ref code = py_ref::checked(Py_CompileString(source, filename, Py_file_input));
    py_ref done = py_ref::steal(PyEval_EvalCode(code.get(), globals.get(), globals.get()));
    EXPECT_FALSE(done) << source;
    return splitcore::python_error();
}

TEST_F(box_test, the_remote_traceback_is_the_text_of_the_traceback_module) {
    PyRun_SimpleString(
        "import linecache\n"
        "linecache.cache['<cell 7>'] = (24, None, ['x = 1\\n', 'raise KeyError(x)\\n'], '<cell 7>')\n");
    const std::vector<std::pair<const char*, const char*>> cases = {
        {"open('/no/such/file')\n", "<splitbrain>"},
        {"f = lambda p: open(p)\ng = lambda p: f(p)\ng('/no/such')\n", "<splitbrain>"},
        {"def f(n):\n    return f(n - 1) if n else 1 / 0\nf(7)\n", "<recursion>"},
        {"def f(n):\n    return f(n - 1) if n else 1 / 0\nf(3)\n", "<recursion>"},
        {"def f(n):\n    return f(n - 1) if n else 1 / 0\nf(2)\n", "<recursion>"},
        {"raise ValueError()\n", "<empty message>"},
        {"raise ValueError('two\\nlines')\n", "<lines>"},
        {"raise KeyError('k')\n", "<key>"},
        {"class Jam(Exception):\n    pass\nJam.__module__ = 'plotter'\nraise Jam('paper stuck')\n", "<module name>"},
        {"class Jam(Exception):\n    pass\nraise Jam('in __main__')\n", "<main>"},
        {"class Jam(Exception):\n    pass\nJam.__module__ = 3\nraise Jam('odd module')\n", "<odd>"},
        {"try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise KeyError('k') from None\n", "<suppressed>"},
        // the traceback module's own cases
        {"try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise KeyError('k')\n", "<chained>"},
        {"try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    raise KeyError('k') from e\n", "<cause>"},
        {"e = ValueError('x')\ne.add_note('a note')\nraise e\n", "<notes>"},
        {"x = 1\nraise KeyError(x)\n", "<cell 7>"},
        {"compile('1 +', '<inner>', 'exec')\n", "<syntax>"},
        {"raise ExceptionGroup('two', [ValueError(1), KeyError(2)])\n", "<group>"},
        {"class Mute(Exception):\n    def __str__(self):\n        raise RuntimeError\nraise Mute()\n", "<mute>"},
        {"import sys\nsys.tracebacklimit = 0\nraise KeyError('limited')\n", "<limit>"},
    };
    for (const auto& [source, filename] : cases) {
        splitcore::python_error error = raised_by(source, filename);
        const json described = splitcore::describe_exception(error, hooks);
        const std::string expected = formatted_by_the_traceback_module(error);
        PyRun_SimpleString("import sys\nsys.__dict__.pop('tracebacklimit', None)\n");
        ASSERT_TRUE(described["tb"].is_string()) << source;
        EXPECT_EQ(described["tb"].get<std::string>(), expected) << source;
    }
    // without a traceback (an exception passed as a value)
    splitcore::python_error bare = splitcore::python_error::make(PyExc_ValueError, "bad value");
    EXPECT_EQ(splitcore::describe_exception(bare, hooks)["tb"].get<std::string>(),
              formatted_by_the_traceback_module(bare));
    EXPECT_EQ(splitcore::describe_exception(bare, hooks)["tb"].get<std::string>(), "ValueError: bad value\n");
    PyRun_SimpleString("linecache.cache.pop('<cell 7>', None)\n");
}

TEST_F(box_test, a_python_error_restores_as_the_same_exception) {
    splitcore::python_error error = splitcore::python_error::make(PyExc_ValueError, "bad value");
    EXPECT_FALSE(PyErr_Occurred());
    EXPECT_STREQ(error.what(), "builtins.ValueError: bad value");
    error.restore();
    ASSERT_TRUE(PyErr_ExceptionMatches(PyExc_ValueError));
    PyErr_Clear();
}

TEST_F(box_test, py_ref_owns_exactly_one_reference) {
    PyObject* raw = PyList_New(0);
    {
        py_ref owner = py_ref::steal(raw);
        py_ref second = py_ref::borrow(raw);
        EXPECT_EQ(Py_REFCNT(raw), 2);
        py_ref moved = std::move(second);
        EXPECT_FALSE(second);
        EXPECT_EQ(Py_REFCNT(raw), 2);
        moved.reset();
        EXPECT_EQ(Py_REFCNT(raw), 1);
        PyObject* released = owner.release();
        EXPECT_EQ(released, raw);
        owner = py_ref::steal(released);
    }
}

TEST_F(box_test, a_struct_sequence_never_imports_a_module_the_peer_names) {
    splitcore::decoder in(hooks, {});
    py_ref value = in.decode(json{{"$q", "antigravity.x"}, {"v", {1}}, {"x", {{"$d", json::array()}}}});
    EXPECT_TRUE(PyTuple_CheckExact(value.get()));
    EXPECT_EQ(PyDict_GetItemString(PyImport_GetModuleDict(), "antigravity"), nullptr);
}
