#include "log.hpp"

#include <ctime>
#include <unistd.h>

namespace splitbrain::agent {
namespace {
const char* log_name = "splitbrain-agent";
int log_fd = 2;
}  // namespace

void set_log(const char* name, int fd) {
    log_name = name;
    log_fd = fd;
}

void log(const std::string& message) {
    char stamp[32] = {};
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &utc);
    const std::string line =
        std::string(log_name) + "[" + std::to_string(::getpid()) + "] " + stamp + " " + message + "\n";
    (void)!::write(log_fd, line.data(), line.size());  // one write: lines from several processes stay whole
}

}  // namespace splitbrain::agent
