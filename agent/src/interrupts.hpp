// The worker's interrupt state: which request the main thread is executing, so that a cancel
// interrupts only that one; which requests wait for it, so that a cancel that overtakes its call is
// not lost; and the SIGINTs sent, delivered, and turned into KeyboardInterrupt by Python. The IO
// thread cancels; the main thread starts and finishes requests.
#pragma once

#include <Python.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <mutex>
#include <vector>

namespace splitbrain::agent {

class interrupt_state {
public:
    // main_thread receives the SIGINTs: the only thread where Python raises KeyboardInterrupt.
    explicit interrupt_state(pthread_t main_thread) noexcept : m_main_thread(main_thread) {}
    interrupt_state(const interrupt_state&) = delete;
    interrupt_state& operator=(const interrupt_state&) = delete;

    // Routes SIGINT through this state: each delivery is counted, then Python's handler runs, itself
    // replaced by one that counts the KeyboardInterrupts it raises. Once, Python started, on the
    // main thread; the state must outlive the process's last SIGINT.
    void install();

    // IO thread: request id goes to the main thread and may be cancelled while it waits.
    void queue(std::uint64_t id);
    // IO thread: interrupts target if it runs (a SIGINT to the main thread), or has it answered
    // with KeyboardInterrupt without running if it waits; false if it does neither.
    [[nodiscard]] bool cancel(std::uint64_t target);
    // IO thread: repeats the SIGINT of a cancel Python has not acted on (one that lands just before
    // a blocking call trips Python's flag but interrupts nothing); true while one is outstanding.
    [[nodiscard]] bool resignal_unheard();
    // How often resignal_unheard() should be called while it returns true.
    static constexpr std::chrono::milliseconds resignal_after{40};

    // Main thread, after a request ended: the children of the main thread when a cancel signalled
    // it (empty if none did). While a cancel is under way the worker is a child subreaper, so the
    // orphans of the cancelled call come to it, not to init (see leftovers.hpp).
    [[nodiscard]] std::set<pid_t> children_at_cancel();
    // Main thread: the cancelled call is cleaned up; orphans go to init again.
    void stop_adopting_orphans();

    // Main thread: request id starts; false if it was cancelled while it waited (it must not run).
    [[nodiscard]] bool start(std::uint64_t id);
    // The request the main thread runs (the innermost), 0 when idle: an ack's reply says it, so that
    // a client learns that a call it sent the direct way reached the worker (direct.hpp).
    [[nodiscard]] std::uint64_t running() {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_running;
    }
    // Main thread: the request has ended. A SIGINT sent for it lands, and its KeyboardInterrupt is
    // dropped, before the next request starts.
    void finish();
    // Main thread, waiting for a callback's answer: true once if a cancel named the call that waits
    // while a request served meanwhile ran (that one is not interrupted: it may be another thread's
    // call, which overtook the cancel the direct way); the wait then ends with KeyboardInterrupt.
    [[nodiscard]] bool take_cancel_of_waiting_call();

private:
    static void on_sigint(int sig, siginfo_t* info, void* context);
    static PyObject* raise_keyboard_interrupt(PyObject* self, PyObject* args);
    static void discard_stale_interrupt();

    const pthread_t m_main_thread;
    std::mutex m_mutex;
    std::uint64_t m_running = 0;  // request id, 0 when idle; guarded by m_mutex
    std::uint64_t m_sent = 0;     // SIGINTs sent to the main thread; guarded by m_mutex
    // Requests forwarded to the main thread and not yet started -> cancelled before they started.
    std::map<std::uint64_t, bool> m_queued;  // guarded by m_mutex
    // The running request a cancel signalled, until Python raises KeyboardInterrupt for it.
    std::uint64_t m_unheard = 0;                        // guarded by m_mutex
    std::uint64_t m_raised_before = 0;                  // m_raised when it was signalled; guarded by m_mutex
    std::chrono::steady_clock::time_point m_signalled;  // guarded by m_mutex
    std::atomic<std::uint64_t> m_delivered{0};          // SIGINTs that reached on_sigint
    std::atomic<std::uint64_t> m_raised{0};             // KeyboardInterrupts raised by Python's handler
    struct sigaction m_python_sigint {};                // Python's C handler, run by on_sigint
    bool m_adopting = false;                            // a child subreaper; guarded by m_mutex
    std::set<pid_t> m_children_at_cancel;               // guarded by m_mutex

    // Calls whose callback waits while m_running, nested in them, runs; innermost last; guarded by m_mutex
    std::vector<std::uint64_t> m_outer;
    std::set<std::uint64_t> m_outer_cancelled;  // of m_outer, cancelled while a request nested in it ran
};

}  // namespace splitbrain::agent
