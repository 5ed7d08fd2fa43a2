#ifndef SPLITBRAIN_KERNEL_SERVER_HPP
#define SPLITBRAIN_KERNEL_SERVER_HPP

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "zmq.hpp"
#include "zmq_addon.hpp"

#include "xeus/xauthentication.hpp"
#include "xeus/xcontrol_messenger.hpp"
#include "xeus/xkernel_configuration.hpp"
#include "xeus/xserver.hpp"

#include "output.hpp"
#include "run_state.hpp"

namespace splitbrain {
// Serves the five Jupyter channels for xeus's kernel core.
//
// Interrupts. xeus 2.4.1's servers poll the shell socket on the main thread with cppzmq, which
// throws when SIGINT interrupts zmq_poll (xeus#272), and interrupt_request only gets a reply
// (xeus-python#527). We keep Python's own SIGINT semantics instead of inventing ours: cells run on
// the main thread, which is Python's main thread, the only thread that leaves SIGINT unblocked
// (helper threads block all asynchronous signals, see threads.hpp). A SIGINT (the kernelspec's
// interrupt_mode "signal": jupyter_client signals the kernel's process group, so children a cell
// started are interrupted too) runs CPython's handler in the thread that executes the cell: a
// blocking call returns EINTR, the next eval-breaker check or PyErr_CheckSignals() raises
// KeyboardInterrupt, exactly as in `python3` at a terminal. interrupt_request on the control
// channel (for clients using message mode) sends the same SIGINT to the main thread. When the
// kernel is idle, or waiting for input(), this server's own waits wake up (EINTR, and CPython's
// signal wakeup fd for a signal that lands just before a wait) and run the Python handlers
// themselves: idle interrupts are consumed, input() raises KeyboardInterrupt. Why not message
// mode alone: a signal is what interrupts blocking system calls and child processes, and it
// keeps working when the kernel's threads are busy; message mode is served on top of it.
//
// Output. Every stream message comes from the output_buffer; the buffer (and what was written
// to descriptors 1 and 2) is flushed before each shell reply, each other iopub message of the
// shell channel and each input prompt.
//
// Requests. Every request gets a reply: those xeus's core would drop get an error reply here
// (requests.hpp), and stop_on_error aborts only the cells queued before the failing reply.
//
// Start-up. `warm_up` (the interpreter's slow part: creating the IPython shell) runs once on the
// main thread: before the first shell request that is not a kernel_info_request, or as soon as
// the requests that arrived with the first are answered. So the first kernel_info_reply does not
// wait for it, and nothing that needs it comes before it. SIGINT is blocked on the main thread
// from main() until the shell exists (and so in every thread started meanwhile): an interrupt
// then would otherwise kill the process, or break Python's initialisation or the shell's
// creation; it is delivered afterwards and consumed, as an idle kernel's. Every request starts
// by consuming an interrupt that came before it.
class kernel_server final : public xeus::xserver {
public:
    kernel_server(zmq::context_t& context, const xeus::xconfiguration& config, nl::json::error_handler_t eh,
                  output_buffer& output, std::function<void()> warm_up);
    ~kernel_server() override;

private:
    class direct_messenger final : public xeus::xcontrol_messenger {
    public:
        explicit direct_messenger(kernel_server& server);

    private:
        nl::json send_to_shell_impl(const nl::json& message) override;
        kernel_server& m_server;
    };

    xeus::xcontrol_messenger& get_control_messenger_impl() override;

    void send_shell_impl(xeus::xmessage msg) override;
    void send_control_impl(xeus::xmessage msg) override;
    void send_stdin_impl(xeus::xmessage msg) override;
    void publish_impl(xeus::xpub_message msg, xeus::channel c) override;

    void start_impl(xeus::xpub_message msg) override;
    void abort_queue_impl(const listener& l, long polling_interval) override;
    void stop_impl() override;
    void update_config_impl(xeus::xconfiguration& config) const override;

    enum class wait_result { readable, interrupted, stopping, timed_out };

    // Waits until `socket` has a message, the kernel stops, or (on the main thread, with
    // `signals`) a signal arrives: CPython's handler writes to our wakeup pipe (see
    // set_signal_wakeup), so a signal that lands just before the wait is not lost, as it would
    // be when relying on EINTR alone.
    wait_result wait_for(zmq::socket_t& socket, bool signals = false, long timeout_ms = -1);

    void serve_shell();
    void serve_control();
    void serve_heartbeat();
    bool parent_is_gone() const;
    void handle_shell_message(zmq::multipart_t& wire_msg);
    void warm_up_once();
    // Answers a request xeus's core would drop silently; true when it did.
    bool reject_bad_request(const xeus::xmessage& msg, xeus::channel c);
    void reply_directly(const xeus::xmessage& request, nl::json content, xeus::channel c);
    void consume_idle_interrupt();
    void set_signal_wakeup(bool enabled);
    void interrupt_main_thread();
    // What interrupt_request does: SIGINT to the main thread and, when the kernel leads its
    // process group (jupyter_client starts it in a session of its own), to the group's other
    // processes, as jupyter_client's signal mode would: a cell's children are interrupted too.
    void interrupt_like_a_signal();
    // True when an interrupt_request dated `date` was sent before the shell request that runs now:
    // it crossed that request on its way (control and shell are separate sockets) and belongs to
    // the idle kernel, as a SIGINT sent then would have.
    bool sent_before_the_running_request(const std::string& date);
    void publish_stream(stream_name name, const std::string& text, const nl::json& parent);
    void send_iopub(zmq::multipart_t& wire_msg);
    // Everything written so far, by Python or to the descriptors, goes out before what follows.
    void flush_output();

    zmq::socket_t m_shell;
    zmq::socket_t m_control;
    zmq::socket_t m_stdin;
    zmq::socket_t m_iopub;
    zmq::socket_t m_heartbeat;

    std::unique_ptr<xeus::xauthentication> p_auth;
    nl::json::error_handler_t m_error_handler;
    direct_messenger m_messenger;
    output_buffer& m_output;
    descriptor_capture m_capture;
    // Empty once it ran. Main thread only.
    std::function<void()> m_warm_up;

    // Learned from the start message: the kernel core's identity, stamped on stream messages.
    std::string m_topic_prefix;
    std::string m_user_name;
    std::string m_session_id;

    // Readable once stop() was called; every wait polls it.
    int m_stop_fd;
    // CPython's signal wakeup fd (signal.set_wakeup_fd) while the main thread waits.
    int m_signal_pipe[2] = {-1, -1};
    run_state m_run;
    pthread_t m_main_thread{};
    // The header date of the shell request the main thread runs, empty while none runs.
    std::mutex m_running_date_mutex;
    std::string m_running_date;
    // The process that started us, when that is Jupyter (JPY_PARENT_PID): its death ends the
    // kernel, as with ipykernel, instead of leaving an orphan. 0 when not watched.
    pid_t m_parent = 0;

    // iopub is written from the main, control and output threads.
    std::mutex m_iopub_mutex;

    // Shell requests that were queued when an execute_reply with an error went out: they were
    // sent before the client saw the error, so stop_on_error aborts the execute_requests among
    // them, and only them; whatever arrives after the reply runs. Main thread only.
    std::deque<zmq::multipart_t> m_queued_before_error;

    std::thread m_control_thread;
    std::thread m_heartbeat_thread;
};

std::unique_ptr<xeus::xserver> make_kernel_server(zmq::context_t& context, const xeus::xconfiguration& config,
                                                  nl::json::error_handler_t eh, output_buffer& output,
                                                  std::function<void()> warm_up);
}  // namespace splitbrain

#endif
