#include "splitcore/keys.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <sstream>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

namespace splitcore {
namespace {

std::string trim(const std::string& text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

std::string read_text(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw key_error(file.string() + ": cannot read: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Creates the file exclusively, so an existing key is never overwritten.
void write_new_file(const std::filesystem::path& file, const std::string& text, mode_t mode) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) throw key_error(file.string() + " already exists; refusing to overwrite it");
        throw key_error(file.string() + ": cannot create: " + std::strerror(errno));
    }
    ::fchmod(fd, mode);  // the umask must not widen or narrow what was asked for
    const char* data = text.data();
    std::size_t left = text.size();
    while (left > 0) {
        const ssize_t n = ::write(fd, data, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            throw key_error(file.string() + ": cannot write: " + std::strerror(err));
        }
        data += n;
        left -= static_cast<std::size_t>(n);
    }
    ::close(fd);
}

// Z85 uses '#', so a comment is a line that does not start with a key and starts with '#'; text
// after a key and whitespace is a comment too. Returns the key, "" for a blank or comment line,
// nullopt for anything else.
std::optional<std::string> key_of_line(const std::string& raw) {
    const std::string line = trim(raw);
    const std::string first = line.substr(0, line.find_first_of(" \t"));
    if (is_z85_key(first)) return first;
    if (line.empty() || line[0] == '#') return std::string();
    return std::nullopt;
}

}  // namespace

bool is_z85_key(const std::string& text) {
    if (text.size() != 40) return false;
    std::uint8_t raw[32];
    return zmq_z85_decode(raw, text.c_str()) != nullptr;
}

std::string z85_encode_key(const void* key32) {
    char text[41];
    zmq_z85_encode(text, static_cast<const std::uint8_t*>(key32), 32);
    return std::string(text, 40);
}

key_pair key_pair::generate() {
    char public_key[41];
    char secret_key[41];
    if (zmq_curve_keypair(public_key, secret_key) != 0) {
        throw key_error(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(zmq_errno()));
    }
    return key_pair{public_key, secret_key};
}

key_pair key_pair::from_secret(const std::string& secret_z85) {
    if (!is_z85_key(secret_z85)) throw key_error("not a Z85 CURVE secret key");
    char public_key[41];
    if (zmq_curve_public(public_key, secret_z85.c_str()) != 0) {
        throw key_error(std::string("cannot derive the public key: ") + zmq_strerror(zmq_errno()));
    }
    return key_pair{public_key, secret_z85};
}

void key_pair::save(const std::filesystem::path& dir) const {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw key_error(dir.string() + ": cannot create directory: " + ec.message());
    const auto secret_file = dir / secret_key_file;
    const auto public_file = dir / public_key_file;
    for (const auto& file : {secret_file, public_file}) {
        if (std::filesystem::exists(file, ec)) {
            throw key_error(file.string() + " already exists; refusing to overwrite it");
        }
    }
    write_new_file(secret_file, "# splitbrain-agent CURVE secret key (Z85); keep private\n" + secret_key + "\n", 0600);
    write_new_file(public_file, public_key + "\n", 0644);
}

key_pair key_pair::load(const std::filesystem::path& dir) {
    const auto file = dir / secret_key_file;
    std::istringstream lines(read_text(file));
    std::string line;
    while (std::getline(lines, line)) {
        const auto key = key_of_line(line);
        if (!key) throw key_error(file.string() + ": not a Z85 CURVE secret key");
        if (!key->empty()) return from_secret(*key);
    }
    throw key_error(file.string() + ": no key in the file");
}

namespace {

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> items;
    std::istringstream parts(text);
    std::string item;
    while (std::getline(parts, item, ',')) {
        item = trim(item);
        if (!item.empty()) items.push_back(item);
    }
    return items;
}

std::optional<std::time_t> parse_date(const std::string& text) {
    std::tm tm{};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0;
    char tail = 0;
    const int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d%c", &year, &month, &day, &hour, &minute, &tail);
    if (!(n == 3 || n == 5) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59) {
        return std::nullopt;
    }
    if (n == 3 && text.size() != 10) return std::nullopt;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    return ::timegm(&tm);
}

// Applies one `name` or `name=value` option to `options`; throws a message on a bad one.
void apply_option(key_options& options, const std::string& name, const std::optional<std::string>& value) {
    auto need = [&]() -> const std::string& {
        if (!value || value->empty()) throw key_error("option " + name + " needs a value (" + name + "=\"...\")");
        return *value;
    };
    if (name == "from") {
        options.from = split_list(need());
        for (const auto& pattern : options.from) {
            if (!address_matches(pattern.substr(0, pattern.find('/')), pattern)) {
                throw key_error("from=\"" + pattern + "\" is not an address or a CIDR block");
            }
        }
    } else if (name == "expires") {
        options.expires = parse_date(need());
        if (!options.expires)
            throw key_error("expires=\"" + *value + "\" is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)");
        options.expires_text = *value;
    } else if (name == "max-sessions") {
        const std::string& text = need();
        if (text.find_first_not_of("0123456789") != std::string::npos || text.size() > 6) {
            throw key_error("max-sessions=" + text + " is not a whole number");
        }
        options.max_sessions = static_cast<std::size_t>(std::stoul(text));
    } else if (name == "allow-modules") {
        options.allow_modules = split_list(need());
    } else if (name == "deny-modules") {
        options.deny_modules = split_list(need());
    } else if (name == "labgrid-user") {
        options.labgrid_user = need();
    } else if (name == "lease" && !value) {
        options.lease = true;
    } else if (name == "admin" && !value) {
        options.admin = true;
        options.lease = true;
    } else {
        throw key_error(
            "unknown option \"" + name + (value ? "=" : "") +
            "\" (known: from=, expires=, max-sessions=, allow-modules=, deny-modules=, labgrid-user=, lease, "
            "admin)");
    }
}

// Parses `line` (trimmed, not a comment): options, the key, the comment.
std::pair<std::string, key_options> parse_key_line(const std::string& line) {
    key_options options;
    std::size_t at = 0;
    const std::string first = line.substr(0, line.find_first_of(" \t"));
    if (!is_z85_key(first)) {
        // A line with no key at all is that, whatever its first word looks like.
        std::istringstream words(line);
        std::string word;
        bool has_key = false;
        while (!has_key && words >> word) has_key = is_z85_key(word);
        if (!has_key) throw key_error("not a Z85 CURVE public key (40 characters expected)");
        for (;;) {
            const std::size_t name_end = line.find_first_of("=, \t", at);
            const std::string name = line.substr(at, name_end - at);
            if (name.empty()) throw key_error("an option name is missing");
            at = name_end;
            std::optional<std::string> value;
            if (at < line.size() && line[at] == '=') {
                ++at;
                if (at < line.size() && line[at] == '"') {
                    const std::size_t close = line.find('"', at + 1);
                    if (close == std::string::npos) throw key_error("option " + name + ": unterminated quote");
                    value = line.substr(at + 1, close - at - 1);
                    at = close + 1;
                } else {
                    const std::size_t end = line.find_first_of(", \t", at);
                    value = line.substr(at, end - at);
                    at = end;
                }
            }
            apply_option(options, name, value);
            if (at >= line.size()) throw key_error("options but no key");
            if (line[at] == ',') {
                ++at;
                continue;
            }
            if (line[at] != ' ' && line[at] != '\t') throw key_error("option " + name + ": unexpected text after it");
            break;
        }
        at = line.find_first_not_of(" \t", at);
    }
    const std::string rest = at == std::string::npos ? std::string() : line.substr(at);
    const std::string key = rest.substr(0, rest.find_first_of(" \t"));
    if (!is_z85_key(key)) throw key_error("not a Z85 CURVE public key (40 characters expected)");
    std::string comment = trim(rest.substr(key.size()));
    comment = trim(comment.substr(std::min(comment.size(), comment.find_first_not_of('#'))));
    options.comment = comment;
    return {key, std::move(options)};
}

// An address as bytes: 4 for IPv4 (IPv4-mapped IPv6 included), 16 for IPv6; empty if neither.
std::string address_bytes(const std::string& text) {
    unsigned char raw[16];
    if (::inet_pton(AF_INET, text.c_str(), raw) == 1) return std::string(reinterpret_cast<char*>(raw), 4);
    if (::inet_pton(AF_INET6, text.c_str(), raw) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(raw, mapped, 12) == 0) return std::string(reinterpret_cast<char*>(raw + 12), 4);
        return std::string(reinterpret_cast<char*>(raw), 16);
    }
    return {};
}

}  // namespace

std::string key_options::who(const std::string& key) const { return comment.empty() ? key : comment; }

bool address_matches(const std::string& address, const std::string& pattern) {
    const auto slash = pattern.find('/');
    const std::string network = address_bytes(pattern.substr(0, slash));
    const std::string peer = address_bytes(address);
    if (network.empty() || peer.size() != network.size()) return false;
    std::size_t bits = network.size() * 8;
    if (slash != std::string::npos) {
        const std::string prefix = pattern.substr(slash + 1);
        if (prefix.empty() || prefix.size() > 3 || prefix.find_first_not_of("0123456789") != std::string::npos) {
            return false;
        }
        bits = std::stoul(prefix);
        if (bits > network.size() * 8) return false;
    }
    for (std::size_t i = 0; i < bits; ++i) {
        const int mask = 0x80 >> (i % 8);
        if ((network[i / 8] & mask) != (peer[i / 8] & mask)) return false;
    }
    return true;
}

std::map<std::string, key_options> parse_authorized_key_options(const std::string& text, const std::string& origin) {
    std::map<std::string, key_options> keys;
    std::istringstream lines(text);
    std::string raw;
    for (int number = 1; std::getline(lines, raw); ++number) {
        const std::string line = trim(raw);
        const std::string first = line.substr(0, line.find_first_of(" \t"));
        if (!is_z85_key(first) && (line.empty() || line[0] == '#')) continue;
        try {
            auto entry = parse_key_line(line);
            keys[entry.first] = std::move(entry.second);
        } catch (const key_error& e) {
            throw key_error(origin + ":" + std::to_string(number) + ": " + e.what());
        }
    }
    return keys;
}

std::map<std::string, key_options> load_authorized_key_options(const std::filesystem::path& file) {
    return parse_authorized_key_options(read_text(file), file.string());
}

std::set<std::string> parse_authorized_keys(const std::string& text, const std::string& origin) {
    std::set<std::string> keys;
    for (const auto& entry : parse_authorized_key_options(text, origin)) keys.insert(entry.first);
    return keys;
}

std::set<std::string> load_authorized_keys(const std::filesystem::path& file) {
    return parse_authorized_keys(read_text(file), file.string());
}

}  // namespace splitcore
