#include "io_thread.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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
        for (int i = 0; i < 2; ++i) {
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
            auto reply = splitcore::recv_parts(main);
            drain(supervisor);
            const json header = splitcore::decode_header((*reply)[0]);
            if (header.value("ev", "") == "quit") return;
            splitcore::send_parts(supervisor, *reply);
        }
        if (items[0].revents & ZMQ_POLLIN) {
            while (auto request = splitcore::recv_parts(supervisor, zmq::recv_flags::dontwait)) {
                route_request(supervisor, main, *request);
            }
        }
    }
}

void io_thread::drain(zmq::socket_ref supervisor) {
    for (auto& pipe : m_pipes) forward_output(supervisor, pipe, true);
}

// One read, or (until_empty) everything the pipe holds right now.
void io_thread::forward_output(zmq::socket_ref supervisor, output_pipe& pipe, bool until_empty) {
    char buffer[65536];
    while (pipe.read_end >= 0) {
        const ssize_t n = ::read(pipe.read_end, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            // Every writer closed it (user code closed fd 1 or 2): stop watching, or poll spins.
            ::close(pipe.read_end);
            pipe.read_end = -1;
            return;
        }
        if (n < 0) return;
        splitcore::send_message(supervisor, splitcore::output_event(pipe.fd, buffer, static_cast<std::size_t>(n)));
        if (!until_empty) return;
    }
}

void io_thread::route_request(zmq::socket_ref supervisor, zmq::socket_ref main, std::vector<zmq::message_t>& request) {
    std::uint64_t id = 0;
    try {
        const json header = splitcore::decode_header(request.at(0));
        id = splitcore::request_id(header);
        const std::string& op = splitcore::string_field(header, "op");
        static_assert(splitcore::op::count(splitcore::tier::io_thread) == 1, "the IO thread answers cancel only");
        if (op != splitcore::op::cancel.name) {
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
