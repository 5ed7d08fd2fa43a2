// splitbrain-bench-wire: prints one JSON figure per line; bench/wire/bench_wire.py runs it, starts
// the agent and RPyC, and compares the figures.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "raw_zmq.hpp"
#ifdef SPLITBENCH_HAVE_CHANNEL
#include "agent_channel.hpp"
#endif

namespace
{
    constexpr const char* usage =
        "usage: splitbrain-bench-wire raw [--curve] [--smoke]\n"
        "       splitbrain-bench-wire agent --address ADDR [--server-key Z85 --client-keys DIR]\n"
        "                             --read PATH --write PATH [--label NAME] [--smoke]\n"
        "  raw          round trip and 64 MiB read/write over a bare DEALER/ROUTER pair (two processes)\n"
        "  agent        os.getcwd(), ping and 64 MiB file read()/write() through splitcore::channel\n"
        "  --curve      with CurveZMQ encryption, as the agent uses it\n"
        "  --server-key the agent's public key (omit for an --insecure agent)\n"
        "  --client-keys a directory holding the client's agent.key (splitbrain-agent keygen layout)\n"
        "  --read PATH  a file of at least 64 MiB on the agent's machine; --write PATH is overwritten\n"
        "  --smoke      each workload once (checks that the benchmark runs, measures nothing)\n";

    int bad_usage(const std::string& what)
    {
        std::cerr << "splitbrain-bench-wire: " << what << "\n" << usage;
        return 2;
    }
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
#ifdef SPLITBENCH_HAVE_CHANNEL
    splitbench::agent_options agent;
#endif
    for (int i = 2; i < argc; ++i)
    {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--curve")
        {
            raw.curve = true;
        }
        else if (arg == "--smoke")
        {
            raw.rtt_reps = 1;
            raw.bulk_reps = 1;
#ifdef SPLITBENCH_HAVE_CHANNEL
            agent.rtt_reps = 1;
            agent.bulk_reps = 1;
#endif
        }
#ifdef SPLITBENCH_HAVE_CHANNEL
        else if (has_value && arg == "--address") { agent.address = argv[++i]; }
        else if (has_value && arg == "--server-key") { agent.server_key = argv[++i]; }
        else if (has_value && arg == "--client-keys") { agent.client_key_dir = argv[++i]; }
        else if (has_value && arg == "--read") { agent.read_path = argv[++i]; }
        else if (has_value && arg == "--write") { agent.write_path = argv[++i]; }
        else if (has_value && arg == "--label") { agent.label = argv[++i]; }
#endif
        else
        {
            (void)has_value;
            return bad_usage("unknown argument " + arg);
        }
    }
    try
    {
        if (mode == "raw")
        {
            splitbench::run_raw(raw);
            return 0;
        }
        if (mode == "agent")
        {
#ifdef SPLITBENCH_HAVE_CHANNEL
            if (agent.address.empty() || agent.read_path.empty() || agent.write_path.empty())
            {
                return bad_usage("agent needs --address, --read and --write");
            }
            splitbench::run_agent(agent);
            return 0;
#else
            std::cerr << "splitbrain-bench-wire: built without splitcore's channel; no agent mode\n";
            return 3;
#endif
        }
        return bad_usage("unknown mode " + mode);
    }
    catch (const std::exception& e)
    {
        std::cerr << "splitbrain-bench-wire: " << e.what() << "\n";
        return 1;
    }
}
