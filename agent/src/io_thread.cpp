#include "io_thread.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

using splitcore::json;

int redirect_to_pipe(int fd) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    ::dup2(ends[1], fd);
    ::close(ends[1]);
    ::fcntl(ends[0], F_SETFL, ::fcntl(ends[0], F_GETFL) | O_NONBLOCK);
    return ends[0];
}

io_thread::io_thread(zmq::context_t& context, std::string endpoint, std::string id, output_pipe out, output_pipe err,
                     interrupt_state& interrupts)
    : m_context(context), m_endpoint(std::move(endpoint)), m_id(std::move(id)), m_pipes{out, err},
      m_interrupts(interrupts) {}

void io_thread::run() {
    zmq::socket_t supervisor(m_context, zmq::socket_type::dealer);
    supervisor.set(zmq::sockopt::routing_id, m_id);
    supervisor.set(zmq::sockopt::linger, 2000);
    supervisor.set(zmq::sockopt::sndhwm, 0);
    supervisor.set(zmq::sockopt::rcvhwm, 0);
    supervisor.connect(m_endpoint);
    zmq::socket_t main(m_context, zmq::socket_type::pair);
    main.set(zmq::sockopt::sndhwm, 0);  // never block here: cancel must get through a backlog
    main.set(zmq::sockopt::rcvhwm, 0);
    main.connect(requests_endpoint);
    splitcore::send_message(supervisor, json{{"ev", "ready"}, {"pid", ::getpid()}});

    for (;;) {
        zmq_pollitem_t items[4] = {
            {supervisor.handle(), 0, ZMQ_POLLIN, 0},
            {main.handle(), 0, ZMQ_POLLIN, 0},
        };
        int count = 2;
        int pipe_of_item[4] = {-1, -1, -1, -1};
        // Back-pressure: while the client has not acknowledged enough output, the pipes are not
        // read; once they fill, the slave's writers block until it has.
        for (int i = 0; i < 2 && has_credit(); ++i) {
            if (m_pipes[i].read_end < 0) continue;
            pipe_of_item[count] = i;
            items[count++] = {nullptr, m_pipes[i].read_end, ZMQ_POLLIN, 0};
        }
        const long timeout = m_interrupts.resignal_unheard() ? interrupt_state::resignal_after.count() : -1;
        if (zmq_poll(items, count, timeout) < 0) {
            if (zmq_errno() == EINTR) continue;
            throw zmq::error_t();
        }
        for (int item = 2; item < count; ++item) {
            if (items[item].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
                forward_output(supervisor, m_pipes[pipe_of_item[item]], false);
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            while (auto reply = splitcore::recv_parts(main, zmq::recv_flags::dontwait)) {
                // What the pipes hold now was written before the reply: it goes first (and only
                // it: a background writer that never stops does not hold the reply back).
                held_reply held{std::move(*reply), {m_read[0], m_read[1]}};
                for (int i = 0; i < 2; ++i) {
                    int queued = 0;
                    if (m_pipes[i].read_end >= 0 && ::ioctl(m_pipes[i].read_end, FIONREAD, &queued) == 0) {
                        held.owed[i] += static_cast<std::uint64_t>(queued);
                    }
                }
                m_replies.push_back(std::move(held));
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            while (auto request = splitcore::recv_parts(supervisor, zmq::recv_flags::dontwait)) {
                route_request(supervisor, main, *request);
            }
        }
        if (send_replies(supervisor)) return;
    }
}

bool io_thread::send_replies(zmq::socket_ref supervisor) {
    // A call's output goes before its reply: a reply waits while output written before it cannot
    // be sent yet.
    while (!m_replies.empty()) {
        const json header = splitcore::decode_header(m_replies.front().message.at(0));
        // After "bye" nobody acknowledges: the output the window allows goes, then the worker ends.
        if (header.value("ev", "") == "quit") return (void)drain(supervisor), true;
        if (!drain(supervisor)) return false;
        parts reply = std::move(m_replies.front().message);
        m_replies.pop_front();
        if (const json* id = splitcore::optional_field(header, "id")) {
            if (auto queued = m_queued.find(splitcore::as_uint(*id).value_or(0)); queued != m_queued.end()) {
                m_queued_bytes -= queued->second;
                m_queued.erase(queued);
            }
        }
        splitcore::send_parts(supervisor, reply);
    }
    return false;
}

bool io_thread::admit(zmq::socket_ref supervisor, std::uint64_t id, const parts& request) {
    std::size_t size = 0;
    for (const auto& part : request) size += part.size();
    if (!m_queued.empty() && m_queued_bytes + size > max_queued_bytes) {
        splitcore::send_message(
            supervisor,
            splitcore::error_reply(
                id, splitcore::error_value(
                        splitcore::errc::queue_full,
                        "the session already has " + std::to_string(m_queued.size()) + " requests of " +
                            std::to_string(m_queued_bytes >> 20) + " MiB waiting to run, and this one of " +
                            std::to_string(size >> 20) + " MiB would pass the bound of " +
                            std::to_string(max_queued_bytes >> 20) +
                            " MiB; it was not run. Wait for earlier calls to finish, or send less at once")));
        return false;
    }
    m_queued_bytes += size;
    m_queued[id] += size;
    return true;
}

bool io_thread::drain(zmq::socket_ref supervisor) {
    const std::uint64_t* owed = m_replies.empty() ? nullptr : m_replies.front().owed;
    for (int i = 0; i < 2; ++i) {
        while (m_pipes[i].read_end >= 0 && has_credit() && (owed == nullptr || m_read[i] < owed[i])) {
            const std::uint64_t before = m_read[i];
            forward_output(supervisor, m_pipes[i], false);
            if (m_read[i] == before) break;  // empty (EAGAIN) or closed
        }
        if (owed != nullptr && m_pipes[i].read_end >= 0 && m_read[i] < owed[i]) return false;
    }
    return true;
}

// One read, or (until_empty) everything the pipe holds right now, as far as the output window allows.
void io_thread::forward_output(zmq::socket_ref supervisor, output_pipe& pipe, bool until_empty) {
    char buffer[65536];
    while (pipe.read_end >= 0 && has_credit()) {
        ++reads;
        const ssize_t n = ::read(pipe.read_end, buffer, sizeof(buffer));
        if (n > 0) m_read[&pipe - m_pipes] += static_cast<std::uint64_t>(n);
        if (n > 0) ++reads;  // even again, and changed; a read that got nothing changes nothing
        else --reads;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            // Every writer closed it (user code closed fd 1 or 2): stop watching, or poll spins.
            ::close(pipe.read_end);
            pipe.read_end = -1;
            return;
        }
        if (n < 0) return;
        m_sent += static_cast<std::uint64_t>(n) + splitcore::output_event_cost;
        splitcore::send_message(supervisor,
                                splitcore::output_event(pipe.fd, buffer, static_cast<std::size_t>(n), m_sent));
        if (!until_empty) return;
    }
}

// A request that comes after its "until" (the agent's clock, as the client read it at hello) is
// one its client may have given up on and told "it did not run": it never runs.
bool io_thread::refuse_if_late(zmq::socket_ref supervisor, const json& header, std::uint64_t id) {
    const json* until = splitcore::optional_field(header, "until");
    if (until == nullptr || !until->is_number_unsigned()) return false;
    const auto now =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    const auto deadline = until->get<std::uint64_t>();
    if (static_cast<std::uint64_t>(now) <= deadline) return false;
    char late[32];
    std::snprintf(late, sizeof late, "%.1f", static_cast<double>(static_cast<std::uint64_t>(now) - deadline) / 1e6);
    splitcore::send_message(
        supervisor, splitcore::error_reply(id, splitcore::error_value(splitcore::error(
                                                   splitcore::errc::arrived_late,
                                                   "request " + std::to_string(id) + " reached the agent " + late +
                                                       " s after its client may have given up on it (a link cut, "
                                                       "or the agent stopped); it did not run"))));
    return true;
}

void io_thread::route_request(zmq::socket_ref supervisor, zmq::socket_ref main, std::vector<zmq::message_t>& request) {
    std::uint64_t id = 0;
    try {
        const json header = splitcore::decode_header(request.at(0));
        id = splitcore::request_id(header);
        const std::string& op = splitcore::string_field(header, "op");
        static_assert(splitcore::op::count(splitcore::tier::io_thread) == 2, "the IO thread answers cancel and ack");
        if (op == splitcore::op::ack.name) {
            m_acked = std::max(m_acked, std::min(splitcore::uint_field(header, "at"), m_sent));
            json reply = splitcore::ok_reply(id, nullptr);
            if (const std::uint64_t running = m_interrupts.running(); running != 0) reply["running"] = running;
            splitcore::send_message(supervisor, reply);
            return;
        }
        if (op != splitcore::op::cancel.name) {
            if (refuse_if_late(supervisor, header, id)) return;
            if (!admit(supervisor, id, request)) return;
            // The session's own life (hello, bye, release) is not the client's to cancel.
            // Nor a callback's answer, which the call waiting for it takes without starting a request.
            if (op != splitcore::op::hello.name && op != splitcore::op::bye.name && op != splitcore::op::release.name &&
                op != splitcore::op::answer.name) {
                m_interrupts.queue(id);
            }
            splitcore::send_parts(main, request);
            return;
        }
        const bool interrupted = m_interrupts.cancel(splitcore::uint_field(header, "target"));
        splitcore::send_message(supervisor, splitcore::ok_reply(id, interrupted));
    } catch (const splitcore::error& e) {
        splitcore::send_message(supervisor, splitcore::error_reply(id, splitcore::error_value(e)));
    }
}

}  // namespace splitbrain::agent
