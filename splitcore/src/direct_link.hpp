// The client's direct connection to its session's worker: channel::direct_link, for channel.cpp
// and direct_channel.cpp.
#pragma once

#include <set>

#include "splitcore/channel.hpp"

namespace splitcore {

// The context the channels' sockets live in (channel.cpp).
zmq::context_t& direct_context();

struct channel::direct_link {
    explicit direct_link(zmq::context_t& context) : socket(context, zmq::socket_type::dealer) {}
    zmq::socket_t socket;
    zmq::socket_t monitor;
    socket_watch socket_state, monitor_state;  // what a wait must ask them (socket_watch.hpp)
    std::string endpoint;
    bool up = false;
    bool ever_up = false;
    int failures = 0;
    time_point opened;
    std::set<std::uint64_t> in_flight;  // sent this way, no reply yet
    std::uint64_t acknowledged = 0;     // the highest id answered this way (it had every one before)
    // In flight when the connection broke; a pong to a ping sent after (m_next_id > broken_after)
    // says the session lives, and so that their replies are gone with the connection.
    std::set<std::uint64_t> broken;
    time_point broken_at;
    bool resync_due = false;  // a handshake after the break: ask the worker for their replies
};

}  // namespace splitcore
