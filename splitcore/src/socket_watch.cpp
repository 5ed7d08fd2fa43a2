#include "splitcore/socket_watch.hpp"

#include <cerrno>
#include <vector>

namespace splitcore {

bool poll_watched(socket_watch* const* sockets, std::size_t count, bool* ready, pollfd* fds, std::size_t fd_count,
                  long timeout_ms) {
    bool any = false;
    for (std::size_t i = 0; i < count; ++i) {
        ready[i] = false;
        socket_watch* watch = sockets[i];
        if (watch == nullptr || watch->is_drained()) continue;
        // Its state is unknown: ask (this processes its pending commands, so its descriptor is
        // up to date afterwards, whatever the answer).
        if (watch->socket().get(zmq::sockopt::events) & ZMQ_POLLIN) {
            ready[i] = any = true;
        } else {
            watch->drained();
        }
    }
    pollfd on_stack[8];
    std::vector<pollfd> on_heap;
    pollfd* items = on_stack;
    if (count + fd_count > std::size(on_stack)) {
        on_heap.resize(count + fd_count);
        items = on_heap.data();
    }
    std::size_t n = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (sockets[i] != nullptr) items[n++] = pollfd{sockets[i]->fd(), POLLIN, 0};
    }
    const std::size_t first_fd = n;
    for (std::size_t i = 0; i < fd_count; ++i) items[n++] = pollfd{fds[i].fd, fds[i].events, 0};
    const int rc = ::poll(items, static_cast<nfds_t>(n), any ? 0 : static_cast<int>(timeout_ms));
    if (rc < 0) throw zmq::error_t();  // errno: EINTR for a signal
    std::size_t k = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (sockets[i] == nullptr) continue;
        if (items[k++].revents != 0) {
            ready[i] = any = true;
            sockets[i]->used();  // the reader drains it (or asks again next time)
        }
    }
    for (std::size_t i = 0; i < fd_count; ++i) {
        fds[i].revents = items[first_fd + i].revents;
        any = any || fds[i].revents != 0;
    }
    return any;
}

}  // namespace splitcore
