#include "interrupts.hpp"

#include <sched.h>
#include <sys/prctl.h>

#include <algorithm>

#include "leftovers.hpp"
#include "log.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain::agent {

namespace {
// A signal handler has no argument to carry its state: install() leaves it here.
interrupt_state* installed = nullptr;
}  // namespace

void interrupt_state::install() {
    installed = this;
    // Python's SIGINT handler becomes default_int_handler, counted. First: signal.signal() sets
    // Python's C handler, which the counter below then wraps.
    static PyMethodDef method{"splitbrain_worker_sigint", raise_keyboard_interrupt, METH_VARARGS,
                              "Raises KeyboardInterrupt (a cancel from the client)."};
    splitcore::py_ref handler = splitcore::py_ref::steal(PyCFunction_New(&method, nullptr));
    splitcore::py_ref signal = splitcore::py_ref::steal(PyImport_ImportModule("signal"));
    splitcore::py_ref done;
    if (handler && signal) {
        done = splitcore::py_ref::steal(PyObject_CallMethod(signal.get(), "signal", "iO", SIGINT, handler.get()));
    }
    if (!done) {
        PyErr_Clear();
        log("cannot install the SIGINT handler: a cancel that lands just before a blocking call may be late");
    }

    ::sigaction(SIGINT, nullptr, &m_python_sigint);
    struct sigaction counter {};
    counter.sa_sigaction = &on_sigint;
    counter.sa_flags = SA_SIGINFO | SA_ONSTACK;  // no SA_RESTART: blocking calls must see EINTR
    sigemptyset(&counter.sa_mask);
    ::sigaction(SIGINT, &counter, nullptr);
}

// Counts deliveries, then runs Python's own handler (which trips KeyboardInterrupt).
void interrupt_state::on_sigint(int sig, siginfo_t* info, void* context) {
    installed->m_delivered.fetch_add(1, std::memory_order_relaxed);
    const struct sigaction& python = installed->m_python_sigint;
    if (python.sa_flags & SA_SIGINFO) {
        python.sa_sigaction(sig, info, context);
    } else if (python.sa_handler != SIG_DFL && python.sa_handler != SIG_IGN) {
        python.sa_handler(sig);
    }
}

PyObject* interrupt_state::raise_keyboard_interrupt(PyObject*, PyObject*) {
    installed->m_raised.fetch_add(1, std::memory_order_relaxed);
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    return nullptr;
}

// A KeyboardInterrupt meant for a request that has finished must not hit the next one.
void interrupt_state::discard_stale_interrupt() {
    if (PyErr_CheckSignals() < 0) PyErr_Clear();
}

void interrupt_state::queue(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_queued[id] = false;
}

bool interrupt_state::cancel(std::uint64_t target) {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (target != 0 && std::find(m_outer.begin(), m_outer.end(), target) != m_outer.end()) {
        m_outer_cancelled.insert(target);  // its wait ends when the main thread is back in it
        return true;
    }
    if (target != 0 && m_running == target) {
        if (!m_adopting) {
            m_adopting = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
            m_children_at_cancel = children_of_main_thread();
        }
        ++m_sent;
        m_raised_before = m_raised.load();
        const bool interrupted = ::pthread_kill(m_main_thread, SIGINT) == 0;
        if (interrupted) {
            m_unheard = target;
            m_signalled = std::chrono::steady_clock::now();
        }
        return interrupted;
    }
    if (auto waiting = m_queued.find(target); waiting != m_queued.end()) {
        waiting->second = true;  // the main thread answers it with KeyboardInterrupt when it gets there
        return true;
    }
    return false;
}

std::set<pid_t> interrupt_state::children_at_cancel() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_children_at_cancel;
}

void interrupt_state::stop_adopting_orphans() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_adopting) return;
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    m_adopting = false;
    m_children_at_cancel.clear();
}

bool interrupt_state::resignal_unheard() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_unheard == 0) return false;
    if (m_running != m_unheard || m_raised.load() != m_raised_before) {
        m_unheard = 0;
        return false;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - m_signalled >= resignal_after) {
        ++m_sent;
        ::pthread_kill(m_main_thread, SIGINT);
        m_signalled = now;
    }
    return true;
}

bool interrupt_state::start(std::uint64_t id) {
    discard_stale_interrupt();
    std::lock_guard<std::mutex> lock(m_mutex);
    bool cancelled = false;
    if (auto waiting = m_queued.find(id); waiting != m_queued.end()) {
        cancelled = waiting->second;
        m_queued.erase(waiting);
    }
    if (!cancelled) {
        if (m_running != 0) m_outer.push_back(m_running);  // a nested request, served while a callback waits
        m_running = id;
    }
    return !cancelled;
}

bool interrupt_state::take_cancel_of_waiting_call() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_running == 0 || m_outer_cancelled.erase(m_running) == 0) return false;
    if (!m_adopting) {  // as cancel() does for a running call: what it started goes with it
        m_adopting = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
        m_children_at_cancel = children_of_main_thread();
    }
    return true;
}

void interrupt_state::finish() {
    std::uint64_t sent;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_outer_cancelled.erase(m_running);
        m_running = 0;
        if (!m_outer.empty()) {  // back in the call whose callback waits
            m_running = m_outer.back();
            m_outer.pop_back();
        }
        sent = m_sent;
    }
    // A SIGINT sent just before the request ended may not have landed yet: wait for it (each
    // sched_yield is a kernel exit, where pending signals are delivered), then drop it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (m_delivered.load() < sent && std::chrono::steady_clock::now() < deadline) ::sched_yield();
    discard_stale_interrupt();
}

}  // namespace splitbrain::agent
