#include "splitcore/protocol.hpp"

#include <cerrno>

namespace splitcore {

json error_value(errc code, std::string_view detail) {
    const std::string text = tagged(code, detail);
    return json{{"type", "splitbrain.ProtocolError"},
                {"msg", text},
                {"args", json::array({text})},
                {"errno", nullptr},
                {"strerror", nullptr},
                {"filename", nullptr},
                {"filename2", nullptr},
                {"tb", nullptr},
                {"code", name(code)}};
}

json error_value(const error& e) { return error_value(e.code(), e.detail()); }

json ok_reply(std::uint64_t id, json result) { return json{{"id", id}, {"ok", true}, {"r", std::move(result)}}; }

json error_reply(std::uint64_t id, json error) { return json{{"id", id}, {"ok", false}, {"e", std::move(error)}}; }

json output_event(int fd, const char* data, std::size_t size, std::uint64_t at) {
    return json{
        {"ev", "out"}, {"fd", fd}, {"d", json::binary(std::vector<std::uint8_t>(data, data + size))}, {"at", at}};
}

}  // namespace splitcore
