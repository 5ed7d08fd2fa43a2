#include "output.hpp"

#include <exception>
#include <iostream>
#include <utility>

#include "threads.hpp"

namespace splitbrain
{
    const char* to_string(stream_name name) noexcept
    {
        return name == stream_name::out ? "stdout" : "stderr";
    }

    output_buffer::output_buffer()
        : m_parent(std::make_shared<const nl::json>(nl::json::object()))
    {
    }

    output_buffer::~output_buffer()
    {
        stop();
    }

    void output_buffer::write(stream_name name, std::string_view text)
    {
        if (text.empty())
        {
            return;
        }
        bool over_threshold = false;
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (m_pending.empty())
            {
                m_first_pending = std::chrono::steady_clock::now();
                m_wakeup.notify_one();
            }
            if (!m_pending.empty() && m_pending.back().name == name && m_pending.back().parent == m_parent)
            {
                m_pending.back().text.append(text);
            }
            else
            {
                m_pending.push_back({name, std::string(text), m_parent});
            }
            m_pending_bytes += text.size();
            over_threshold = m_pending_bytes >= flush_threshold;
        }
        if (over_threshold)
        {
            flush();
        }
    }

    void output_buffer::flush()
    {
        std::lock_guard<std::mutex> flush_lock(m_flush_mutex);
        std::vector<chunk> chunks;
        publisher publish;
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (!m_publish)
            {
                return;  // not started yet: keep the text until there is somewhere to send it
            }
            chunks.swap(m_pending);
            m_pending_bytes = 0;
            publish = m_publish;
        }
        for (const chunk& c : chunks)
        {
            try
            {
                publish(c.name, c.text, *c.parent);
            }
            catch (const std::exception& e)
            {
                std::cerr << "[splitbrain.kernel_output_lost] " << c.text.size() << " bytes of "
                          << to_string(c.name) << " could not be sent: " << e.what() << std::endl;
            }
        }
    }

    void output_buffer::set_parent(const nl::json& parent_header)
    {
        auto parent = std::make_shared<const nl::json>(parent_header);
        std::lock_guard<std::mutex> lock(m_mutex);
        m_parent = std::move(parent);
    }

    void output_buffer::start(publisher p)
    {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_publish = std::move(p);
            m_running = true;
        }
        m_timer = start_signal_free_thread([this] { run_timer(); });
    }

    void output_buffer::stop()
    {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_running = false;
            m_wakeup.notify_one();
        }
        if (m_timer.joinable())
        {
            m_timer.join();
        }
        flush();
        std::lock_guard<std::mutex> lock(m_mutex);
        m_publish = nullptr;
    }

    void output_buffer::run_timer()
    {
        std::unique_lock<std::mutex> lock(m_mutex);
        while (m_running)
        {
            if (m_pending.empty())
            {
                m_wakeup.wait(lock);
                continue;
            }
            auto due = m_first_pending + flush_interval;
            if (std::chrono::steady_clock::now() < due)
            {
                m_wakeup.wait_until(lock, due);
                continue;
            }
            lock.unlock();
            flush();
            lock.lock();
        }
    }
}
