// Waiting on ZeroMQ sockets with one poll(2) per wait (issue 11 point 2: the per-call CPU of a round
// trip). zmq_poll asks every socket for ZMQ_EVENTS before and after it sleeps, and each question costs
// libzmq a getpid and a poll of that socket's mailbox: with four sockets, 18 system calls per wait.
// A socket's ZMQ_FD is edge triggered: once a receive found nothing (or ZMQ_EVENTS said no POLLIN),
// the socket's next change makes that descriptor readable. So a socket known to be in that state
// ("drained") needs no question: its descriptor goes into one plain poll with the others. Any other
// use of it (a send, a receive that got a message) leaves it "unknown", and the next wait asks.
#pragma once

#include <poll.h>

#include <cstddef>

#include <zmq.hpp>

namespace splitcore {

class socket_watch {
public:
    socket_watch() = default;
    explicit socket_watch(zmq::socket_ref socket) : m_socket(socket), m_fd(socket.get(zmq::sockopt::fd)) {}

    // After a send, or a receive that returned a message: what the socket holds is unknown.
    void used() noexcept { m_drained = false; }
    // After a receive that found nothing (EAGAIN): its descriptor signals the next change.
    void drained() noexcept { m_drained = true; }

    [[nodiscard]] zmq::socket_ref socket() const noexcept { return m_socket; }
    [[nodiscard]] int fd() const noexcept { return m_fd; }
    [[nodiscard]] bool is_drained() const noexcept { return m_drained; }

private:
    zmq::socket_ref m_socket;
    int m_fd = -1;
    bool m_drained = false;  // unknown at first
};

// Waits until one of `sockets` (null entries are skipped) may hold a message or one of the plain
// descriptors `fds` is readable, at most `timeout_ms` (-1: no limit). ready[i] says whether to read
// sockets[i] now, until it would block (then drained()); the fds get their revents. Returns whether
// anything is ready. A signal throws zmq::error_t (EINTR), as zmq::poll does.
bool poll_watched(socket_watch* const* sockets, std::size_t count, bool* ready, pollfd* fds, std::size_t fd_count,
                  long timeout_ms);

}  // namespace splitcore
