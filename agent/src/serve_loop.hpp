// The worker's serve loop, on the main thread: each request from the IO thread runs through the
// session's operations (or, cancelled while it waited, is answered with KeyboardInterrupt), and its
// reply goes back. After "bye" it ends the process.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include <zmq.hpp>

#include "interrupts.hpp"
#include "worker.hpp"

namespace splitbrain::agent {

// Whether a call wrote output (direct.hpp: a reply goes the direct way only if not, else after its
// output through the IO thread): the pipes' read ends, and the IO thread's count of reads begun
// and ended (odd while one is under way).
struct output_probe {
    int pipes[2];
    const std::atomic<std::uint64_t>* reads;
};

// requests: the bound end of requests_endpoint. Runs with the GIL held except while waiting.
[[noreturn]] void serve(worker& operations, interrupt_state& interrupts, zmq::context_t& context,
                        zmq::socket_t& requests, std::thread& io, const output_probe& probe);

}  // namespace splitbrain::agent
