// The supervisor's side of a labgrid place (--labgrid-place, docs/labgrid.md): a session opens only
// for a client whose labgrid user holds the place, and keeps running only while it does.
#include <algorithm>
#include <unistd.h>

#include "log.hpp"
#include "supervisor.hpp"

namespace splitbrain::agent {

using splitcore::errc;
using splitcore::json;

namespace {

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return "this agent";
    return name;
}

}  // namespace

std::optional<supervisor::place_admission> supervisor::admit_to_place(const zmq::message_t& routing_id,
                                                                      const std::string& client_key, std::uint64_t id,
                                                                      json& header, parts& message) {
    const std::string& place = m_options.labgrid_place;
    const json* asked = splitcore::optional_field(header, "place");
    if (asked != nullptr && !asked->is_object()) asked = nullptr;
    // Who the client is to labgrid: its key's labgrid-user= (what it claims in the hello counts only
    // without keys: --insecure authenticates nobody anyway).
    std::string user, who;
    if (client_key.empty()) {
        if (asked != nullptr && asked->contains("user") && (*asked)["user"].is_string()) {
            user = (*asked)["user"].get<std::string>();
        }
        who = user.empty() ? "this client" : user;
    } else {
        user = m_limits.of(client_key).labgrid_user;
        who = m_limits.who(client_key);
    }
    const std::string refusal = host_name() + " serves labgrid place " + place + " only to its holder; ";
    if (user.empty()) {
        log("refused a session of " + who + ": no labgrid user for it (place " + place + ")");
        throw splitcore::error(
            errc::place_not_held,
            refusal + (client_key.empty() ? "this client did not say who it is to labgrid: connect with place:" + place
                                          : "key " + who +
                                                " has no labgrid-user= in authorized_keys; the lab's admin can "
                                                "add labgrid-user=\"NAME\" to its line"));
    }
    if (m_place->held_by(user)) {
        place_admission admitted{user, ""};
        // A client that acquired the place for this session asks the agent to release it if the
        // session expires (its kernel died): only then, and only from the holder seen now.
        const bool acquired_for_it = asked != nullptr && asked->value("name", "") == place &&
                                     asked->value("acquired", false) && m_place->acquired_by(user);
        if (acquired_for_it) admitted.release = *m_place->holder();
        return admitted;
    }
    if (m_place_answered && !m_place->known()) {
        log("refused a session of " + who + " (labgrid user " + user + "): place " + place + ": " + m_place->state());
        throw splitcore::error(errc::place_not_held, coordinator_silent());
    }
    if (m_place_answered) {
        const std::string state = m_place->state();
        log("refused a session of " + who + " (labgrid user " + user + "): place " + place + ": " + state);
        throw splitcore::error(errc::place_not_held, refusal + state + ", not by " + user + " (the labgrid-user of " +
                                                         who + "); connect with place:" + place +
                                                         " (it reserves and acquires the place) or acquire it with "
                                                         "labgrid-client -p " +
                                                         place + " acquire");
    }
    // The last report does not show it; the client may have acquired the place a moment ago: ask the
    // coordinator, and go on with this hello when it answered (or refuse it at the deadline).
    deferred_hello waiting;
    waiting.routing_id = routing_id.to_string();
    waiting.client_key = client_key;
    waiting.id = id;
    waiting.header = std::move(header);
    waiting.message = std::move(message);
    waiting.sync = m_place->ask();
    waiting.deadline = clock::now() + m_options.labgrid_timeout;
    m_deferred_hellos.push_back(std::move(waiting));
    return std::nullopt;
}

void supervisor::serve_place(bool readable) {
    m_place->keep_running();
    std::vector<std::uint64_t> answered;
    if (readable) answered = m_place->read();
    const auto now = clock::now();
    // Each pass takes the hellos that can go on out of the list first: going on may defer none again
    // (m_place_answered), but it may add to m_leases, reply, or throw.
    std::vector<deferred_hello> ready;
    for (auto it = m_deferred_hellos.begin(); it != m_deferred_hellos.end();) {
        const bool done = std::find(answered.begin(), answered.end(), it->sync) != answered.end();
        if (done || now >= it->deadline || m_place->fd() < 0) {
            ready.push_back(std::move(*it));
            it = m_deferred_hellos.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& waiting : ready) {
        const bool done = std::find(answered.begin(), answered.end(), waiting.sync) != answered.end();
        continue_hello(waiting, done);
    }
}

void supervisor::continue_hello(deferred_hello& waiting, bool answered) {
    const zmq::message_t routing_id(waiting.routing_id.data(), waiting.routing_id.size());
    const std::string token = waiting.header.value("session", "");
    try {
        if (!answered) throw splitcore::error(errc::place_not_held, coordinator_silent());
        m_place_answered = true;
        hello(routing_id, waiting.client_key, waiting.id, std::move(waiting.header), waiting.message);
        m_place_answered = false;
    } catch (const splitcore::error& e) {
        m_place_answered = false;
        m_audit.answered("", m_limits.who(waiting.client_key), "hello", "", std::string(splitcore::name(e.code())));
        reply_to(routing_id, splitcore::error_reply(waiting.id, splitcore::error_value(e)));
        remember_refused_hello(token, waiting.client_key, splitcore::error_value(e));
    } catch (const std::runtime_error& e) {
        m_place_answered = false;
        log(std::string("cannot serve a request: ") + e.what());
        reply_error(routing_id, waiting.id, errc::session_lost,
                    "the agent on " + host_name() + " cannot start a worker: " + e.what());
    }
    // What its client sent behind it: to the session now open, or refused as the hello was.
    for (auto& held : waiting.later) serve_client(held, 0);
}

bool supervisor::hello_waits(const std::string& token) const {
    return std::any_of(m_deferred_hellos.begin(), m_deferred_hellos.end(),
                       [&](const deferred_hello& waiting) { return waiting.header.value("session", "") == token; });
}

std::string supervisor::coordinator_silent() const {
    return host_name() + " serves labgrid place " + m_options.labgrid_place +
           " only to its holder, and could not learn who holds it from the coordinator " +
           m_options.labgrid_coordinator + " within " +
           std::to_string((m_options.labgrid_timeout.count() + 999) / 1000) + " s (" + m_place->state() +
           "); try again, or check labgrid-coordinator there";
}

void supervisor::check_place_request(const session& s) const {
    // While the coordinator cannot be reached the sessions admitted go on (logged by the watcher);
    // a holder that changed ends them at their next request.
    if (!m_place->known() || m_place->held_by(s.place_user)) return;
    throw splitcore::error(errc::place_not_held,
                           host_name() + " serves labgrid place " + m_options.labgrid_place + " only to its holder; " +
                               m_place->state() + " now, not by " + s.place_user +
                               ": this session's user no longer holds it. Acquire it again (connect with place:" +
                               m_options.labgrid_place + ")");
}

}  // namespace splitbrain::agent
