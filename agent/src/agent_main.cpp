// splitbrain-agent: keygen, authorize, serve and audit. See `splitbrain-agent --help`.
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "audit_report.hpp"
#include "direct.hpp"
#include "log.hpp"
#include "splitcore/bulk_memory.hpp"
#include "splitcore/keys.hpp"
#include "supervisor.hpp"

namespace {

namespace fs = std::filesystem;

constexpr const char* usage = R"(usage: splitbrain-agent keygen DIR
       splitbrain-agent authorize KEY [--authorized-keys FILE] [--comment TEXT]
       splitbrain-agent serve --key DIR --authorized-keys FILE [options]
       splitbrain-agent serve --insecure --listen tcp://127.0.0.1:PORT [options]
       splitbrain-agent audit [--audit-log PATH] [--since DURATION] [--json]

The splitbrain agent runs on a slave machine. Clients (splitbrain.connect, the splitbrain kernel's
%%slave cells) send it operations over ZeroMQ; each client session gets its own worker process
that embeds Python and executes them: files, processes, sockets, serial ports, instruments.

keygen DIR
    Write a new CURVE key pair: DIR/agent.key (secret, mode 0600) and DIR/agent.pub (the public
    key, Z85, for clients to pin). Refuses to overwrite existing files.

authorize KEY
    Add a client's public key (from `splitbrain key` on the notebook machine) to the authorized
    keys file (default ~/.splitbrain/authorized_keys, created with mode 0600), with an optional
    comment (who it is: alice@lab-pc). A running agent picks it up at the client's next
    connection attempt; no restart is needed. Adding a key that is already there changes nothing.

audit
    Print the audit log a `serve --audit-log PATH` wrote (PATH, default ~/.splitbrain/audit.log,
    and its rotated files PATH.1 ... oldest first) as a table: time, client key (its comment),
    session, operation, target, outcome (ok or an error id), milliseconds. --since 90s/10m/1h/2d
    keeps the most recent only; --json prints the JSON lines themselves.

serve options:
  --listen ENDPOINT        where to listen (default tcp://0.0.0.0:7780); port 0 or * picks a free
                           port, which the connection file reports
  --key DIR                the directory holding agent.key (from `keygen`)
  --authorized-keys FILE   client public keys allowed in: one Z85 key per line, '#' comments;
                           anyone else is refused (and logged) before anything runs
  --connection-file PATH   write {"address": ADDRESS, "public_key": Z85 or null} there
                           (atomically; nothing secret) once listening
  --advertise ADDRESS      the address clients use, written into the connection file
                           (tcp://HOST:PORT); default: ENDPOINT, with a wildcard host (0.0.0.0,
                           *, ::) replaced by this machine's first non-loopback IPv4 address
  --python VENV_OR_EXE     the Python environment the workers see: a virtual environment made
                           from Debian's /usr/bin/python3, or an interpreter (default: @DEFAULT_PYTHON@)
  --insecure               no encryption and no authentication; refused unless ENDPOINT is
                           loopback (tcp://127.0.0.1:..., tcp://localhost:..., ipc://...)
  --grace SECS             a session whose client is silent this long ends, and its worker
                           with it; a client reconnecting sooner resumes it (default 60)
  --max-message BYTES      the largest message accepted (default 1073741824)
  --max-sessions-per-key N
                           sessions (each one worker process) a client key may hold at once;
                           a hello past them is refused as too_many_sessions (default 16)
  --audit-log PATH         append one JSON line per request there (time, key comment, session,
                           op, target such as os.remove, a sha256 digest of the arguments, never
                           the arguments, outcome, duration), written off the request path
  --audit-max-bytes N      rotate the audit log past N bytes (default 16777216)
  --audit-keep K           rotated audit files kept: PATH.1 ... PATH.K (default 5)
  --exit-with PID          shut down (as on SIGTERM) once process PID has ended, even if it was
                           killed: splitbrain.spawn() ties its private agent to its interpreter
  --worker PATH            the splitbrain-worker executable (default: beside this program)
  --resource NAME=TARGET   a resource name clients may lease (box.lease("psu")): TARGET is a VISA
                           resource string or a serial port path; a lease on NAME covers opening
                           TARGET (repeatable: --resource psu=TCPIP::10.0.0.5::INSTR)
  --labgrid-place NAME     serve only sessions whose user holds this labgrid place (docs/labgrid.md):
                           each key needs labgrid-user= in authorized_keys; a session of a client
                           that acquired the place through splitbrain and expired releases it
  --labgrid-coordinator HOST:PORT
                           the labgrid coordinator (default: $LG_COORDINATOR, else 127.0.0.1:20408)
  --labgrid-timeout SECS   how long a hello waits for the coordinator's answer (default 5)
  --no-zygote              start each worker as a new process (a Python start-up each) instead
                           of forking it from a worker that initialised Python once
  --worker-ports LO-HI     the ports the sessions' workers listen on for their clients' direct
                           connections (one per session, on ENDPOINT's host; default: ephemeral)
  --no-direct              no direct connections: every request goes through this process's
                           port (also so with --audit-log, which must see every request)
  -h, --help               this text
  --version                the version

The authorized keys file is read again whenever it changes. Logs one line per event to stderr (listening, session opened/resumed/closed/lost/expired, refused
client key). SIGTERM or SIGINT: workers are terminated and the agent exits with status 0.
Wire protocol and error ids: docs/protocol.md.
)";

[[noreturn]] void bad_usage(const std::string& message) {
    std::cerr << "splitbrain-agent: " << message << "\nTry 'splitbrain-agent --help'.\n";
    std::exit(2);
}

std::string help_text() {
    std::string text = usage;
    const std::string marker = "@DEFAULT_PYTHON@";
    text.replace(text.find(marker), marker.size(), SPLITBRAIN_DEFAULT_PYTHON);
    return text;
}

fs::path own_directory() {
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::path(".") : self.parent_path();
}

fs::path default_authorized_keys() {
    const char* home = std::getenv("HOME");
    return fs::path(home && *home ? home : ".") / ".splitbrain" / "authorized_keys";
}

int authorize(const std::vector<std::string>& args) {
    std::optional<std::string> key;
    fs::path file = default_authorized_keys();
    std::string comment;
    for (std::size_t i = 0; i < args.size(); ++i) {
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) bad_usage(args[i] + " needs a value");
            return args[++i];
        };
        if (args[i] == "--authorized-keys") file = value();
        else if (args[i] == "--comment") comment = value();
        // Z85 may start with '-': a key is a key before it is an unknown option.
        else if (key || (args[i].rfind("-", 0) == 0 && !splitcore::is_z85_key(args[i])))
            bad_usage("unexpected argument '" + args[i] + "' to authorize");
        else key = args[i];
    }
    if (!key) bad_usage("authorize needs the client's public key (`splitbrain key` prints it)");
    if (!splitcore::is_z85_key(*key)) {
        std::cerr << "splitbrain-agent: '" << *key << "' is not a 40-character Z85 CurveZMQ public key\n";
        return 2;
    }
    if (comment.find_first_of("\n\r") != std::string::npos) bad_usage("--comment must be one line");
    try {
        std::error_code ec;
        std::set<std::string> known;
        if (fs::exists(file, ec)) known = splitcore::load_authorized_keys(file);
        if (known.count(*key)) {
            std::cout << *key << " is already in " << file.string() << "\n";
            return 0;
        }
        if (!file.parent_path().empty()) fs::create_directories(file.parent_path());
        const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) throw std::runtime_error("cannot write " + file.string() + ": " + std::strerror(errno));
        const std::string line = *key + (comment.empty() ? "" : "  # " + comment) + "\n";
        const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        ::close(fd);
        if (!written) throw std::runtime_error("cannot write " + file.string() + ": " + std::strerror(errno));
        std::cout << "authorized " << *key << " in " << file.string()
                  << " (a running agent reads it at the next connection)\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "splitbrain-agent: " << e.what() << "\n";
        return 1;
    }
}

int keygen(const std::vector<std::string>& args) {
    if (args.size() != 1 || args[0].rfind("-", 0) == 0) bad_usage("keygen takes exactly one argument: DIR");
    try {
        const auto pair = splitcore::key_pair::generate();
        pair.save(args[0]);
        std::cout << "wrote " << (fs::path(args[0]) / splitcore::secret_key_file).string() << " (secret) and "
                  << (fs::path(args[0]) / splitcore::public_key_file).string() << "\npublic key: " << pair.public_key
                  << "\n";
        return 0;
    } catch (const splitcore::key_error& e) {
        std::cerr << "splitbrain-agent: " << e.what() << "\n";
        return 1;
    }
}

double parse_number(const std::string& flag, const std::string& text) {
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || !(value > 0)) {
        bad_usage(flag + " needs a positive number, not '" + text + "'");
    }
    return value;
}

int serve(const std::vector<std::string>& args) {
    splitcore::keep_bulk_buffers();
    splitbrain::agent::options opts;
    opts.python = SPLITBRAIN_DEFAULT_PYTHON;
    opts.worker = own_directory() / "splitbrain-worker";
    opts.place_watch = own_directory() / "splitbrain-place-watch";
    if (const char* coordinator = std::getenv("LG_COORDINATOR"); coordinator && *coordinator) {
        opts.labgrid_coordinator = coordinator;
    }
    bool have_key = false, have_authorized = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string flag = args[i];
        std::optional<std::string> inline_value;
        if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
            inline_value = flag.substr(eq + 1);
            flag = flag.substr(0, eq);
        }
        auto value = [&]() -> std::string {
            if (inline_value) return *inline_value;
            if (i + 1 >= args.size()) bad_usage(flag + " needs a value");
            return args[++i];
        };
        if (flag == "--listen") opts.listen = value();
        else if (flag == "--key") {
            opts.key_dir = value();
            have_key = true;
        } else if (flag == "--authorized-keys") {
            opts.authorized_keys = value();
            have_authorized = true;
        } else if (flag == "--connection-file") opts.connection_file = fs::path(value());
        else if (flag == "--advertise") opts.advertise = value();
        else if (flag == "--python") opts.python = value();
        else if (flag == "--worker") opts.worker = value();
        else if (flag == "--insecure" && !inline_value) opts.insecure = true;
        else if (flag == "--no-zygote" && !inline_value) opts.zygote = false;
        else if (flag == "--no-direct" && !inline_value) opts.direct = false;
        else if (flag == "--worker-ports") {
            try {
                const auto ports = splitbrain::agent::parse_worker_ports(value());
                opts.worker_ports[0] = ports.first_port;
                opts.worker_ports[1] = ports.last_port;
            } catch (const std::runtime_error& e) {
                bad_usage(e.what());
            }
        } else if (flag == "--grace")
            opts.grace = std::chrono::milliseconds(static_cast<long long>(parse_number(flag, value()) * 1000));
        else if (flag == "--max-message") opts.max_message = static_cast<std::int64_t>(parse_number(flag, value()));
        else if (flag == "--max-sessions-per-key")
            opts.max_sessions_per_key = static_cast<std::size_t>(parse_number(flag, value()));
        else if (flag == "--audit-log") opts.audit_log = fs::path(value());
        else if (flag == "--audit-max-bytes")
            opts.audit_max_bytes = static_cast<std::uintmax_t>(parse_number(flag, value()));
        else if (flag == "--audit-keep") opts.audit_keep = static_cast<unsigned>(parse_number(flag, value()));
        else if (flag == "--exit-with") opts.parent_pid = static_cast<pid_t>(parse_number(flag, value()));
        else if (flag == "--resource") {
            const std::string given = value();
            const auto eq = given.find('=');
            if (eq == 0 || eq == std::string::npos || eq + 1 == given.size())
                bad_usage("--resource needs NAME=TARGET (a VISA resource string or a serial port path), not '" + given +
                          "'");
            opts.resources[given.substr(0, eq)] = given.substr(eq + 1);
        } else if (flag == "--labgrid-place") opts.labgrid_place = value();
        else if (flag == "--labgrid-coordinator") opts.labgrid_coordinator = value();
        else if (flag == "--labgrid-timeout")
            opts.labgrid_timeout =
                std::chrono::milliseconds(static_cast<long long>(parse_number(flag, value()) * 1000));
        else bad_usage("unknown option '" + args[i] + "'");
    }
    if (opts.insecure) {
        if (!splitbrain::agent::is_loopback_endpoint(opts.listen)) {
            std::cerr << "splitbrain-agent: --insecure is only allowed on a loopback address "
                         "(tcp://127.0.0.1:PORT), not "
                      << opts.listen << "\n";
            return 2;
        }
    } else {
        if (!have_key) bad_usage("serve needs --key DIR (create one with `splitbrain-agent keygen DIR`)");
        if (!have_authorized) bad_usage("serve needs --authorized-keys FILE (the client public keys allowed in)");
    }
    if (std::error_code ec; !fs::is_directory(opts.python, ec) && ::access(opts.python.c_str(), X_OK) != 0) {
        std::cerr << "splitbrain-agent: --python " << opts.python
                  << " is neither a virtual environment directory nor an executable interpreter\n";
        return 2;
    }
    if (::access(opts.worker.c_str(), X_OK) != 0) {
        std::cerr << "splitbrain-agent: the worker " << opts.worker << " is not executable; use --worker PATH\n";
        return 1;
    }

    if (!opts.labgrid_place.empty() && ::access(opts.place_watch.c_str(), R_OK) != 0) {
        std::cerr << "splitbrain-agent: --labgrid-place needs " << opts.place_watch
                  << ", installed beside this program\n";
        return 1;
    }

    // Signals arrive through the supervisor's signalfd; block them before libzmq starts threads.
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&signals, sig);
    ::sigprocmask(SIG_BLOCK, &signals, nullptr);
    try {
        splitbrain::agent::supervisor agent(std::move(opts));
        return agent.run();
    } catch (const std::exception& e) {
        std::cerr << "splitbrain-agent: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) bad_usage("a command is needed: keygen, authorize, serve or audit");
    for (const auto& arg : args) {
        if (arg == "-h" || arg == "--help" || arg == "help") {
            std::cout << help_text();
            return 0;
        }
        if (arg == "--version" || arg == "version") {
            std::cout << "splitbrain-agent " << SPLITBRAIN_VERSION << "\n";
            return 0;
        }
    }
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "keygen") return keygen(args);
    if (command == "authorize") return authorize(args);
    if (command == "serve") return serve(args);
    if (command == "audit") {
        return splitbrain::agent::audit_command(args, (default_authorized_keys().parent_path() / "audit.log").string());
    }
    bad_usage("unknown command '" + command + "'");
}
