#ifndef SPLITBRAIN_KERNEL_REQUESTS_HPP
#define SPLITBRAIN_KERNEL_REQUESTS_HPP

#include <optional>
#include <string>

#include "nlohmann/json.hpp"

namespace nl = nlohmann;

namespace splitbrain {
// What is wrong with a request, or nothing when xeus's kernel core can handle it. The core
// reads fields with json::value(), which throws on a field of the wrong type; it then logs
// and replies nothing, and the client waits forever. The server answers such requests with
// an error reply under the `kernel_bad_request` id instead.
std::optional<std::string> check_request(const nl::json& header, const nl::json& content);

// "execute_request" -> "execute_reply"; empty for messages that get no reply.
std::string reply_type_of(const std::string& msg_type);
}  // namespace splitbrain

#endif
