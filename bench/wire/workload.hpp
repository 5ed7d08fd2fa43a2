// One thing to time, and the loop that times every workload of every peer interleaved, so that a
// noisy moment of the machine (a wake-up landing on a busy vCPU) hits all of them alike.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "figures.hpp"

namespace splitbench {
struct workload {
    std::string name;             // the figure's name: "raw.rtt", "agent.read_64MiB"
    std::size_t bytes = 0;        // bytes moved per call; 0 for a latency figure
    std::function<void()> run;    // timed
    std::function<void()> setup;  // untimed, before each call (rewind a file); may be empty
};

struct schedule {
    int rounds = 20;  // latency: rounds × calls_per_round calls, interleaved by round
    int calls_per_round = 250;
    int bulk_rounds = 8;  // throughput: one call per round, after one untimed lap
};

inline void run_interleaved(const std::vector<workload>& all, const schedule& plan) {
    std::vector<samples> results(all.size());
    auto timed = [&](std::size_t i) {
        if (all[i].setup) {
            all[i].setup();
        }
        const auto start = bench_clock::now();
        all[i].run();
        results[i].add(seconds_since(start));
    };
    for (std::size_t i = 0; i < all.size(); ++i)  // warm up, untimed
    {
        for (int k = 0; k < (all[i].bytes ? 1 : plan.calls_per_round / 5 + 1); ++k) {
            if (all[i].setup) {
                all[i].setup();
            }
            all[i].run();
        }
    }
    for (int r = 0; r < plan.rounds; ++r) {
        for (std::size_t i = 0; i < all.size(); ++i) {
            if (all[i].bytes == 0) {
                for (int k = 0; k < plan.calls_per_round; ++k) {
                    timed(i);
                }
            }
        }
    }
    for (int r = 0; r < plan.bulk_rounds; ++r) {
        for (std::size_t i = 0; i < all.size(); ++i) {
            if (all[i].bytes != 0) {
                timed(i);
            }
        }
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
        report(all[i].name, results[i], all[i].bytes);
    }
}
}  // namespace splitbench
