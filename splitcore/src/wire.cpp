#include "splitcore/wire.hpp"

#include <algorithm>
#include <cerrno>

namespace splitcore {

zmq::message_t encode_header(const json& header) {
    std::vector<std::uint8_t> bytes = json::to_cbor(header);
    return zmq::message_t(bytes.data(), bytes.size());
}

std::optional<std::size_t> cbor_depth(const std::uint8_t* data, std::size_t size) {
    struct open_container {
        std::uint64_t remaining;  // items still expected; unused when indefinite
        bool indefinite;
    };
    std::vector<open_container> stack;
    std::size_t pos = 0;
    std::size_t deepest = 0;

    auto read_argument = [&](std::uint8_t info, std::uint64_t& value) -> bool {
        std::size_t width = 0;
        if (info < 24) {
            value = info;
            return true;
        }
        if (info == 24) width = 1;
        else if (info == 25) width = 2;
        else if (info == 26) width = 4;
        else if (info == 27) width = 8;
        else return false;
        if (size - pos < width) return false;
        value = 0;
        for (std::size_t i = 0; i < width; ++i) value = (value << 8) | data[pos++];
        return true;
    };

    for (;;) {
        if (pos >= size) return std::nullopt;
        const std::uint8_t initial = data[pos++];
        const std::uint8_t major = initial >> 5;
        const std::uint8_t info = initial & 0x1f;
        bool completed = true;

        if (initial == 0xff) {  // "break" closes the innermost indefinite container
            if (stack.empty() || !stack.back().indefinite) return std::nullopt;
            stack.pop_back();
        } else if (info == 31) {
            if (major != 2 && major != 3 && major != 4 && major != 5) return std::nullopt;
            stack.push_back({0, true});
            completed = false;
        } else {
            std::uint64_t argument = 0;
            if (!read_argument(info, argument)) return std::nullopt;
            switch (major) {
                case 2:
                case 3:
                    if (argument > size - pos) return std::nullopt;
                    pos += static_cast<std::size_t>(argument);
                    break;
                case 4:
                case 5: {
                    // Each item takes at least one byte, which also bounds the count.
                    if (argument > size - pos) return std::nullopt;
                    const std::uint64_t items = major == 5 ? argument * 2 : argument;
                    if (items > 0) {
                        stack.push_back({items, false});
                        completed = false;
                    }
                    break;
                }
                case 6:
                    stack.push_back({1, false});
                    completed = false;
                    break;
                default:
                    break;
            }
        }
        deepest = std::max(deepest, stack.size());

        if (completed) {
            while (!stack.empty() && !stack.back().indefinite) {
                if (--stack.back().remaining > 0) break;
                stack.pop_back();
            }
            if (stack.empty()) {
                if (pos != size) return std::nullopt;
                return deepest;
            }
        }
    }
}

json decode_header(const void* data, std::size_t size, std::size_t limit) {
    if (size > limit) {
        throw error(errc::bad_request,
                    "header frame of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(limit));
    }
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    const auto depth = cbor_depth(bytes, size);
    if (!depth) throw error(errc::bad_request, "header frame is not well-formed CBOR");
    if (*depth > max_header_depth) {
        throw error(errc::bad_request, "header nests deeper than " + std::to_string(max_header_depth) + " levels");
    }
    json header;
    try {
        header = json::from_cbor(bytes, bytes + size);
    } catch (const json::exception& e) {
        throw error(errc::bad_request, std::string("header frame is not valid CBOR: ") + e.what());
    }
    if (!header.is_object()) throw error(errc::bad_request, "header is not a CBOR map");
    return header;
}

json decode_header(const zmq::message_t& frame, std::size_t limit) {
    return decode_header(frame.data(), frame.size(), limit);
}

const json* optional_field(const json& header, const char* name) {
    auto it = header.find(name);
    return it == header.end() ? nullptr : &*it;
}

const json& field(const json& header, const char* name) {
    if (const json* value = optional_field(header, name)) return *value;
    throw error(errc::bad_request, std::string("missing field \"") + name + "\"");
}

std::optional<std::uint64_t> as_uint(const json& value) noexcept {
    if (value.is_number_unsigned()) return value.get<std::uint64_t>();
    if (value.is_number_integer() && value.get<std::int64_t>() >= 0) {
        return static_cast<std::uint64_t>(value.get<std::int64_t>());
    }
    return std::nullopt;
}

std::uint64_t uint_field(const json& header, const char* name) {
    const auto value = as_uint(field(header, name));
    if (!value) {
        throw error(errc::bad_request, std::string("field \"") + name + "\" must be an unsigned integer");
    }
    return *value;
}

std::uint64_t request_id(const json& header) {
    const std::uint64_t id = uint_field(header, "id");
    if (id == 0) throw error(errc::bad_request, "field \"id\" must be greater than 0");
    return id;
}

const std::string& string_field(const json& header, const char* name) {
    const json& value = field(header, name);
    if (!value.is_string()) {
        throw error(errc::bad_request, std::string("field \"") + name + "\" must be a string");
    }
    return value.get_ref<const std::string&>();
}

namespace {
void send_part(zmq::socket_ref socket, zmq::message_t& part, bool more) {
    for (;;) {
        if (zmq_msg_send(part.handle(), socket.handle(), more ? ZMQ_SNDMORE : 0) >= 0) return;
        if (zmq_errno() != EINTR) throw zmq::error_t();
    }
}

void send_frames(zmq::socket_ref socket, const json& header, std::vector<zmq::message_t>& frames) {
    zmq::message_t head = encode_header(header);
    send_part(socket, head, !frames.empty());
    send_parts(socket, frames);
}
}  // namespace

void send_parts(zmq::socket_ref socket, std::vector<zmq::message_t>& parts) {
    for (std::size_t i = 0; i < parts.size(); ++i) send_part(socket, parts[i], i + 1 < parts.size());
}

void send_message(zmq::socket_ref socket, const json& header, std::vector<zmq::message_t> frames) {
    send_frames(socket, header, frames);
}

void send_message(zmq::socket_ref socket, const zmq::message_t& routing_id, const json& header,
                  std::vector<zmq::message_t> frames) {
    zmq::message_t envelope(routing_id.data(), routing_id.size());
    send_part(socket, envelope, true);
    send_frames(socket, header, frames);
}

bool try_send_message(zmq::socket_ref socket, const json& header, std::vector<zmq::message_t>& frames) {
    zmq::message_t head = encode_header(header);
    // Only the first part can meet "would block": once it is in, the rest of the message follows.
    for (;;) {
        if (zmq_msg_send(head.handle(), socket.handle(), ZMQ_DONTWAIT | (frames.empty() ? 0 : ZMQ_SNDMORE)) >= 0) break;
        if (zmq_errno() == EAGAIN) return false;
        if (zmq_errno() != EINTR) throw zmq::error_t();
    }
    send_parts(socket, frames);
    frames.clear();
    return true;
}

std::optional<std::vector<zmq::message_t>> recv_parts(zmq::socket_ref socket, zmq::recv_flags flags) {
    std::vector<zmq::message_t> parts;
    for (;;) {
        zmq::message_t part;
        const int rc = zmq_msg_recv(part.handle(), socket.handle(), parts.empty() ? static_cast<int>(flags) : 0);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == EAGAIN && parts.empty()) return std::nullopt;
            throw zmq::error_t();
        }
        const bool more = part.more();
        parts.push_back(std::move(part));
        if (!more) return parts;
    }
}

}  // namespace splitcore
