// splitbrain-bench-wire: bare cppzmq (the physical limit), the same through a relay process (the
// agent's topology) and the agent itself through splitcore::channel, interleaved in one run.
// Prints one JSON figure per line; bench/wire/bench_wire.py starts the agents and RPyC and
// compares the figures.
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "agent_channel.hpp"
#include "raw_zmq.hpp"

namespace {
constexpr const char* usage =
    "usage: splitbrain-bench-wire [--smoke] [--read PATH --write-dir DIR\n"
    "                             --agent LABEL ADDRESS SERVER_KEY|- CLIENT_KEY_DIR|- ...]\n"
    "  Always: raw, raw_curve (CurveZMQ), raw_relay and raw_curve_relay (through a relay\n"
    "  process, ROUTER/DEALER zmq_proxy with ipc to the echo process: the agent's supervisor and\n"
    "  worker topology) — round trip, 64 MiB read and write.\n"
    "  --agent      a running splitbrain-agent: os.getcwd(), ping, 64 MiB file read()/write()\n"
    "               through splitcore::channel; '-' for the key of an --insecure agent\n"
    "  --read PATH  a file of at least 64 MiB on the agents' machine; files in --write-dir are\n"
    "               overwritten\n"
    "  --smoke      each workload a few times (checks that the benchmark runs, measures nothing)\n";

int bad_usage(const std::string& what) {
    std::cerr << "splitbrain-bench-wire: " << what << "\n" << usage;
    return 2;
}

struct agent_arg {
    std::string label, address, server_key, client_keys;
};
}  // namespace

int main(int argc, char** argv) {
    splitbench::schedule plan;
    std::string read_path;
    std::string write_dir;
    std::vector<agent_arg> agents;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help") {
            std::cout << usage;
            return 0;
        }
        if (arg == "--smoke") {
            plan = splitbench::schedule{1, 2, 1};
        } else if (arg == "--read" && i + 1 < argc) {
            read_path = argv[++i];
        } else if (arg == "--write-dir" && i + 1 < argc) {
            write_dir = argv[++i];
        } else if (arg == "--agent" && i + 4 < argc) {
            agent_arg a{argv[i + 1], argv[i + 2], argv[i + 3], argv[i + 4]};
            for (std::string* s : {&a.server_key, &a.client_keys}) {
                if (*s == "-") {
                    s->clear();
                }
            }
            agents.push_back(a);
            i += 4;
        } else {
            return bad_usage("unknown or incomplete argument " + arg);
        }
    }
    if (!agents.empty() && (read_path.empty() || write_dir.empty())) {
        return bad_usage("--agent needs --read and --write-dir");
    }
    try {
        std::vector<std::unique_ptr<splitbench::raw_peer>> raws;
        std::vector<splitbench::workload> all;
        for (const bool relay : {false, true}) {
            for (const bool curve : {false, true}) {
                raws.push_back(std::make_unique<splitbench::raw_peer>(splitbench::raw_options{curve, relay}));
                for (auto& w : raws.back()->workloads(!relay)) {
                    all.push_back(std::move(w));
                }
            }
        }
        std::vector<std::unique_ptr<splitbench::agent_peer>> peers;
        for (const agent_arg& a : agents) {
            splitbench::agent_options options;
            options.label = a.label;
            options.address = a.address;
            options.server_key = a.server_key;
            options.client_key_dir = a.client_keys;
            options.read_path = read_path;
            options.write_path = write_dir + "/" + a.label + "-write";
            peers.push_back(std::make_unique<splitbench::agent_peer>(options));
            for (auto& w : peers.back()->workloads()) {
                all.push_back(std::move(w));
            }
        }
        splitbench::run_interleaved(all, plan);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "splitbrain-bench-wire: " << e.what() << "\n";
        return 1;
    }
}
