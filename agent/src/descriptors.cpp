#include "descriptors.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace splitbrain::agent {
namespace {

std::vector<int> placeholders;  // main thread only

}  // namespace

void reserve_low_descriptors() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 4 * reserved_floor) {
        limit.rlim_cur =
            limit.rlim_max == RLIM_INFINITY ? 4 * reserved_floor : std::min<rlim_t>(limit.rlim_max, 4 * reserved_floor);
        (void)::setrlimit(RLIMIT_NOFILE, &limit);
    }
    // One open, then copies of it: a dup costs a fifth of an open (no path to look up), and a
    // session's hello that offers a direct port reserves them again (issue 11 point 4).
    const int first = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (first < 0) return;
    if (first >= reserved_floor) {
        ::close(first);
        return;
    }
    placeholders.push_back(first);
    for (;;) {
        const int fd = ::fcntl(first, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return;
        if (fd >= reserved_floor) {
            ::close(fd);
            return;
        }
        placeholders.push_back(fd);
    }
}

void release_low_descriptors() {
    for (const int fd : placeholders) ::close(fd);
    placeholders.clear();
}

}  // namespace splitbrain::agent
