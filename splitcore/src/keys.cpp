#include "splitcore/keys.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <sstream>
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

std::set<std::string> parse_authorized_keys(const std::string& text, const std::string& origin) {
    std::set<std::string> keys;
    std::istringstream lines(text);
    std::string line;
    for (int number = 1; std::getline(lines, line); ++number) {
        const auto key = key_of_line(line);
        if (!key) {
            throw key_error(origin + ":" + std::to_string(number) +
                            ": not a Z85 CURVE public key (40 characters expected)");
        }
        if (!key->empty()) keys.insert(*key);
    }
    return keys;
}

std::set<std::string> load_authorized_keys(const std::filesystem::path& file) {
    return parse_authorized_keys(read_text(file), file.string());
}

}  // namespace splitcore
