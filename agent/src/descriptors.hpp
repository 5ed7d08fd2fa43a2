// The worker's own descriptors (libzmq's sockets, eventfds and epoll, the output pipes, the log)
// live at or above reserved_floor, so user code on the slave that closes or dup2s small numbers
// (os.closerange(3, 256), a daemonising library) never hits them.
#pragma once

namespace splitbrain::agent {

inline constexpr int reserved_floor = 1024;

// Fills every free descriptor below reserved_floor with /dev/null, so that the ones the worker
// opens next land above it (raising the soft RLIMIT_NOFILE if it is too low for that). Call first.
void reserve_low_descriptors();

// Closes those placeholders: from now on the low numbers are the user's. Call once the worker's
// own descriptors exist (the supervisor's connection is up: a request came through it). Idempotent.
void release_low_descriptors();

}  // namespace splitbrain::agent
