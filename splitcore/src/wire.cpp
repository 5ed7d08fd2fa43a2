#include "splitcore/wire.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

namespace splitcore {

zmq::message_t encode_header(const json& header) {
    // One buffer per thread, grown once, instead of a vector grown from nothing at every message.
    thread_local std::vector<std::uint8_t> bytes;
    bytes.clear();
    json::to_cbor(header, bytes);
    zmq::message_t message(bytes.data(), bytes.size());
    if (bytes.capacity() > (std::size_t(64) << 10)) std::vector<std::uint8_t>().swap(bytes);  // keeps no big one
    return message;
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

namespace {

// The CBOR reader of decode_header: one pass, straight into json values (nlohmann's from_cbor went
// through its SAX parser, read strings byte by byte, and needed cbor_depth's pass first to bound
// its recursion). It takes what from_cbor takes, as the same values (tests/splitcore/test_protocol.cpp
// compares the two): maps with text keys (the last of a repeated key wins), arrays, text and byte
// strings (also in chunks), integers, half, single and double floats, true, false, null; tags, other
// simple values and trailing bytes are refused, all as bad_request. Nesting is counted as cbor_depth
// counts it (a definite container with no items does not count) and refused past max_header_depth
// before going deeper.
class cbor_reader {
public:
    cbor_reader(const std::uint8_t* data, std::size_t size) : m_pos(data), m_end(data + size) {}

    json document() {
        json value = item(0);
        if (m_pos != m_end) malformed();
        return value;
    }

private:
    [[noreturn]] static void malformed() { throw error(errc::bad_request, "header frame is not well-formed CBOR"); }
    [[noreturn]] static void invalid(const std::string& what) {
        throw error(errc::bad_request, "header frame is not valid CBOR: " + what);
    }

    std::uint8_t byte() {
        if (m_pos == m_end) malformed();
        return *m_pos++;
    }

    std::uint64_t big_endian(std::size_t width) {
        if (static_cast<std::size_t>(m_end - m_pos) < width) malformed();
        std::uint64_t value = 0;
        for (std::size_t i = 0; i < width; ++i) value = (value << 8) | *m_pos++;
        return value;
    }

    std::uint64_t argument(std::uint8_t info) {
        if (info < 24) return info;
        if (info == 24) return big_endian(1);
        if (info == 25) return big_endian(2);
        if (info == 26) return big_endian(4);
        if (info == 27) return big_endian(8);
        malformed();  // 28..30 are reserved; 31 is handled by the callers that allow it
    }

    // A container at `depth` (1 for the outermost) with items in it: refused past the limit.
    static void enter(std::size_t depth) {
        if (depth > max_header_depth) {
            throw error(errc::bad_request, "header nests deeper than " + std::to_string(max_header_depth) + " levels");
        }
    }

    // The bytes of a text (major 3) or byte (major 2) string whose initial byte was read, appended.
    template <typename Bytes>
    void string_bytes(std::uint8_t major, std::uint8_t info, Bytes& into, std::size_t depth) {
        if (info == 31) {  // chunks until a break; each a string of the same major type
            enter(depth + 1);
            for (;;) {
                const std::uint8_t initial = byte();
                if (initial == 0xff) return;
                if ((initial >> 5) != major)
                    invalid("a chunk of an indefinite-length string is not a string of its type");
                string_bytes(major, initial & 0x1f, into, depth + 1);
            }
        }
        const std::uint64_t length = argument(info);
        if (length > static_cast<std::uint64_t>(m_end - m_pos)) malformed();
        into.insert(into.end(), m_pos, m_pos + length);
        m_pos += length;
    }

    json item(std::size_t depth) {
        const std::uint8_t initial = byte();
        const std::uint8_t major = initial >> 5;
        const std::uint8_t info = initial & 0x1f;
        switch (major) {
            case 0:
                return json(argument(info));
            case 1:
                return json(static_cast<std::int64_t>(~argument(info)));  // -1 - n
            case 2: {
                std::vector<std::uint8_t> bytes;
                string_bytes(2, info, bytes, depth);
                return json::binary(std::move(bytes));
            }
            case 3: {
                std::string text;
                string_bytes(3, info, text, depth);
                return json(std::move(text));
            }
            case 4: {
                json array = json::array();
                if (info == 31) {
                    enter(depth + 1);
                    while (!at_break()) array.push_back(item(depth + 1));
                    return array;
                }
                const std::uint64_t n = argument(info);
                if (n > static_cast<std::uint64_t>(m_end - m_pos)) malformed();  // each item takes a byte
                if (n > 0) enter(depth + 1);
                // At most a little ahead: n is only bounded by the bytes left, at every level of a
                // deep header, and each element takes 16 bytes where its CBOR may take one.
                array.get_ref<json::array_t&>().reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n, 64)));
                for (std::uint64_t i = 0; i < n; ++i) array.push_back(item(depth + 1));
                return array;
            }
            case 5: {
                json object = json::object();
                auto& members = object.get_ref<json::object_t&>();
                const bool indefinite = info == 31;
                std::uint64_t n = 0;
                if (!indefinite) {
                    n = argument(info);
                    if (n > static_cast<std::uint64_t>(m_end - m_pos) / 2) malformed();  // two items a pair
                }
                if (indefinite || n > 0) enter(depth + 1);
                for (std::uint64_t i = 0; indefinite ? !at_break() : i < n; ++i) {
                    const std::uint8_t key_initial = byte();
                    if ((key_initial >> 5) != 3) invalid("a map key is not a text string");
                    std::string key;
                    string_bytes(3, key_initial & 0x1f, key, depth + 1);
                    members[std::move(key)] = item(depth + 1);
                }
                return object;
            }
            case 6:
                invalid("tags are not accepted");
            default:
                break;
        }
        switch (initial) {
            case 0xf4:
                return json(false);
            case 0xf5:
                return json(true);
            case 0xf6:
                return json(nullptr);
            case 0xf9: {
                const auto half = static_cast<unsigned>(big_endian(2));
                const int exponent = static_cast<int>((half >> 10) & 0x1f);
                const unsigned mantissa = half & 0x3ff;
                double value;
                if (exponent == 0) {
                    value = std::ldexp(mantissa, -24);
                } else if (exponent == 31) {
                    value = mantissa == 0 ? std::numeric_limits<double>::infinity()
                                          : std::numeric_limits<double>::quiet_NaN();
                } else {
                    value = std::ldexp(mantissa + 1024, exponent - 25);
                }
                return json((half & 0x8000) != 0 ? -value : value);
            }
            case 0xfa: {
                const auto bits = static_cast<std::uint32_t>(big_endian(4));
                float value;
                std::memcpy(&value, &bits, sizeof value);
                return json(static_cast<double>(value));
            }
            case 0xfb: {
                const std::uint64_t bits = big_endian(8);
                double value;
                std::memcpy(&value, &bits, sizeof value);
                return json(value);
            }
            default:
                break;
        }
        if (info >= 28) malformed();  // reserved, or a break where no item may end
        (void)argument(info);         // a simple value: well formed, not accepted
        invalid("simple value " + std::to_string(static_cast<unsigned>(initial)) + " is not accepted");
    }

    // An indefinite container's break, taken; else nothing is.
    bool at_break() {
        if (m_pos == m_end) malformed();
        if (*m_pos != 0xff) return false;
        ++m_pos;
        return true;
    }

    const std::uint8_t* m_pos;
    const std::uint8_t* m_end;
};

}  // namespace

json decode_header(const void* data, std::size_t size, std::size_t limit) {
    if (size > limit) {
        throw error(errc::bad_request,
                    "header frame of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(limit));
    }
    json header = cbor_reader(static_cast<const std::uint8_t*>(data), size).document();
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
