#ifndef SPLITBRAIN_KERNEL_INTERPRETER_HPP
#define SPLITBRAIN_KERNEL_INTERPRETER_HPP

#include <string>

#include "nlohmann/json.hpp"

#include "xeus-python/xinterpreter.hpp"

#include "output.hpp"

namespace nl = nlohmann;

namespace splitbrain {
// xeus-python's IPython shell, with:
// - sys.stdout/sys.stderr writing into the kernel's output_buffer (coalesced, any thread;
//   their Python side is _splitbrain_kernel/streams.py);
// - every request answered, also when Python raises outside the cell's own code
//   (a KeyboardInterrupt landing in IPython's machinery, a broken completer);
// - the splitbrain IPython extension loaded at start when it is installed
//   (_splitbrain_kernel/startup.py);
// - the IPython shell created by start_shell(), not when xeus configures the interpreter: its
//   imports (IPython, prompt_toolkit, jedi: most of the kernel's start-up) need not delay the
//   kernel_info_reply, which is all a client waits for before it calls the kernel ready.
class kernel_interpreter : public xpyt::interpreter {
public:
    explicit kernel_interpreter(output_buffer& output);
    ~kernel_interpreter() override;

    // Puts the process's own stdout and stderr back as sys.stdout/sys.stderr, so that what
    // Python writes while it finalises does not reach for a kernel that is gone.
    void restore_standard_streams();

    // Creates the IPython shell, once; later calls do nothing. On Python's main thread, before
    // any request but kernel_info_request reaches this interpreter (the server sees to that).
    void start_shell();

private:
    void configure_impl() override;

    nl::json execute_request_impl(int execution_counter, const std::string& code, bool silent, bool store_history,
                                  nl::json user_expressions, bool allow_stdin) override;

    nl::json complete_request_impl(const std::string& code, int cursor_pos) override;

    nl::json inspect_request_impl(const std::string& code, int cursor_pos, int detail_level) override;

    nl::json is_complete_request_impl(const std::string& code) override;

    nl::json kernel_info_request_impl() override;

    void install_output_streams();

    // Tracebacks in colour for a client that can answer input() (JupyterLab, a console), plain for
    // one that cannot (nbclient: nbconvert, papermill), whose errors end up in a log.
    void colour_tracebacks(bool interactive);

    output_buffer& m_output;
    bool m_shell_started = false;
    bool m_tracebacks_coloured = true;  // IPython's default scheme is a coloured one
};
}  // namespace splitbrain

#endif
