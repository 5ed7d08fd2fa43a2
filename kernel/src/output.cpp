#include "output.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <ext/stdio_filebuf.h>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include "splitcore/errors.hpp"

#include "threads.hpp"

namespace splitbrain {
const char* to_string(stream_name name) noexcept { return name == stream_name::out ? "stdout" : "stderr"; }

output_buffer::output_buffer() : m_parent(std::make_shared<const nl::json>(nl::json::object())) {}

output_buffer::~output_buffer() { stop(); }

void output_buffer::write(stream_name name, std::string_view text) {
    if (text.empty()) {
        return;
    }
    bool over_threshold = false;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_pending.empty()) {
            m_first_pending = std::chrono::steady_clock::now();
            m_wakeup.notify_one();
        }
        if (!m_pending.empty() && m_pending.back().name == name && m_pending.back().parent == m_parent) {
            m_pending.back().text.append(text);
        } else {
            m_pending.push_back({name, std::string(text), m_parent});
        }
        m_pending_bytes += text.size();
        over_threshold = m_pending_bytes >= flush_threshold;
    }
    if (over_threshold) {
        flush();
    }
}

void output_buffer::flush() {
    std::lock_guard<std::mutex> flush_lock(m_flush_mutex);
    std::vector<chunk> chunks;
    publisher publish;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (!m_publish) {
            return;  // not started yet: keep the text until there is somewhere to send it
        }
        chunks.swap(m_pending);
        m_pending_bytes = 0;
        publish = m_publish;
    }
    for (const chunk& c : chunks) {
        try {
            publish(c.name, c.text, *c.parent);
        } catch (const std::exception& e) {
            std::cerr << splitcore::tagged(splitcore::errc::kernel_output_lost, std::to_string(c.text.size()) +
                                                                                    " bytes of " + to_string(c.name) +
                                                                                    " could not be sent: " + e.what())
                      << std::endl;
        }
    }
}

void output_buffer::set_parent(const nl::json& parent_header) {
    auto parent = std::make_shared<const nl::json>(parent_header);
    std::lock_guard<std::mutex> lock(m_mutex);
    m_parent = std::move(parent);
}

void output_buffer::start(publisher p) {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_publish = std::move(p);
        m_running = true;
    }
    m_timer = start_signal_free_thread([this] { run_timer(); });
}

void output_buffer::stop() {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_running = false;
        m_wakeup.notify_one();
    }
    if (m_timer.joinable()) {
        m_timer.join();
    }
    flush();
    std::lock_guard<std::mutex> lock(m_mutex);
    m_publish = nullptr;
}

void output_buffer::run_timer() {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (m_running) {
        if (m_pending.empty()) {
            m_wakeup.wait(lock);
            continue;
        }
        auto due = m_first_pending + flush_interval;
        if (std::chrono::steady_clock::now() < due) {
            m_wakeup.wait_until(lock, due);
            continue;
        }
        lock.unlock();
        flush();
        lock.lock();
    }
}
}  // namespace splitbrain

namespace splitbrain {
namespace {
// Length of the longest prefix of `text` that does not end inside a UTF-8 sequence.
std::size_t complete_utf8_prefix(const std::string& text) {
    const std::size_t n = text.size();
    for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto byte = static_cast<unsigned char>(text[n - back]);
        if ((byte & 0xC0) == 0x80) {
            continue;  // a continuation byte: look further back for the lead byte
        }
        const std::size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
        return length > back ? n - back : n;
    }
    return n;
}

// std::cerr and std::cout of the kernel itself, on the descriptors it was started with.
std::unique_ptr<__gnu_cxx::stdio_filebuf<char>> own_err;
std::unique_ptr<__gnu_cxx::stdio_filebuf<char>> own_out;
std::streambuf* previous_err = nullptr;
std::streambuf* previous_out = nullptr;
}  // namespace

descriptor_capture::descriptor_capture(output_buffer& output)
    : m_output(output), m_captures{{{1, stream_name::out, -1, -1, {}}, {2, stream_name::err, -1, -1, {}}}} {}

descriptor_capture::~descriptor_capture() { stop(); }

void descriptor_capture::start() {
    if (::pipe2(m_wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        return;  // output of child processes then goes where the kernel's goes; not fatal
    }
    std::cout.flush();
    std::cerr.flush();
    for (capture& c : m_captures) {
        int ends[2];
        c.saved = ::fcntl(c.fd, F_DUPFD_CLOEXEC, 3);
        if (c.saved < 0 || ::pipe2(ends, O_CLOEXEC) != 0) {
            continue;
        }
        ::fcntl(ends[0], F_SETFL, O_NONBLOCK);
        ::dup2(ends[1], c.fd);  // fd 1 and 2 stay inheritable: children write into the pipe
        ::close(ends[1]);
        c.pipe_read = ends[0];
    }
    own_err = std::make_unique<__gnu_cxx::stdio_filebuf<char>>(m_captures[1].saved, std::ios::out, 1);
    own_out = std::make_unique<__gnu_cxx::stdio_filebuf<char>>(m_captures[0].saved, std::ios::out);
    previous_err = std::cerr.rdbuf(own_err.get());
    previous_out = std::cout.rdbuf(own_out.get());
    m_active = true;
    m_reader = start_signal_free_thread([this] { run(); });
}

void descriptor_capture::drain() {
    if (!m_active) {
        return;
    }
    std::fflush(nullptr);  // what C code printf'ed is still in stdio's buffer
    std::lock_guard<std::mutex> lock(m_mutex);
    for (capture& c : m_captures) {
        read_available(c);
    }
}

void descriptor_capture::stop() {
    if (!m_active.exchange(false)) {
        return;
    }
    const char wake = 1;
    (void)!::write(m_wake[1], &wake, 1);
    m_reader.join();
    std::cout.flush();
    std::cerr.flush();
    std::cout.rdbuf(previous_out);
    std::cerr.rdbuf(previous_err);
    std::lock_guard<std::mutex> lock(m_mutex);
    for (capture& c : m_captures) {
        if (c.saved >= 0) {
            ::dup2(c.saved, c.fd);
        }
        if (c.pipe_read >= 0) {
            read_available(c);
            ::close(c.pipe_read);
            c.pipe_read = -1;
        }
    }
    own_out.reset();  // closes the saved descriptors
    own_err.reset();
    for (int& fd : m_wake) {
        ::close(fd);
        fd = -1;
    }
}

void descriptor_capture::run() {
    pollfd fds[] = {{m_captures[0].pipe_read, POLLIN, 0}, {m_captures[1].pipe_read, POLLIN, 0}, {m_wake[0], POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (fds[2].revents != 0) {
            return;
        }
        std::lock_guard<std::mutex> lock(m_mutex);
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents & (POLLIN | POLLHUP)) {
                read_available(m_captures[i]);
            }
        }
    }
}

void descriptor_capture::read_available(capture& c) {
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(c.pipe_read, buffer, sizeof(buffer));
        if (n <= 0) {
            break;
        }
        c.partial.append(buffer, static_cast<std::size_t>(n));
        const std::size_t complete = complete_utf8_prefix(c.partial);
        m_output.write(c.name, std::string_view(c.partial.data(), complete));
        c.partial.erase(0, complete);
    }
}
}  // namespace splitbrain
