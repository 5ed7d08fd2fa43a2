#ifndef SPLITBRAIN_KERNEL_HISTORY_HPP
#define SPLITBRAIN_KERNEL_HISTORY_HPP

#include <string>

#include "nlohmann/json.hpp"

#include "xeus/xhistory_manager.hpp"

namespace nl = nlohmann;

namespace splitbrain {
// Answers history_request from IPython's own history (the sqlite database ipykernel uses too),
// with real session and line numbers. xeus's in-memory manager numbers every input 1 (it reads
// execution_count from the request, which clients do not send) and replies malformed entries.
// IPython stores the inputs itself, so store_inputs does nothing.
class ipython_history final : public xeus::xhistory_manager {
private:
    void configure_impl() override;
    void store_inputs_impl(int session, int line_num, const std::string& input, const std::string& output) override;
    nl::json get_tail_impl(int n, bool raw, bool output) const override;
    nl::json get_range_impl(int session, int start, int stop, bool raw, bool output) const override;
    nl::json search_impl(const std::string& pattern, bool raw, bool output, int n, bool unique) const override;
};
}  // namespace splitbrain

#endif
