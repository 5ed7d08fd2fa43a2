#include "direct.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "log.hpp"
#include "splitcore/errors.hpp"
#include "splitcore/keys.hpp"
#include "splitcore/wire.hpp"

namespace splitbrain::agent {

using splitcore::json;

json direct_offer(const direct_settings& settings, const std::string& listen, const std::string& client_key,
                  const std::string* public_key, const std::string* secret_key) {
    if (!settings.enabled || listen.rfind("tcp://", 0) != 0) return nullptr;
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon < 6) return nullptr;
    json offer{{"bind", listen.substr(6, colon - 6)}, {"ports", {settings.first_port, settings.last_port}}};
    if (public_key != nullptr && secret_key != nullptr) {
        offer["client"] = client_key;
        offer["public"] = *public_key;
        offer["secret"] = *secret_key;
    }
    return offer;
}

direct_settings parse_worker_ports(const std::string& text) {
    unsigned first = 0, last = 0;
    char rest = 0;
    const int got = std::sscanf(text.c_str(), "%u-%u%c", &first, &last, &rest);
    if (got == 1) last = first;
    if ((got != 1 && got != 2) || first == 0 || last < first || last > 65535) {
        throw std::runtime_error("--worker-ports takes a port or a range LO-HI (1 to 65535), not \"" + text + "\"");
    }
    return direct_settings{true, first, last};
}

direct_port::direct_port(zmq::context_t& context, const json& offer)
    : m_context(context), m_socket(context, zmq::socket_type::router) {
    const std::string host = offer.at("bind").get<std::string>();
    const unsigned first = offer.at("ports").at(0).get<unsigned>();
    const unsigned last = offer.at("ports").at(1).get<unsigned>();
    if (offer.contains("secret")) {
        m_client_key = offer.at("client").get<std::string>();
        if (!splitcore::is_z85_key(m_client_key)) throw std::runtime_error("the offer names no client key");
        // The handler must be bound before the socket accepts: a handshake without one is admitted.
        m_zap.emplace(context, zmq::socket_type::rep);
        m_zap->set(zmq::sockopt::linger, 0);
        m_zap->bind("inproc://zeromq.zap.01");
        m_zap_thread = std::thread([this] { serve_zap(); });
        m_socket.set(zmq::sockopt::curve_server, 1);
        m_socket.set(zmq::sockopt::curve_publickey, offer.at("public").get<std::string>());
        m_socket.set(zmq::sockopt::curve_secretkey, offer.at("secret").get<std::string>());
        m_socket.set(zmq::sockopt::zap_domain, "splitbrain-direct");
    }
    try {
        bind(host, first, last);
    } catch (...) {
        m_stop = true;  // no thread may outlive a constructor that throws
        if (m_zap_thread.joinable()) m_zap_thread.join();
        throw;
    }
}

void direct_port::bind(const std::string& host, unsigned first, unsigned last) {
    m_socket.set(zmq::sockopt::linger, 1000);
    m_socket.set(zmq::sockopt::heartbeat_ivl, 0);
    if (!host.empty() && host.front() == '[') m_socket.set(zmq::sockopt::ipv6, 1);
    if (first == 0) {
        m_socket.bind("tcp://" + host + ":*");
    } else {
        for (unsigned port = first; port <= last; ++port) {
            try {
                m_socket.bind("tcp://" + host + ":" + std::to_string(port));
                break;
            } catch (const zmq::error_t& e) {
                if (e.num() != EADDRINUSE || port == last) {
                    throw std::runtime_error("no free port in --worker-ports " + std::to_string(first) + "-" +
                                             std::to_string(last) + ": " + e.what());
                }
            }
        }
    }
    const std::string bound = m_socket.get(zmq::sockopt::last_endpoint);
    m_port = static_cast<unsigned>(std::stoul(bound.substr(bound.rfind(':') + 1)));
}

direct_port::~direct_port() {
    m_stop = true;
    if (m_zap_thread.joinable()) m_zap_thread.join();
}

// ZAP (RFC 27): only the session's client key passes; its Z85 becomes the messages' User-Id.
void direct_port::serve_zap() {
    while (!m_stop) {
        zmq::pollitem_t item{m_zap->handle(), 0, ZMQ_POLLIN, 0};
        try {
            zmq::poll(&item, 1, std::chrono::milliseconds(250));  // m_stop is looked at this often
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) continue;
            if (e.num() == ETERM) return;
            throw;
        }
        if (!(item.revents & ZMQ_POLLIN)) continue;
        auto request = splitcore::recv_parts(*m_zap, zmq::recv_flags::dontwait);
        if (!request || request->size() < 6) continue;
        const std::string mechanism = (*request)[5].to_string();
        std::string presented;
        if (mechanism == "CURVE" && request->size() >= 7 && (*request)[6].size() == 32) {
            presented = splitcore::z85_encode_key((*request)[6].data());
        }
        const bool admitted = !presented.empty() && presented == m_client_key;
        if (!admitted) log("direct port: refused a handshake (" + mechanism + ", key " + presented + ")");
        if (admitted) m_admitted = true;
        std::vector<zmq::message_t> reply;
        reply.emplace_back(std::string("1.0"));
        reply.push_back(std::move((*request)[1]));
        reply.emplace_back(std::string(admitted ? "200" : "400"));
        reply.emplace_back(std::string(admitted ? "OK" : "not this session's client key"));
        reply.emplace_back(admitted ? presented : std::string());
        reply.emplace_back();
        splitcore::send_parts(*m_zap, reply);
    }
}

json refuse_direct(const json& header, std::uint64_t id) {
    const std::string name = header.value("op", "");
    const splitcore::operation* op = splitcore::op::find(name);
    if (op != nullptr && op != &splitcore::op::ping &&
        (op->answered_by != splitcore::tier::main_thread || op == &splitcore::op::hello || op == &splitcore::op::bye)) {
        return splitcore::error_reply(
            id, splitcore::error_value(
                    splitcore::errc::bad_request,
                    "operation \"" + name + "\" does not go over the direct connection: send it to the agent's port"));
    }
    const json* until = splitcore::optional_field(header, "until");
    if (until == nullptr || !until->is_number_unsigned()) return nullptr;
    const auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
    const auto deadline = until->get<std::uint64_t>();
    if (now <= deadline) return nullptr;
    char late[32];
    std::snprintf(late, sizeof late, "%.1f", static_cast<double>(now - deadline) / 1e6);
    return splitcore::error_reply(
        id, splitcore::error_value(splitcore::errc::arrived_late,
                                   "request " + std::to_string(id) + " reached the agent " + late +
                                       " s after its client may have given up on it (a link cut, or the agent "
                                       "stopped); it did not run"));
}

}  // namespace splitbrain::agent
