#pragma once

#include <cstddef>
#include <string>

namespace splitbench
{
    struct agent_options
    {
        std::string label = "agent";   // figure names: "<label>.rtt", "<label>.read_64MiB", ...
        std::string address;           // the agent's listen address
        std::string server_key;        // the agent's Z85 public key; empty for an --insecure agent
        std::string client_key_dir;    // holds agent.key, the client's secret key (keygen layout)
        std::string read_path;         // a file of at least bulk_bytes on the agent's machine
        std::string write_path;        // a file the agent may overwrite
        int rtt_reps = 5000;
        int bulk_reps = 10;
        std::size_t bulk_bytes = std::size_t(64) << 20;
        std::size_t chunk_bytes = std::size_t(1) << 20;
    };

    // Talks to a running agent through splitcore::channel and prints the figures.
    void run_agent(const agent_options& options);
}
