// The worker's IO thread: owns the socket to the supervisor and the read ends of the pipes that
// replace fds 1 and 2. It passes requests on to the main thread, answers "cancel" itself, and
// drains the pipes before passing on each reply, so a call's output always precedes its reply.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "interrupts.hpp"
#include "splitcore/protocol.hpp"
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

    // What a session may have queued for its main thread (requests passed on and not yet replied
    // to); a request that would go past it, while another is queued, is refused with queue_full.
    static constexpr std::size_t max_queued_bytes = std::size_t(64) << 20;

    // Up by one while a read of the pipes is under way, by two once one got output: how the main thread knows
    // a call wrote no output, so its reply may go the direct way (serve_loop.hpp, output_probe).
    std::atomic<std::uint64_t> reads{0};

private:
    using parts = std::vector<zmq::message_t>;

    // True once the output the front reply owes is sent; false while the output window holds it back.
    bool drain(zmq::socket_ref supervisor);
    void forward_output(zmq::socket_ref supervisor, output_pipe& pipe, bool until_empty);
    void route_request(zmq::socket_ref supervisor, zmq::socket_ref main, std::vector<zmq::message_t>& request);
    // Output the client has not acknowledged stays under splitcore::output_window.
    [[nodiscard]] bool has_credit() const { return m_sent - m_acked < splitcore::output_window; }
    // Sends the main thread's replies that the output before them no longer holds back; true after "quit".
    bool send_replies(zmq::socket_ref supervisor);
    // Refuses a request that would queue more than max_queued_bytes; else counts it until its reply.
    bool admit(zmq::socket_ref supervisor, std::uint64_t id, const parts& request);
    bool refuse_if_late(zmq::socket_ref supervisor, const splitcore::json& header, std::uint64_t id);

    zmq::context_t& m_context;
    std::string m_endpoint;
    std::string m_id;
    output_pipe m_pipes[2];
    interrupt_state& m_interrupts;
    std::uint64_t m_sent = 0;          // the "at" of the last output event sent
    std::uint64_t m_read[2] = {0, 0};  // bytes read from each pipe
    std::uint64_t m_acked = 0;         // the highest "at" the client acknowledged
    struct held_reply {
        parts message;
        std::uint64_t owed[2];  // m_read of each pipe once the output written before the reply is read
    };
    std::deque<held_reply> m_replies;               // from the main thread, behind output not yet sent
    std::map<std::uint64_t, std::size_t> m_queued;  // request id -> its bytes, until its reply
    std::size_t m_queued_bytes = 0;
};

}  // namespace splitbrain::agent
