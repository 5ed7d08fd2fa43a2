#ifndef SPLITBRAIN_KERNEL_RUN_STATE_HPP
#define SPLITBRAIN_KERNEL_RUN_STATE_HPP

#include <atomic>

namespace splitbrain {
// Whether a shell request is running and whether the kernel is stopping, shared by the main
// thread (which runs requests) and whichever thread stops the kernel (control, heartbeat).
//
// A stop must interrupt a running request, and a request must not start unseen by a stop: the
// main thread checks stopping() before it takes a request, and a stop landing between that
// check and the request's start would otherwise leave a long cell running through shutdown.
// Each side stores its own flag, then reads the other's; both are sequentially consistent, so
// of two such pairs the later one sees the earlier store: begin_request() fails, or busy() is
// true after stop() (or both: the interrupt then finds no request, and is consumed as idle).
class run_state {
public:
    // Main thread, before running a request. False when the kernel is stopping: don't run it.
    [[nodiscard]] bool begin_request() noexcept {
        m_busy.store(true);
        if (m_stopping.load()) {
            m_busy.store(false);
            return false;
        }
        return true;
    }

    void end_request() noexcept { m_busy.store(false); }

    // Any thread. True for the first call only; check busy() after it.
    [[nodiscard]] bool stop() noexcept { return !m_stopping.exchange(true); }

    [[nodiscard]] bool stopping() const noexcept { return m_stopping.load(); }

    // A request runs (or is about to): a stop must interrupt it.
    [[nodiscard]] bool busy() const noexcept { return m_busy.load(); }

private:
    std::atomic<bool> m_stopping{false};
    std::atomic<bool> m_busy{false};
};
}  // namespace splitbrain

#endif
