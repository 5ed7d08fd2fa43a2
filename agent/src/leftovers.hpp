// What a worker's calls leave behind: its children, and the processes a cancelled call started.
#pragma once

#include <sys/types.h>

#include <set>

namespace splitbrain::agent {

// The children of the worker's main thread (where subprocess forks them, and where orphans come
// while the worker is a child subreaper), from /proc. Most calls start with no child at all: one
// waitid() tells, and spares the /proc read on the hot path.
[[nodiscard]] std::set<pid_t> children_of_main_thread();

// After a cancelled call: SIGKILL to every child of the main thread not in `before` (the children
// when the call started), and to every process below it. `forked` are the children when the cancel
// came (Popen children, reaped by their Popen); the orphans that came since are reaped here.
void kill_what_the_call_started(const std::set<pid_t>& before, const std::set<pid_t>& forked);

}  // namespace splitbrain::agent
