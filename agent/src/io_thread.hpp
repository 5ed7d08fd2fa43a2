// The worker's IO thread: owns the socket to the supervisor and the read ends of the pipes that
// replace fds 1 and 2. It passes requests on to the main thread, answers "cancel" itself, and
// drains the pipes before passing on each reply, so a call's output always precedes its reply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "interrupts.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

// The PAIR socket between the IO thread and the main thread; the main thread binds it.
inline constexpr const char* requests_endpoint = "inproc://requests";

struct output_pipe {
    int fd;  // 1 or 2: what the event says
    int read_end;
};

// Makes fd a pipe whose read end is returned (non-blocking, close-on-exec); children inherit fd.
[[nodiscard]] int redirect_to_pipe(int fd);

class io_thread {
public:
    io_thread(zmq::context_t& context, std::string endpoint, std::string id, output_pipe out, output_pipe err,
              interrupt_state& interrupts);

    // Says "ready" to the supervisor, then serves until the main thread sends {"ev": "quit"}.
    // Throws zmq::error_t if a socket fails.
    void run();

private:
    void drain(zmq::socket_ref supervisor);
    void forward_output(zmq::socket_ref supervisor, output_pipe& pipe, bool until_empty);
    void route_request(zmq::socket_ref supervisor, zmq::socket_ref main, std::vector<zmq::message_t>& request);
    bool refuse_if_late(zmq::socket_ref supervisor, const splitcore::json& header, std::uint64_t id);

    zmq::context_t& m_context;
    std::string m_endpoint;
    std::string m_id;
    output_pipe m_pipes[2];
    interrupt_state& m_interrupts;
};

}  // namespace splitbrain::agent
