#include "audit_log.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include <nlohmann/json.hpp>

#include "log.hpp"

namespace splitbrain::agent {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t max_queued = 100000;

std::string iso_time(double seconds) {
    const auto whole = static_cast<std::time_t>(std::floor(seconds));
    const int millis = static_cast<int>((seconds - static_cast<double>(whole)) * 1000);
    std::tm tm{};
    ::gmtime_r(&whole, &tm);
    char text[40];
    const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(text + n, sizeof text - n, ".%03dZ", millis);
    return text;
}

int open_append(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open the audit log " + path.string() + ": " + std::strerror(errno));
    return fd;
}

}  // namespace

audit_log::audit_log(fs::path path, std::uintmax_t max_bytes, unsigned keep)
    : m_path(std::move(path)), m_max_bytes(max_bytes), m_keep(keep) {
    m_fd = open_append(m_path);
    struct stat st {};
    if (::fstat(m_fd, &st) == 0) m_size = static_cast<std::uintmax_t>(st.st_size);
    m_writer = std::thread([this] { run(); });
}

audit_log::~audit_log() {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_stopping = true;
    }
    m_wake.notify_one();
    m_writer.join();
    if (m_fd >= 0) ::close(m_fd);
}

void audit_log::write(audit_record record) {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_queue.size() >= max_queued) {
            ++m_dropped;
            return;
        }
        m_queue.push_back(std::move(record));
    }
    m_wake.notify_one();
}

std::string audit_log::line(const audit_record& r) {
    const nlohmann::json entry = {
        {"time", iso_time(r.time)}, {"key", r.who},   {"session", r.session}, {"op", r.op},
        {"target", r.target},       {"args", r.args}, {"outcome", r.outcome}, {"ms", std::round(r.ms * 1000) / 1000}};
    return entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void audit_log::run() {
    std::deque<audit_record> batch;
    for (;;) {
        std::uint64_t dropped = 0;
        bool stopping = false;
        {
            std::unique_lock<std::mutex> lock(m_mutex);
            m_wake.wait(lock, [&] { return m_stopping || !m_queue.empty(); });
            batch.swap(m_queue);
            dropped = std::exchange(m_dropped, 0);
            stopping = m_stopping;
        }
        std::string text;
        for (const auto& record : batch) text += line(record) + "\n";
        batch.clear();
        if (dropped != 0) {
            log("audit log: " + std::to_string(dropped) + " records dropped (the disk did not keep up)");
            audit_record note;
            note.time = static_cast<double>(std::time(nullptr));
            note.op = "audit";
            note.outcome = std::to_string(dropped) + " records dropped";
            text += line(note) + "\n";
        }
        if (!text.empty()) append(text);
        if (stopping) {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (m_queue.empty()) return;
        }
    }
}

void audit_log::append(const std::string& text) {
    if (m_size > 0 && m_size + text.size() > m_max_bytes) rotate();
    const char* data = text.data();
    std::size_t left = text.size();
    while (left > 0) {
        const ssize_t n = ::write(m_fd, data, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            log("audit log " + m_path.string() + ": cannot write: " + std::strerror(errno));
            return;
        }
        data += n;
        left -= static_cast<std::size_t>(n);
        m_size += static_cast<std::uintmax_t>(n);
    }
}

void audit_log::rotate() {
    std::error_code ec;
    auto numbered = [&](unsigned n) { return fs::path(m_path.string() + "." + std::to_string(n)); };
    if (m_keep == 0) {
        fs::remove(m_path, ec);
    } else {
        fs::remove(numbered(m_keep), ec);
        for (unsigned n = m_keep; n > 1; --n) fs::rename(numbered(n - 1), numbered(n), ec);
        fs::rename(m_path, numbered(1), ec);
    }
    ::close(m_fd);
    m_fd = -1;
    try {
        m_fd = open_append(m_path);
    } catch (const std::exception& e) {
        log(e.what());
    }
    m_size = 0;
}

}  // namespace splitbrain::agent
