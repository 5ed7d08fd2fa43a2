// The agent through the C++ client channel: os.getcwd() as one `call`, ping (answered by the
// supervisor alone), and 64 MiB read()/write() through a remote file object in ≈1 MiB raw frames.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "workload.hpp"

namespace splitbench {
struct agent_options {
    std::string label = "agent";  // figure names: "<label>.rtt", "<label>.read_64MiB", ...
    std::string address;          // the agent's listen address
    std::string server_key;       // the agent's Z85 public key; empty for an --insecure agent
    std::string client_key_dir;   // holds agent.key, the client's secret key (keygen layout)
    std::string read_path;        // a file of at least bulk_bytes on the agent's machine
    std::string write_path;       // a file the agent may overwrite
    std::size_t bulk_bytes = std::size_t(64) << 20;
    std::size_t chunk_bytes = std::size_t(1) << 20;
};

// A session on a running agent (hello, import os and builtins, two open files); the
// destructor closes the files and says bye.
class agent_peer {
public:
    explicit agent_peer(agent_options options);
    ~agent_peer();
    agent_peer(const agent_peer&) = delete;
    agent_peer& operator=(const agent_peer&) = delete;

    // "<label>.rtt" (os.getcwd()), "<label>.ping", "<label>.read_64MiB", "<label>.write_64MiB".
    [[nodiscard]] std::vector<workload> workloads();

private:
    struct session;
    agent_options m_options;
    std::unique_ptr<session> m_session;
};
}  // namespace splitbench
