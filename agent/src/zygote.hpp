// The zygote (issue 11 point 4): a splitbrain-worker that has initialised CPython and built its
// operations once, then forks one worker per session on the supervisor's request, so that a new
// session's worker is ready in a few milliseconds instead of a Python start-up (~50 ms of CPU).
//
// Protocol, over a SOCK_SEQPACKET socketpair the supervisor creates (--zygote FD):
//   zygote → supervisor  "ready"         once, after Python and the operations are initialised
//   supervisor → zygote  "fork wN"       one worker, with id wN
//   zygote → supervisor  "pid wN PID"    its pid (or "failed wN WHY")
// The zygote never starts a thread (fork copies only the calling thread). Each worker is forked
// twice (zygote → short-lived middle → worker), so that the worker is re-parented to the supervisor
// (a PR_SET_CHILD_SUBREAPER): the supervisor waits for it, ends its process group and tells the
// janitor, exactly as for a worker it exec'd itself.
#pragma once

#include <string>

namespace splitbrain::agent {

// Runs in the zygote after Python is initialised (GIL held). Serves "fork" requests until the
// supervisor closes its end; returns only in a freshly forked worker, with its id, once that
// worker is a child of the supervisor and dies with it (PR_SET_PDEATHSIG). The zygote itself exits.
[[nodiscard]] std::string serve_as_zygote(int control_fd);

}  // namespace splitbrain::agent
