// splitbrain-bench-wire: prints one JSON figure per line; bench/wire/bench_wire.py runs it and
// compares the figures with RPyC's.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "raw_zmq.hpp"

namespace
{
    constexpr const char* usage =
        "usage: splitbrain-bench-wire raw [--curve] [--smoke]\n"
        "  raw      round trip and 64 MiB read/write over a bare DEALER/ROUTER pair (two processes)\n"
        "  --curve  with CurveZMQ encryption, as the agent uses it\n"
        "  --smoke  each workload once (checks that the benchmark runs, measures nothing)\n";
}

int main(int argc, char** argv)
{
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0)
    {
        std::cout << usage;
        return argc < 2 ? 2 : 0;
    }
    const std::string mode = argv[1];
    splitbench::raw_options raw;
    for (int i = 2; i < argc; ++i)
    {
        const std::string arg = argv[i];
        if (arg == "--curve")
        {
            raw.curve = true;
        }
        else if (arg == "--smoke")
        {
            raw.rtt_reps = 1;
            raw.bulk_reps = 1;
        }
        else
        {
            std::cerr << "splitbrain-bench-wire: unknown argument " << arg << "\n" << usage;
            return 2;
        }
    }
    try
    {
        if (mode == "raw")
        {
            splitbench::run_raw(raw);
            return 0;
        }
        std::cerr << "splitbrain-bench-wire: unknown mode " << mode << "\n" << usage;
        return 2;
    }
    catch (const std::exception& e)
    {
        std::cerr << "splitbrain-bench-wire: " << e.what() << "\n";
        return 1;
    }
}
