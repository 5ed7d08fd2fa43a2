// The handshake between the kernel's main thread, which runs shell requests, and a stop from
// another thread (kernel/src/run_state.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "run_state.hpp"

namespace splitbrain {
TEST(run_state, a_stop_between_the_shells_check_and_the_requests_start_keeps_the_request_from_running) {
    run_state state;
    ASSERT_FALSE(state.stopping());       // the main thread's loop: not stopping, take a request
    ASSERT_TRUE(state.stop());            // shutdown_request on the control thread
    EXPECT_FALSE(state.busy());           // nothing runs yet, so the stop interrupts nothing...
    EXPECT_FALSE(state.begin_request());  // ...and the request SHALL NOT start
    EXPECT_FALSE(state.busy());
}

TEST(run_state, a_stop_during_a_request_sees_it_busy) {
    run_state state;
    ASSERT_TRUE(state.begin_request());
    ASSERT_TRUE(state.stop());
    EXPECT_TRUE(state.busy());  // the stop SHALL interrupt the running request
    state.end_request();
    EXPECT_FALSE(state.busy());
    EXPECT_TRUE(state.stopping());
}

TEST(run_state, only_the_first_stop_reports_itself) {
    run_state state;
    EXPECT_TRUE(state.stop());
    EXPECT_FALSE(state.stop());
}

TEST(run_state, racing_a_stop_against_a_request_start_either_side_sees_the_other) {
    for (int round = 0; round < 200; ++round) {
        run_state state;
        std::atomic<int> ready{0};
        bool started = false;
        bool saw_busy = false;
        std::thread stopper([&] {
            ready.fetch_add(1);
            while (ready.load() < 2) {
                std::this_thread::yield();
            }
            (void)state.stop();
            saw_busy = state.busy();
        });
        ready.fetch_add(1);
        while (ready.load() < 2) {
            std::this_thread::yield();
        }
        started = state.begin_request();
        stopper.join();
        // SHALL: a request that started is interrupted by the stop.
        EXPECT_TRUE(!started || saw_busy) << "round " << round;
    }
}
}  // namespace splitbrain
