#include "splitcore/errors.hpp"

namespace splitcore {

namespace {
constexpr std::string_view prefix = "[splitbrain.";
}

std::optional<errc> errc_from_name(std::string_view name) noexcept {
    for (std::size_t i = 0; i < error_count; ++i) {
        if (error_names[i] == name) return static_cast<errc>(i);
    }
    return std::nullopt;
}

std::string tagged(errc code, std::string_view detail) {
    const std::string_view id = name(code);
    std::string text;
    text.reserve(prefix.size() + id.size() + 2 + detail.size());
    text.append(prefix).append(id).append("] ").append(detail);
    return text;
}

std::optional<std::string> tagged(std::string_view name, std::string_view detail) {
    const auto code = errc_from_name(name);
    if (!code) return std::nullopt;
    return tagged(*code, detail);
}

error::error(errc code, std::string_view detail) : std::runtime_error(tagged(code, detail)), m_code(code) {}

std::string_view error::detail() const noexcept {
    std::string_view text = what();
    const std::size_t skip = prefix.size() + name(m_code).size() + 2;
    return text.size() >= skip ? text.substr(skip) : std::string_view{};
}

}  // namespace splitcore
