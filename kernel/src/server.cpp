#include "pybind11/pybind11.h"

#include "server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "xeus/xmessage.hpp"
#include "xeus/xmiddleware.hpp"
#include "xeus/xzmq_serializer.hpp"

#include "splitcore/errors.hpp"

#include "requests.hpp"
#include "splitcore/wire.hpp"
#include "threads.hpp"

namespace splitbrain {
namespace {
// A message header's date, the text jupyter_client wrote; empty when it has none.
std::string header_date(const nl::json& header) {
    auto it = header.find("date");
    return it != header.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// splitcore's send_parts retries EINTR: a signal meant for Python must never lose a message part.
void send_all(zmq::socket_t& socket, zmq::multipart_t& parts) {
    std::vector<zmq::message_t> frames;
    frames.reserve(parts.size());
    while (!parts.empty()) frames.push_back(parts.pop());
    splitcore::send_parts(socket, frames);
}

// Receives a whole message if one is there; false when none is.
[[nodiscard]] bool recv_now(zmq::socket_t& socket, zmq::multipart_t& parts) {
    for (;;) {
        try {
            return parts.recv(socket, ZMQ_DONTWAIT);
        } catch (const zmq::error_t& e) {
            if (e.num() != EINTR) {
                throw;
            }
            parts.clear();
        }
    }
}

// Releases the GIL for its scope if the calling thread holds it.
class gil_released_if_held {
public:
    gil_released_if_held() : m_state(PyGILState_Check() ? PyEval_SaveThread() : nullptr) {}
    ~gil_released_if_held() {
        if (m_state != nullptr) {
            PyEval_RestoreThread(m_state);
        }
    }
    gil_released_if_held(const gil_released_if_held&) = delete;
    gil_released_if_held& operator=(const gil_released_if_held&) = delete;

private:
    PyThreadState* m_state;
};

void log_bad_message(const char* channel, const std::exception& e) {
    std::cerr << splitcore::tagged(splitcore::errc::kernel_bad_message,
                                   std::string("dropped a message on the ") + channel + " channel: " + e.what())
              << std::endl;
}
}  // namespace

kernel_server::direct_messenger::direct_messenger(kernel_server& server) : m_server(server) {}

nl::json kernel_server::direct_messenger::send_to_shell_impl(const nl::json& message) {
    return m_server.notify_internal_listener(message);
}

kernel_server::kernel_server(zmq::context_t& context, const xeus::xconfiguration& config, nl::json::error_handler_t eh,
                             output_buffer& output, std::function<void()> warm_up)
    : m_shell(context, zmq::socket_type::router), m_control(context, zmq::socket_type::router),
      m_stdin(context, zmq::socket_type::router), m_iopub(context, zmq::socket_type::pub),
      m_heartbeat(context, zmq::socket_type::router),
      p_auth(xeus::make_xauthentication(config.m_signature_scheme, config.m_key)), m_error_handler(eh),
      m_messenger(*this), m_output(output), m_capture(output), m_warm_up(std::move(warm_up)),
      m_stop_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (m_stop_fd < 0 || ::pipe2(m_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        const int error = errno;  // before tagged() allocates
        throw std::system_error(error, std::generic_category(),
                                splitcore::tagged(splitcore::errc::kernel_start_failed, "eventfd/pipe"));
    }
    xeus::init_socket(m_shell, config.m_transport, config.m_ip, config.m_shell_port);
    xeus::init_socket(m_control, config.m_transport, config.m_ip, config.m_control_port);
    xeus::init_socket(m_stdin, config.m_transport, config.m_ip, config.m_stdin_port);
    xeus::init_socket(m_iopub, config.m_transport, config.m_ip, config.m_iopub_port);
    xeus::init_socket(m_heartbeat, config.m_transport, config.m_ip, config.m_hb_port);
}

kernel_server::~kernel_server() {
    stop_impl();
    for (std::thread* t : {&m_control_thread, &m_heartbeat_thread}) {
        if (t->joinable()) {
            t->join();
        }
    }
    ::close(m_stop_fd);
    for (int fd : m_signal_pipe) {
        ::close(fd);
    }
}

xeus::xcontrol_messenger& kernel_server::get_control_messenger_impl() { return m_messenger; }

void kernel_server::send_shell_impl(xeus::xmessage msg) {
    flush_output();
    if (msg.header().value("msg_type", "") == "execute_reply" && msg.content().value("status", "") == "error") {
        zmq::multipart_t queued;
        while (recv_now(m_shell, queued)) {
            m_queued_before_error.push_back(std::move(queued));
            queued = zmq::multipart_t();
        }
    }
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize(std::move(msg), *p_auth, m_error_handler);
    send_all(m_shell, wire);
}

void kernel_server::send_control_impl(xeus::xmessage msg) {
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize(std::move(msg), *p_auth, m_error_handler);
    send_all(m_control, wire);
}

// Called on the main thread from input()/getpass() with the GIL held.
void kernel_server::send_stdin_impl(xeus::xmessage msg) {
    flush_output();
    zmq::multipart_t stale;
    while (recv_now(m_stdin, stale)) {
        stale.clear();  // the answer to a prompt that was interrupted
    }
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize(std::move(msg), *p_auth, m_error_handler);
    send_all(m_stdin, wire);

    const bool has_gil = PyGILState_Check() != 0;
    if (has_gil) {
        set_signal_wakeup(true);
    }
    zmq::multipart_t reply;
    for (;;) {
        wait_result result;
        {
            // Other Python threads keep running while the user types.
            gil_released_if_held released;
            result = wait_for(m_stdin, /*signals=*/true);
        }
        if (result == wait_result::interrupted) {
            if (!has_gil) {
                consume_idle_interrupt();
            } else if (PyErr_CheckSignals() != 0) {
                throw pybind11::error_already_set();  // KeyboardInterrupt raised in input()
            }
            continue;
        }
        if (result == wait_result::stopping) {
            const std::string stopping =
                splitcore::tagged(splitcore::errc::kernel_stopping, "the kernel is shutting down");
            if (has_gil) {
                PyErr_SetString(PyExc_EOFError, stopping.c_str());
                throw pybind11::error_already_set();
            }
            throw std::runtime_error(stopping);
        }
        std::optional<xeus::xmessage> answer;
        while (!answer && recv_now(m_stdin, reply)) {
            try {
                answer.emplace(xeus::xzmq_serializer::deserialize(reply, *p_auth));
            } catch (const std::exception& e) {
                log_bad_message("stdin", e);  // and keep waiting for the real answer
            }
            reply.clear();
        }
        if (answer) {
            notify_stdin_listener(std::move(*answer));
            return;
        }
    }
}

void kernel_server::publish_impl(xeus::xpub_message msg, xeus::channel c) {
    if (c == xeus::channel::SHELL) {
        flush_output();  // what a cell printed precedes what it displays, and its idle status
    }
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize_iopub(std::move(msg), *p_auth, m_error_handler);
    send_iopub(wire);
}

void kernel_server::publish_stream(stream_name name, const std::string& text, const nl::json& parent) {
    nl::json content;
    content["name"] = to_string(name);
    content["text"] = text;
    xeus::xpub_message msg(m_topic_prefix + "stream", xeus::make_header("stream", m_user_name, m_session_id), parent,
                           nl::json::object(), std::move(content), xeus::buffer_sequence());
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize_iopub(std::move(msg), *p_auth, m_error_handler);
    send_iopub(wire);
}

void kernel_server::flush_output() {
    m_capture.drain();
    m_output.flush();
}

void kernel_server::send_iopub(zmq::multipart_t& wire_msg) {
    std::lock_guard<std::mutex> lock(m_iopub_mutex);
    send_all(m_iopub, wire_msg);
}

void kernel_server::start_impl(xeus::xpub_message msg) {
    const std::string& topic = msg.topic();
    m_topic_prefix = topic.substr(0, topic.find_last_of('.') + 1);
    m_user_name = msg.header().value("username", "");
    m_session_id = msg.header().value("session", "");
    m_main_thread = pthread_self();
    if (std::getenv("JPY_PARENT_PID") != nullptr) {
        m_parent = ::getppid();
    }

    zmq::multipart_t wire = xeus::xzmq_serializer::serialize_iopub(std::move(msg), *p_auth, m_error_handler);
    send_iopub(wire);

    m_output.start([this](stream_name name, const std::string& text, const nl::json& parent) {
        publish_stream(name, text, parent);
    });
    m_capture.start();
    m_control_thread = start_signal_free_thread([this] { serve_control(); });
    m_heartbeat_thread = start_signal_free_thread([this] { serve_heartbeat(); });

    set_signal_wakeup(true);
    serve_shell();
    set_signal_wakeup(false);

    m_capture.stop();
    m_output.stop();
    stop_impl();
    m_control_thread.join();
    m_heartbeat_thread.join();
}

// After an execute_request failed with stop_on_error: aborts the execute_requests that were
// queued before its reply went out (xeus aborts whatever arrives for a while, including
// kernel_info and completion requests and the next cell of a client that waited for the reply,
// and replies "error" without the idle status clients wait for). Replies "aborted", as ipykernel.
void kernel_server::abort_queue_impl(const listener& /*l*/, long /*polling_interval*/) {
    std::deque<zmq::multipart_t> kept;
    for (zmq::multipart_t& wire : m_queued_before_error) {
        try {
            zmq::multipart_t copy = wire.clone();
            xeus::xmessage msg = xeus::xzmq_serializer::deserialize(copy, *p_auth);
            if (msg.header().value("msg_type", "") == "execute_request") {
                reply_directly(msg, nl::json{{"status", "aborted"}}, xeus::channel::SHELL);
            } else {
                kept.push_back(std::move(wire));
            }
        } catch (const std::exception& e) {
            log_bad_message("shell", e);
        }
    }
    m_queued_before_error.swap(kept);
}

void kernel_server::stop_impl() {
    if (!m_run.stop()) {
        return;
    }
    const std::uint64_t one = 1;
    (void)!::write(m_stop_fd, &one, sizeof(one));
    if (m_run.busy()) {
        interrupt_main_thread();  // a cell still running is stopped like an interrupt would
    }
}

void kernel_server::update_config_impl(xeus::xconfiguration& config) const {
    config.m_shell_port = xeus::get_socket_port(m_shell);
    config.m_control_port = xeus::get_socket_port(m_control);
    config.m_stdin_port = xeus::get_socket_port(m_stdin);
    config.m_iopub_port = xeus::get_socket_port(m_iopub);
    config.m_hb_port = xeus::get_socket_port(m_heartbeat);
}

auto kernel_server::wait_for(zmq::socket_t& socket, bool signals, long timeout_ms) -> wait_result {
    zmq_pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                              {nullptr, m_stop_fd, ZMQ_POLLIN, 0},
                              {nullptr, m_signal_pipe[0], ZMQ_POLLIN, 0}};
    for (;;) {
        const int rc = zmq_poll(items, signals ? 3 : 2, timeout_ms);
        if (rc < 0) {
            if (zmq_errno() == EINTR) {
                return wait_result::interrupted;
            }
            throw zmq::error_t();
        }
        if (items[1].revents & ZMQ_POLLIN) {
            return wait_result::stopping;
        }
        if (signals && (items[2].revents & ZMQ_POLLIN)) {
            char drained[64];
            while (::read(m_signal_pipe[0], drained, sizeof(drained)) > 0) {
            }
            return wait_result::interrupted;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            return wait_result::readable;
        }
        if (rc == 0) {
            return wait_result::timed_out;
        }
    }
}

void kernel_server::serve_shell() {
    zmq::multipart_t wire;
    for (;;) {
        while (!m_run.stopping() && !m_queued_before_error.empty()) {
            wire = std::move(m_queued_before_error.front());
            m_queued_before_error.pop_front();
            handle_shell_message(wire);
        }
        wire.clear();
        const wait_result result = wait_for(m_shell, /*signals=*/true);
        if (result == wait_result::stopping) {
            return;
        }
        if (result == wait_result::interrupted) {
            consume_idle_interrupt();
            continue;
        }
        // Requests set aside by a failing cell's reply are older: they go first (top of loop).
        while (!m_run.stopping() && m_queued_before_error.empty() && recv_now(m_shell, wire)) {
            handle_shell_message(wire);
            wire.clear();
        }
        if (!m_run.stopping()) {
            warm_up_once();
        }
        set_signal_wakeup(true);  // again: a cell's asyncio loop may have replaced it
    }
}

void kernel_server::handle_shell_message(zmq::multipart_t& wire_msg) {
    std::optional<xeus::xmessage> msg;
    try {
        msg.emplace(xeus::xzmq_serializer::deserialize(wire_msg, *p_auth));
    } catch (const std::exception& e) {
        log_bad_message("shell", e);
        return;
    }
    if (reject_bad_request(*msg, xeus::channel::SHELL)) {
        return;
    }
    if (msg->header().value("msg_type", "") != "kernel_info_request") {
        warm_up_once();
    }
    // An interrupt that was sent before this request but is handled only now (it raced the
    // message) belongs to the idle kernel, not to this request. Consumed whether or not it woke
    // us: a cell's asyncio loop may have had the wakeup fd when it landed.
    char pending[64];
    while (::read(m_signal_pipe[0], pending, sizeof(pending)) > 0) {
    }
    consume_idle_interrupt();
    flush_output();
    m_output.set_parent(msg->header());
    if (!m_run.begin_request()) {
        return;  // a stop landed after the loop's check; like the requests still queued, not run
    }
    {
        std::lock_guard<std::mutex> lock(m_running_date_mutex);
        m_running_date = header_date(msg->header());
    }
    try {
        notify_shell_listener(std::move(*msg));
    } catch (const std::exception& e) {
        std::cerr << splitcore::tagged(splitcore::errc::kernel_request_failed, e.what()) << std::endl;
    }
    {
        std::lock_guard<std::mutex> lock(m_running_date_mutex);
        m_running_date.clear();
    }
    m_run.end_request();
    flush_output();
}

void kernel_server::warm_up_once() {
    if (!m_warm_up) {
        return;
    }
    std::function<void()> warm_up = std::move(m_warm_up);
    m_warm_up = nullptr;
    // SIGINT is blocked since main() (again here, for a server started otherwise): blocking it
    // only now would leave a window in which an interrupt's flag is already set, and the
    // shell's first Python line would raise KeyboardInterrupt. A flag set anyway (a signal that
    // reached a thread of Python's) is the idle kernel's: consumed before, not during.
    sigset_t interrupt;
    sigemptyset(&interrupt);
    sigaddset(&interrupt, SIGINT);
    pthread_sigmask(SIG_BLOCK, &interrupt, nullptr);
    consume_idle_interrupt();
    warm_up();
    // A pending interrupt is delivered now, before pthread_sigmask returns, and consumed at once:
    // left pending, it would raise KeyboardInterrupt in whatever Python the server calls next.
    pthread_sigmask(SIG_UNBLOCK, &interrupt, nullptr);
    consume_idle_interrupt();
}

bool kernel_server::reject_bad_request(const xeus::xmessage& msg, xeus::channel c) {
    const std::optional<std::string> problem = check_request(msg.header(), msg.content());
    if (!problem) {
        return false;
    }
    if (reply_type_of(msg.header().value("msg_type", "")).empty()) {
        std::cerr << splitcore::tagged(splitcore::errc::kernel_bad_message, *problem) << std::endl;
        return true;
    }
    nl::json content;
    content["status"] = "error";
    content["ename"] = "ValueError";
    content["evalue"] = splitcore::tagged(splitcore::errc::kernel_bad_request, *problem);
    content["traceback"] = nl::json::array();
    reply_directly(msg, std::move(content), c);
    return true;
}

// A reply the kernel core is not involved in, framed like the core's: busy, reply, idle
// (clients wait for the idle status of their request).
void kernel_server::reply_directly(const xeus::xmessage& request, nl::json content, xeus::channel c) {
    auto publish_status = [this, &request](const char* state) {
        xeus::xpub_message status(m_topic_prefix + "status", xeus::make_header("status", m_user_name, m_session_id),
                                  request.header(), nl::json::object(), nl::json{{"execution_state", state}},
                                  xeus::buffer_sequence());
        zmq::multipart_t wire = xeus::xzmq_serializer::serialize_iopub(std::move(status), *p_auth, m_error_handler);
        send_iopub(wire);
    };
    publish_status("busy");
    xeus::xmessage reply(
        request.identities(),
        xeus::make_header(reply_type_of(request.header().value("msg_type", "")), m_user_name, m_session_id),
        request.header(), nl::json::object(), std::move(content), xeus::buffer_sequence());
    zmq::multipart_t wire = xeus::xzmq_serializer::serialize(std::move(reply), *p_auth, m_error_handler);
    send_all(c == xeus::channel::SHELL ? m_shell : m_control, wire);
    publish_status("idle");
}

// A SIGINT that arrives while no cell runs interrupts nothing; run the Python handlers now so
// that the pending KeyboardInterrupt does not hit the next cell at its first line.
void kernel_server::consume_idle_interrupt() {
    PyGILState_STATE state = PyGILState_Ensure();
    if (PyErr_CheckSignals() != 0) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyErr_Clear();
        } else {
            PyErr_Print();  // raised by a handler the user installed: show it
        }
    }
    PyGILState_Release(state);
}

// Main thread only (CPython's rule for signal.set_wakeup_fd).
// An interrupt that lands meanwhile (the kernel is idle) raises KeyboardInterrupt in the call: it
// is consumed, and the call made again.
void kernel_server::set_signal_wakeup(bool enabled) {
    PyGILState_STATE state = PyGILState_Ensure();
    for (int attempt = 0; attempt < 3; ++attempt) {
        try {
            pybind11::module_::import("signal").attr("set_wakeup_fd")(enabled ? m_signal_pipe[1] : -1,
                                                                      pybind11::arg("warn_on_full_buffer") = false);
            break;
        } catch (const pybind11::error_already_set& e) {
            if (!e.matches(PyExc_KeyboardInterrupt)) {
                std::cerr << splitcore::tagged(splitcore::errc::kernel_signal_wakeup, e.what()) << std::endl;
                break;
            }
        }
    }
    PyGILState_Release(state);
}

void kernel_server::interrupt_main_thread() {
    if (m_main_thread != pthread_t{}) {
        pthread_kill(m_main_thread, SIGINT);
    }
}

void kernel_server::interrupt_like_a_signal() {
    interrupt_main_thread();  // to the thread itself: a signal to the process may land in a cell's thread
    const pid_t self = ::getpid();
    if (::getpgrp() != self) {
        return;  // not our group: it holds processes that are not the cell's
    }
    // The other processes of our group (the cells' children), from /proc: bounded by the
    // machine's process count, and only for an interrupt.
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) {
        return;
    }
    while (const dirent* entry = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(entry->d_name, &end, 10);
        if (pid <= 0 || *end != '\0' || pid == self) {
            continue;
        }
        std::ifstream stat("/proc/" + std::string(entry->d_name) + "/stat");
        std::string text;
        std::getline(stat, text);
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so after the last ')'.
        const auto close = text.rfind(')');
        if (close == std::string::npos) {
            continue;
        }
        std::istringstream fields(text.substr(close + 1));
        std::string state;
        long ppid = 0;
        long pgrp = 0;
        if (fields >> state >> ppid >> pgrp && pgrp == self) {
            ::kill(static_cast<pid_t>(pid), SIGINT);
        }
    }
    ::closedir(proc);
}

namespace {
// Seconds since the epoch of an ISO 8601 date in UTC as jupyter_client writes them
// ("2026-12-01T23:37:05.123456Z" or "...+00:00"); nothing for any other form.
std::optional<double> utc_seconds(const std::string& date) {
    std::tm when{};
    int consumed = 0;
    if (std::sscanf(date.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &when.tm_year, &when.tm_mon, &when.tm_mday,
                    &when.tm_hour, &when.tm_min, &when.tm_sec, &consumed) != 6) {
        return std::nullopt;
    }
    std::size_t pos = static_cast<std::size_t>(consumed);
    double fraction = 0;
    if (pos < date.size() && date[pos] == '.') {
        double scale = 0.1;
        for (++pos; pos < date.size() && date[pos] >= '0' && date[pos] <= '9'; ++pos, scale /= 10) {
            fraction += (date[pos] - '0') * scale;
        }
    }
    const std::string zone = date.substr(pos);
    if (zone != "Z" && zone != "+00:00") {
        return std::nullopt;
    }
    when.tm_year -= 1900;
    when.tm_mon -= 1;
    return static_cast<double>(::timegm(&when)) + fraction;
}
}  // namespace

bool kernel_server::sent_before_the_running_request(const std::string& date) {
    // Within a second before it: an interrupt that crossed the request on the wire is milliseconds
    // older. An older date is another client's clock, or a stale message: the interrupt goes ahead,
    // as it does for dates of another form.
    std::string running;
    {
        std::lock_guard<std::mutex> lock(m_running_date_mutex);
        running = m_running_date;
    }
    const std::optional<double> sent = utc_seconds(date);
    const std::optional<double> started = utc_seconds(running);
    return sent && started && *sent < *started && *started - *sent < 1.0;
}

void kernel_server::serve_control() {
    zmq::multipart_t wire;
    while (wait_for(m_control) != wait_result::stopping) {
        while (recv_now(m_control, wire)) {
            try {
                xeus::xmessage msg = xeus::xzmq_serializer::deserialize(wire, *p_auth);
                if (reject_bad_request(msg, xeus::channel::CONTROL)) {
                    wire.clear();
                    continue;
                }
                if (msg.header().value("msg_type", "") == "interrupt_request" &&
                    !sent_before_the_running_request(header_date(msg.header()))) {
                    interrupt_like_a_signal();
                }
                notify_control_listener(std::move(msg));
            } catch (const std::exception& e) {
                log_bad_message("control", e);
            }
            wire.clear();
        }
    }
}

bool kernel_server::parent_is_gone() const { return m_parent != 0 && ::getppid() != m_parent; }

void kernel_server::serve_heartbeat() {
    zmq::multipart_t wire;
    for (;;) {
        const wait_result result = wait_for(m_heartbeat, false, m_parent != 0 ? 1000 : -1);
        if (result == wait_result::stopping) {
            return;
        }
        if (parent_is_gone()) {
            std::cerr << splitcore::tagged(splitcore::errc::kernel_orphaned,
                                           "the process that started the kernel (pid " + std::to_string(m_parent) +
                                               ") is gone; shutting down")
                      << std::endl;
            stop_impl();
            return;
        }
        while (recv_now(m_heartbeat, wire)) {
            send_all(m_heartbeat, wire);
            wire.clear();
        }
    }
}

std::unique_ptr<xeus::xserver> make_kernel_server(zmq::context_t& context, const xeus::xconfiguration& config,
                                                  nl::json::error_handler_t eh, output_buffer& output,
                                                  std::function<void()> warm_up) {
    return std::make_unique<kernel_server>(context, config, eh, output, std::move(warm_up));
}
}  // namespace splitbrain
