// One line per event on the agent's stderr: "splitbrain-agent[pid] 2026-01-01T12:00:00Z message".
#pragma once

#include <string>

namespace splitbrain::agent {

// The worker logs to a copy of its original stderr, because fds 1 and 2 become its output pipes.
void set_log(const char* name, int fd);
void log(const std::string& message);

}  // namespace splitbrain::agent
