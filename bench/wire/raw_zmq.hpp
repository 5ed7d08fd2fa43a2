#pragma once

#include <cstddef>

namespace splitbench
{
    struct raw_options
    {
        bool curve = false;
        int rtt_reps = 5000;
        int bulk_reps = 10;
        std::size_t bulk_bytes = std::size_t(64) << 20;
        std::size_t chunk_bytes = std::size_t(1) << 20;
    };

    // Forks an echo ROUTER, measures round trip and bulk read/write from a DEALER, prints figures.
    void run_raw(const raw_options& options);
}
