#ifndef SPLITBRAIN_KERNEL_THREADS_HPP
#define SPLITBRAIN_KERNEL_THREADS_HPP

#include <signal.h>

#include <thread>
#include <utility>

namespace splitbrain {
// Starts a helper thread that blocks every asynchronous signal, as libzmq does for its I/O
// threads. SIGINT and the signals Python code installs handlers for are then always delivered
// to the main thread, where the interpreter runs cells and where CPython runs signal handlers.
template <class F>
std::thread start_signal_free_thread(F&& f) {
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    for (int synchronous : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) {
        sigdelset(&all, synchronous);
    }
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    std::thread thread(std::forward<F>(f));
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return thread;
}
}  // namespace splitbrain

#endif
