#include "requests.hpp"

#include <map>
#include <vector>

namespace splitbrain {
namespace {
enum class kind { string, boolean, integer, object };

struct field {
    const char* name;
    kind type;
};

// The fields xeus 2.4.1's kernel core and xeus-python read, per request (Jupyter messaging 5.3).
const std::map<std::string, std::vector<field>>& request_fields() {
    static const std::map<std::string, std::vector<field>> fields = {
        {"execute_request",
         {{"code", kind::string},
          {"silent", kind::boolean},
          {"store_history", kind::boolean},
          {"user_expressions", kind::object},
          {"allow_stdin", kind::boolean},
          {"stop_on_error", kind::boolean}}},
        {"complete_request", {{"code", kind::string}, {"cursor_pos", kind::integer}}},
        {"inspect_request", {{"code", kind::string}, {"cursor_pos", kind::integer}, {"detail_level", kind::integer}}},
        {"history_request",
         {{"hist_access_type", kind::string},
          {"output", kind::boolean},
          {"raw", kind::boolean},
          {"session", kind::integer},
          {"start", kind::integer},
          {"stop", kind::integer},
          {"n", kind::integer},
          {"pattern", kind::string},
          {"unique", kind::boolean}}},
        {"is_complete_request", {{"code", kind::string}}},
        {"comm_info_request", {{"target_name", kind::string}}},
        {"kernel_info_request", {}},
        {"shutdown_request", {{"restart", kind::boolean}}},
        {"interrupt_request", {}},
        {"debug_request", {}},
    };
    return fields;
}

bool has_kind(const nl::json& value, kind type) {
    switch (type) {
        case kind::string:
            return value.is_string();
        case kind::boolean:
            return value.is_boolean();
        case kind::integer:
            return value.is_number_integer();
        case kind::object:
            return value.is_object();
    }
    return false;
}

const char* name_of(kind type) {
    switch (type) {
        case kind::string:
            return "a string";
        case kind::boolean:
            return "a boolean";
        case kind::integer:
            return "an integer";
        case kind::object:
            return "an object";
    }
    return "?";
}

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::string reply_type_of(const std::string& msg_type) {
    return ends_with(msg_type, "_request") ? msg_type.substr(0, msg_type.size() - 8) + "_reply" : "";
}

std::optional<std::string> check_request(const nl::json& header, const nl::json& content) {
    const auto type = header.find("msg_type");
    if (type == header.end() || !type->is_string()) {
        return std::string("the header has no msg_type");
    }
    const std::string msg_type = type->get<std::string>();
    if (!content.is_object()) {
        return msg_type + ": the content must be a JSON object";
    }
    const auto& table = request_fields();
    const auto fields = table.find(msg_type);
    if (fields == table.end()) {
        if (ends_with(msg_type, "_request")) {
            return msg_type + " is not a request this kernel knows";
        }
        return std::nullopt;  // comm messages, replies: no reply is due
    }
    for (const field& f : fields->second) {
        const auto value = content.find(f.name);
        if (value != content.end() && !has_kind(*value, f.type)) {
            return msg_type + ": '" + f.name + "' must be " + name_of(f.type) + ", not " + value->type_name();
        }
    }
    return std::nullopt;
}
}  // namespace splitbrain
