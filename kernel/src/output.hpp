#ifndef SPLITBRAIN_KERNEL_OUTPUT_HPP
#define SPLITBRAIN_KERNEL_OUTPUT_HPP

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

namespace nl = nlohmann;

namespace splitbrain {
enum class stream_name { out, err };

const char* to_string(stream_name name) noexcept;

// What the kernel's sys.stdout and sys.stderr write, from any thread. xeus-python sends one
// stream message per write(); a loop of print() then floods the frontend and PUB's high-water
// mark silently drops output. Here consecutive writes to one stream for one request are
// coalesced and published by a timer at most `flush_interval` after the first of them, at once
// when `flush_threshold` bytes are pending, and whenever flush() is called (the server calls it
// before every shell reply, every other message on iopub and every input prompt, so order is kept).
class output_buffer {
public:
    // publish(name, text, parent_header); may be called from any thread, one call at a time.
    using publisher = std::function<void(stream_name, const std::string&, const nl::json&)>;

    static constexpr std::chrono::milliseconds flush_interval{50};
    static constexpr std::size_t flush_threshold = 64 * 1024;

    output_buffer();
    ~output_buffer();

    output_buffer(const output_buffer&) = delete;
    output_buffer& operator=(const output_buffer&) = delete;

    void write(stream_name name, std::string_view text);
    void flush();

    // Output written from now on answers `parent_header` (the request being handled).
    void set_parent(const nl::json& parent_header);

    // Starts the timer thread publishing through `p`; stop() flushes and joins it.
    void start(publisher p);
    void stop();

private:
    struct chunk {
        stream_name name;
        std::string text;
        std::shared_ptr<const nl::json> parent;
    };

    void run_timer();

    // m_flush_mutex orders whole flushes (taken before m_mutex, never the other way round);
    // m_mutex guards the pending chunks and is held only to append or to take them.
    std::mutex m_flush_mutex;
    std::mutex m_mutex;
    std::condition_variable m_wakeup;
    std::vector<chunk> m_pending;
    std::size_t m_pending_bytes = 0;
    std::chrono::steady_clock::time_point m_first_pending;
    std::shared_ptr<const nl::json> m_parent;
    publisher m_publish;
    bool m_running = false;
    std::thread m_timer;
};

// What the process writes to its file descriptors 1 and 2 (os.system, child processes, C
// libraries' printf) goes to the notebook too, as with ipykernel: both are pipes read by a
// helper thread into the output_buffer. The kernel's own diagnostics (std::cerr, std::cout)
// keep going to the descriptors the kernel was started with.
class descriptor_capture {
public:
    explicit descriptor_capture(output_buffer& output);
    ~descriptor_capture();

    descriptor_capture(const descriptor_capture&) = delete;
    descriptor_capture& operator=(const descriptor_capture&) = delete;

    void start();
    // Whatever was written to 1 and 2 until now is in the output buffer on return.
    void drain();
    // Puts the original descriptors back.
    void stop();

private:
    struct capture {
        int fd;
        stream_name name;
        int saved = -1;
        int pipe_read = -1;
        std::string partial;  // an incomplete UTF-8 sequence at the end of the last read
    };

    void run();
    void read_available(capture& c);

    output_buffer& m_output;
    std::array<capture, 2> m_captures;
    int m_wake[2] = {-1, -1};
    std::mutex m_mutex;
    std::thread m_reader;
    std::atomic<bool> m_active{false};
};
}  // namespace splitbrain

#endif
