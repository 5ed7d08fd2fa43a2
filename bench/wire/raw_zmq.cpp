#include "raw_zmq.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace splitbench {
namespace {
// A command frame: what to do and, for bulk transfers, how many bytes in frames of what size.
struct command {
    char op;  // 'p' ping, 'r' send me bytes, 'w' take these bytes, 'q' quit
    std::uint64_t total;
    std::uint64_t chunk;
};

struct curve_keys {
    std::array<char, 41> server_public{};
    std::array<char, 41> server_secret{};
    std::array<char, 41> client_public{};
    std::array<char, 41> client_secret{};
};

curve_keys& keys() {
    static curve_keys k = [] {
        curve_keys made;
        if (zmq_curve_keypair(made.server_public.data(), made.server_secret.data()) != 0 ||
            zmq_curve_keypair(made.client_public.data(), made.client_secret.data()) != 0) {
            throw std::runtime_error("libzmq was built without CURVE");
        }
        return made;
    }();
    return k;
}

// The bulk bytes are sent zero-copy from one buffer that outlives every message.
void keep_buffer(void*, void*) {}

void send_bulk(zmq::socket_t& socket, const std::vector<char>& buffer, std::uint64_t total, std::uint64_t chunk) {
    std::uint64_t sent = 0;
    while (sent < total) {
        const std::uint64_t n = std::min(chunk, total - sent);
        zmq::message_t frame(const_cast<char*>(buffer.data()) + sent, n, keep_buffer);
        sent += n;
        socket.send(frame, sent < total ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
}

std::uint64_t receive_rest(zmq::socket_t& socket) {
    std::uint64_t received = 0;
    zmq::message_t frame;
    while (socket.get(zmq::sockopt::rcvmore)) {
        (void)socket.recv(frame);
        received += frame.size();
    }
    return received;
}

void set_curve_server(zmq::socket_t& socket) {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, std::string(keys().server_secret.data(), 40));
}

void set_curve_client(zmq::socket_t& socket) {
    socket.set(zmq::sockopt::curve_serverkey, std::string(keys().server_public.data(), 40));
    socket.set(zmq::sockopt::curve_publickey, std::string(keys().client_public.data(), 40));
    socket.set(zmq::sockopt::curve_secretkey, std::string(keys().client_secret.data(), 40));
}

void send_endpoint(int endpoint_pipe, const std::string& endpoint) {
    (void)!write(endpoint_pipe, endpoint.c_str(), endpoint.size() + 1);
    close(endpoint_pipe);
}

std::string read_endpoint(int endpoint_pipe) {
    std::string endpoint;
    char c = 0;
    while (read(endpoint_pipe, &c, 1) == 1 && c != '\0') {
        endpoint += c;
    }
    close(endpoint_pipe);
    return endpoint;
}

// The echo end. `hops` routing frames precede the command: 1 from a client directly, 2
// through the relay (the relay's id, then the client's).
[[noreturn]] void serve(int endpoint_pipe, const raw_options& options, const std::string& bind, int hops) {
    zmq::context_t context;
    zmq::socket_t router(context, zmq::socket_type::router);
    if (options.curve && hops == 1) {
        set_curve_server(router);
    }
    router.bind(bind);
    send_endpoint(endpoint_pipe, router.get(zmq::sockopt::last_endpoint));

    const std::vector<char> buffer(options.bulk_bytes, 'x');
    for (;;) {
        std::vector<zmq::message_t> envelope(hops);
        zmq::message_t request;
        for (auto& frame : envelope) {
            (void)router.recv(frame);
        }
        (void)router.recv(request);
        command cmd{};
        std::memcpy(&cmd, request.data(), std::min(request.size(), sizeof cmd));
        const std::uint64_t received = receive_rest(router);
        if (cmd.op == 'q') {
            break;
        }
        for (auto& frame : envelope) {
            router.send(frame, zmq::send_flags::sndmore);
        }
        if (cmd.op == 'r') {
            router.send(request, zmq::send_flags::sndmore);
            send_bulk(router, buffer, cmd.total, cmd.chunk);
        } else {
            std::uint64_t ack = received;
            router.send(zmq::buffer(&ack, sizeof ack));
        }
    }
    router.close();
    context.close();
    _exit(0);
}

// The supervisor's shape: a ROUTER facing clients, a DEALER towards the echo process, and
// zmq_proxy moving whole messages between them (no copy of the payload in this process).
[[noreturn]] void relay(int endpoint_pipe, const raw_options& options, const std::string& backend_endpoint) {
    zmq::context_t context;
    zmq::socket_t front(context, zmq::socket_type::router);
    zmq::socket_t back(context, zmq::socket_type::dealer);
    if (options.curve) {
        set_curve_server(front);
    }
    front.bind("tcp://127.0.0.1:*");
    back.connect(backend_endpoint);
    send_endpoint(endpoint_pipe, front.get(zmq::sockopt::last_endpoint));
    try {
        zmq::proxy(front, back);
    } catch (const zmq::error_t&) {
    }
    _exit(0);
}

template <class Body>
pid_t spawn(Body body, std::string& endpoint) {
    int fds[2];
    if (pipe(fds) != 0) {
        throw std::runtime_error("pipe() failed");
    }
    const pid_t child = fork();
    if (child < 0) {
        throw std::runtime_error("fork() failed");
    }
    if (child == 0) {
        close(fds[0]);
        body(fds[1]);
    }
    close(fds[1]);
    endpoint = read_endpoint(fds[0]);
    if (endpoint.empty()) {
        waitpid(child, nullptr, 0);
        throw std::runtime_error("a raw zmq helper process did not start");
    }
    return child;
}

std::uint64_t round_trip(zmq::socket_t& dealer, const command& cmd) {
    dealer.send(zmq::buffer(&cmd, sizeof cmd));
    zmq::message_t reply;
    (void)dealer.recv(reply);
    return reply.size() + receive_rest(dealer);
}

std::uint64_t write_bulk(zmq::socket_t& dealer, const std::vector<char>& buffer, const command& cmd) {
    dealer.send(zmq::buffer(&cmd, sizeof cmd), zmq::send_flags::sndmore);
    send_bulk(dealer, buffer, cmd.total, cmd.chunk);
    zmq::message_t ack;
    (void)dealer.recv(ack);
    std::uint64_t received = 0;
    std::memcpy(&received, ack.data(), std::min(ack.size(), sizeof received));
    return received;
}
}  // namespace

raw_peer::raw_peer(raw_options options)
    : m_options(options), m_label(std::string(options.curve ? "raw_curve" : "raw") + (options.relay ? "_relay" : "")),
      m_dealer(m_context, zmq::socket_type::dealer), m_buffer(options.bulk_bytes, 'y') {
    (void)keys();  // before fork, so both ends share them
    std::string endpoint;
    if (m_options.relay) {
        m_ipc_path = "/tmp/splitbrain-bench-wire-" + std::to_string(getpid()) + "-" + (m_options.curve ? "c" : "n");
        const std::string ipc = "ipc://" + m_ipc_path;
        std::string backend;
        m_children.push_back(spawn([&](int fd) { serve(fd, m_options, ipc, 2); }, backend));
        m_children.push_back(spawn([&](int fd) { relay(fd, m_options, backend); }, endpoint));
    } else {
        m_children.push_back(spawn([&](int fd) { serve(fd, m_options, "tcp://127.0.0.1:*", 1); }, endpoint));
    }
    m_dealer.set(zmq::sockopt::linger, 1000);
    if (m_options.curve) {
        set_curve_client(m_dealer);
    }
    m_dealer.connect(endpoint);
}

raw_peer::~raw_peer() {
    const command quit{'q', 0, 0};
    m_dealer.send(zmq::buffer(&quit, sizeof quit));
    m_dealer.close();  // lingers until the quit is out
    // The echo process quits on its own (and removes its ipc file); the relay, in zmq_proxy
    // until its context ends, is terminated, and so is anything not gone after 2 s.
    const auto deadline = bench_clock::now() + std::chrono::seconds(2);
    const pid_t echo = m_children.front();
    bool echo_gone = false;
    while (!echo_gone && bench_clock::now() < deadline) {
        echo_gone = waitpid(echo, nullptr, WNOHANG) == echo;
        if (!echo_gone) {
            usleep(1000);
        }
    }
    for (pid_t child : m_children) {
        if (child == echo && echo_gone) {
            continue;
        }
        kill(child, SIGTERM);
        waitpid(child, nullptr, 0);
    }
    if (!m_ipc_path.empty()) {
        unlink(m_ipc_path.c_str());  // libzmq leaves the socket file behind
    }
}

std::vector<workload> raw_peer::workloads(bool one_frame) {
    std::vector<workload> all;
    all.push_back({m_label + ".rtt", 0, [this] { (void)round_trip(m_dealer, command{'p', 0, 0}); }, {}});
    std::vector<std::pair<std::string, std::uint64_t>> shapes = {{"64x1MiB", m_options.chunk_bytes}};
    if (one_frame) {
        shapes.emplace_back("1x64MiB", m_options.bulk_bytes);
    }
    for (const auto& [shape, chunk] : shapes) {
        const command read_cmd{'r', m_options.bulk_bytes, chunk};
        const command write_cmd{'w', m_options.bulk_bytes, chunk};
        all.push_back({m_label + ".read_" + shape,
                       m_options.bulk_bytes,
                       [this, read_cmd] {
                           if (round_trip(m_dealer, read_cmd) < m_options.bulk_bytes) {
                               throw std::runtime_error("raw zmq read lost bytes");
                           }
                       },
                       {}});
        all.push_back({m_label + ".write_" + shape,
                       m_options.bulk_bytes,
                       [this, write_cmd] {
                           if (write_bulk(m_dealer, m_buffer, write_cmd) != m_options.bulk_bytes) {
                               throw std::runtime_error("raw zmq write lost bytes");
                           }
                       },
                       {}});
    }
    return all;
}
}  // namespace splitbench
