// output_buffer and descriptor_capture: coalescing, order, parents, UTF-8 boundaries.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "output.hpp"

namespace {
using splitbrain::stream_name;

struct published {
    stream_name name;
    std::string text;
    std::string parent;
};

// Collects what the buffer publishes, as the server would send it.
class recorder {
public:
    splitbrain::output_buffer::publisher publisher() {
        return [this](stream_name name, const std::string& text, const nl::json& parent) {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_messages.push_back({name, text, parent.value("msg_id", "")});
            m_changed.notify_all();
        };
    }

    std::vector<published> messages() {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_messages;
    }

    bool wait_for_count(std::size_t n, std::chrono::milliseconds deadline) {
        std::unique_lock<std::mutex> lock(m_mutex);
        return m_changed.wait_for(lock, deadline, [&] { return m_messages.size() >= n; });
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_changed;
    std::vector<published> m_messages;
};

std::string joined(const std::vector<published>& messages) {
    std::string text;
    for (const auto& m : messages) {
        text += m.text;
    }
    return text;
}
}  // namespace

TEST(output_buffer, consecutive_writes_to_one_stream_become_one_message) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    for (int i = 0; i < 2000; ++i) {
        output.write(stream_name::out, std::to_string(i));
        output.write(stream_name::out, "\n");
    }
    output.flush();
    const auto messages = sent.messages();
    ASSERT_EQ(messages.size(), 1u);
    std::string expected;
    for (int i = 0; i < 2000; ++i) {
        expected += std::to_string(i) + "\n";
    }
    EXPECT_EQ(messages[0].text, expected);
    output.stop();
}

TEST(output_buffer, stdout_and_stderr_keep_their_order) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    output.write(stream_name::out, "a");
    output.write(stream_name::err, "b");
    output.write(stream_name::out, "c");
    output.flush();
    const auto messages = sent.messages();
    ASSERT_EQ(messages.size(), 3u);
    EXPECT_EQ(messages[0].name, stream_name::out);
    EXPECT_EQ(messages[1].name, stream_name::err);
    EXPECT_EQ(joined(messages), "abc");
    output.stop();
}

TEST(output_buffer, text_answers_the_request_it_was_written_for) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    output.set_parent({{"msg_id", "first"}});
    output.write(stream_name::out, "1");
    output.set_parent({{"msg_id", "second"}});
    output.write(stream_name::out, "2");
    output.flush();
    const auto messages = sent.messages();
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0].parent, "first");
    EXPECT_EQ(messages[1].parent, "second");
    output.stop();
}

TEST(output_buffer, the_timer_sends_pending_text_without_a_flush) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    output.write(stream_name::out, "later");
    // SHALL be sent at most flush_interval after the write; generous deadline for loaded machines.
    ASSERT_TRUE(sent.wait_for_count(1, std::chrono::seconds(5)));
    EXPECT_EQ(sent.messages()[0].text, "later");
    output.stop();
}

TEST(output_buffer, a_large_write_is_sent_at_once) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    output.write(stream_name::out, std::string(splitbrain::output_buffer::flush_threshold, 'x'));
    EXPECT_EQ(sent.messages().size(), 1u);  // synchronously, in the writer
    output.stop();
}

TEST(output_buffer, text_written_before_start_is_sent_after_it) {
    recorder sent;
    splitbrain::output_buffer output;
    output.write(stream_name::err, "early");
    output.flush();
    EXPECT_TRUE(sent.messages().empty());
    output.start(sent.publisher());
    output.flush();
    ASSERT_EQ(sent.messages().size(), 1u);
    EXPECT_EQ(sent.messages()[0].text, "early");
    output.stop();
}

TEST(output_buffer, many_threads_lose_nothing) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    std::vector<std::thread> writers;
    for (int t = 0; t < 8; ++t) {
        writers.emplace_back([&output] {
            for (int i = 0; i < 1000; ++i) {
                output.write(stream_name::out, "x");
            }
        });
    }
    for (auto& w : writers) {
        w.join();
    }
    output.stop();
    EXPECT_EQ(joined(sent.messages()), std::string(8000, 'x'));
}

TEST(descriptor_capture, what_is_written_to_descriptor_1_reaches_the_buffer_in_whole_characters) {
    recorder sent;
    splitbrain::output_buffer output;
    output.start(sent.publisher());
    splitbrain::descriptor_capture capture(output);
    capture.start();
    const char e_acute[] = "\xc3\xa9";  // é, written one byte at a time
    ASSERT_EQ(::write(1, e_acute, 1), 1);
    capture.drain();
    output.flush();
    ASSERT_EQ(::write(1, e_acute + 1, 1), 1);
    ASSERT_EQ(::write(2, "to 2\n", 5), 5);
    capture.drain();
    capture.stop();
    output.stop();
    const auto messages = sent.messages();
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0].name, stream_name::out);
    EXPECT_EQ(messages[0].text, "\xc3\xa9");
    EXPECT_EQ(messages[1].name, stream_name::err);
    EXPECT_EQ(messages[1].text, "to 2\n");
}
