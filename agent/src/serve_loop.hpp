// The worker's serve loop, on the main thread: each request from the IO thread runs through the
// session's operations (or, cancelled while it waited, is answered with KeyboardInterrupt), and its
// reply goes back. After "bye" it ends the process.
#pragma once

#include <thread>

#include <zmq.hpp>

#include "interrupts.hpp"
#include "worker.hpp"

namespace splitbrain::agent {

// requests: the bound end of requests_endpoint. Runs with the GIL held except while waiting.
[[noreturn]] void serve(worker& operations, interrupt_state& interrupts, zmq::context_t& context,
                        zmq::socket_t& requests, std::thread& io);

}  // namespace splitbrain::agent
