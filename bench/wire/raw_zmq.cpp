// The physical limit: a bare cppzmq DEALER ↔ ROUTER pair in two processes on tcp://127.0.0.1,
// moving what the agent moves (a small header per request, 64 MiB as one frame or as 1 MiB frames).
#include "raw_zmq.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "figures.hpp"

namespace splitbench
{
    namespace
    {
        // A command frame: what to do and, for bulk transfers, how many bytes in frames of what size.
        struct command
        {
            char op;  // 'p' ping, 'r' send me bytes, 'w' take these bytes, 'q' quit
            std::uint64_t total;
            std::uint64_t chunk;
        };

        struct curve_keys
        {
            std::array<char, 41> server_public{};
            std::array<char, 41> server_secret{};
            std::array<char, 41> client_public{};
            std::array<char, 41> client_secret{};
        };

        // The bulk bytes are sent zero-copy from one buffer that outlives every message.
        void keep_buffer(void*, void*) {}

        void send_bulk(zmq::socket_t& socket, const std::vector<char>& buffer, std::uint64_t total,
                       std::uint64_t chunk)
        {
            std::uint64_t sent = 0;
            while (sent < total)
            {
                const std::uint64_t n = std::min(chunk, total - sent);
                zmq::message_t frame(const_cast<char*>(buffer.data()) + sent, n, keep_buffer);
                sent += n;
                socket.send(frame, sent < total ? zmq::send_flags::sndmore : zmq::send_flags::none);
            }
        }

        std::uint64_t receive_rest(zmq::socket_t& socket)
        {
            std::uint64_t received = 0;
            zmq::message_t frame;
            while (socket.get(zmq::sockopt::rcvmore))
            {
                (void)socket.recv(frame);
                received += frame.size();
            }
            return received;
        }

        void set_curve_server(zmq::socket_t& socket, const curve_keys& keys)
        {
            socket.set(zmq::sockopt::curve_server, 1);
            socket.set(zmq::sockopt::curve_secretkey, std::string(keys.server_secret.data(), 40));
        }

        void set_curve_client(zmq::socket_t& socket, const curve_keys& keys)
        {
            socket.set(zmq::sockopt::curve_serverkey, std::string(keys.server_public.data(), 40));
            socket.set(zmq::sockopt::curve_publickey, std::string(keys.client_public.data(), 40));
            socket.set(zmq::sockopt::curve_secretkey, std::string(keys.client_secret.data(), 40));
        }

        [[noreturn]] void serve(int endpoint_pipe, const raw_options& options, const curve_keys& keys)
        {
            zmq::context_t context;
            zmq::socket_t router(context, zmq::socket_type::router);
            if (options.curve)
            {
                set_curve_server(router, keys);
            }
            router.bind("tcp://127.0.0.1:*");
            const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
            (void)!write(endpoint_pipe, endpoint.c_str(), endpoint.size() + 1);
            close(endpoint_pipe);

            const std::vector<char> buffer(options.bulk_bytes, 'x');
            for (;;)
            {
                zmq::message_t identity;
                zmq::message_t request;
                (void)router.recv(identity);
                (void)router.recv(request);
                command cmd{};
                std::memcpy(&cmd, request.data(), std::min(request.size(), sizeof cmd));
                const std::uint64_t received = receive_rest(router);
                if (cmd.op == 'q')
                {
                    break;
                }
                router.send(identity, zmq::send_flags::sndmore);
                if (cmd.op == 'r')
                {
                    router.send(request, zmq::send_flags::sndmore);
                    send_bulk(router, buffer, cmd.total, cmd.chunk);
                }
                else
                {
                    std::uint64_t ack = received;
                    router.send(zmq::buffer(&ack, sizeof ack));
                }
            }
            router.close();
            context.close();
            _exit(0);
        }

        std::uint64_t round_trip(zmq::socket_t& dealer, const command& cmd)
        {
            dealer.send(zmq::buffer(&cmd, sizeof cmd));
            zmq::message_t reply;
            (void)dealer.recv(reply);
            return reply.size() + receive_rest(dealer);
        }

        std::uint64_t write_bulk(zmq::socket_t& dealer, const std::vector<char>& buffer,
                                 const command& cmd)
        {
            dealer.send(zmq::buffer(&cmd, sizeof cmd), zmq::send_flags::sndmore);
            send_bulk(dealer, buffer, cmd.total, cmd.chunk);
            zmq::message_t ack;
            (void)dealer.recv(ack);
            std::uint64_t received = 0;
            std::memcpy(&received, ack.data(), std::min(ack.size(), sizeof received));
            return received;
        }

        std::string label(const raw_options& options, const std::string& what)
        {
            return std::string(options.curve ? "raw_curve." : "raw.") + what;
        }

        void measure(zmq::socket_t& dealer, const raw_options& options)
        {
            const command ping{'p', 0, 0};
            for (int i = 0; i < options.rtt_reps / 10 + 1; ++i)
            {
                (void)round_trip(dealer, ping);
            }
            samples rtt;
            for (int i = 0; i < options.rtt_reps; ++i)
            {
                const auto start = bench_clock::now();
                (void)round_trip(dealer, ping);
                rtt.add(seconds_since(start));
            }
            report(label(options, "rtt"), rtt);

            const std::vector<char> buffer(options.bulk_bytes, 'y');
            struct shape
            {
                const char* name;
                std::uint64_t chunk;
            };
            for (const shape& s : {shape{"1x64MiB", options.bulk_bytes}, shape{"64x1MiB", options.chunk_bytes}})
            {
                const command read_cmd{'r', options.bulk_bytes, s.chunk};
                const command write_cmd{'w', options.bulk_bytes, s.chunk};
                samples reads;
                samples writes;
                for (int i = 0; i < options.bulk_reps + 1; ++i)
                {
                    auto start = bench_clock::now();
                    const std::uint64_t got = round_trip(dealer, read_cmd);
                    const double read_s = seconds_since(start);
                    start = bench_clock::now();
                    const std::uint64_t acked = write_bulk(dealer, buffer, write_cmd);
                    const double write_s = seconds_since(start);
                    if (got < options.bulk_bytes || acked != options.bulk_bytes)
                    {
                        throw std::runtime_error("raw zmq bulk transfer lost bytes");
                    }
                    if (i > 0)  // the first lap pays for page faults in fresh buffers
                    {
                        reads.add(read_s);
                        writes.add(write_s);
                    }
                }
                report(label(options, std::string("read_") + s.name), reads, options.bulk_bytes);
                report(label(options, std::string("write_") + s.name), writes, options.bulk_bytes);
            }
        }
    }

    void run_raw(const raw_options& options)
    {
        curve_keys keys;
        if (zmq_curve_keypair(keys.server_public.data(), keys.server_secret.data()) != 0
            || zmq_curve_keypair(keys.client_public.data(), keys.client_secret.data()) != 0)
        {
            throw std::runtime_error("libzmq was built without CURVE");
        }

        int fds[2];
        if (pipe(fds) != 0)
        {
            throw std::runtime_error("pipe() failed");
        }
        const pid_t child = fork();
        if (child < 0)
        {
            throw std::runtime_error("fork() failed");
        }
        if (child == 0)
        {
            close(fds[0]);
            serve(fds[1], options, keys);
        }
        close(fds[1]);
        std::string endpoint;
        char c = 0;
        while (read(fds[0], &c, 1) == 1 && c != '\0')
        {
            endpoint += c;
        }
        close(fds[0]);
        if (endpoint.empty())
        {
            waitpid(child, nullptr, 0);
            throw std::runtime_error("the raw zmq echo process did not start");
        }

        {
            zmq::context_t context;
            zmq::socket_t dealer(context, zmq::socket_type::dealer);
            dealer.set(zmq::sockopt::linger, 0);
            if (options.curve)
            {
                set_curve_client(dealer, keys);
            }
            dealer.connect(endpoint);
            measure(dealer, options);
            const command quit{'q', 0, 0};
            dealer.send(zmq::buffer(&quit, sizeof quit));
            dealer.set(zmq::sockopt::linger, 1000);
        }
        waitpid(child, nullptr, 0);
    }
}
