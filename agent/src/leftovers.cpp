#include "leftovers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace splitbrain::agent {

namespace {

// The children of `task` (a thread), from /proc/<pid>/task/<task>/children.
std::set<pid_t> children_of_task(pid_t pid, pid_t task) {
    const std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(task) + "/children";
    std::set<pid_t> children;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return children;
    std::string text;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    const char* cursor = text.c_str();
    char* end = nullptr;
    for (long pid; (pid = std::strtol(cursor, &end, 10)), end != cursor; cursor = end)
        children.insert(static_cast<pid_t>(pid));
    return children;
}

// Every process below `pid` (children of each of its threads), depth first.
void add_descendants(pid_t pid, std::set<pid_t>& into) {
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = ::opendir(tasks.c_str());
    if (dir == nullptr) return;
    std::vector<pid_t> found;
    while (const dirent* entry = ::readdir(dir)) {
        const long task = std::strtol(entry->d_name, nullptr, 10);
        if (task <= 0) continue;
        for (const pid_t child : children_of_task(pid, static_cast<pid_t>(task))) found.push_back(child);
    }
    ::closedir(dir);
    for (const pid_t child : found) {
        if (into.insert(child).second) add_descendants(child, into);
    }
}

bool is_zombie(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;  // gone
    char text[512];
    const ssize_t n = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (n <= 0) return true;
    text[n] = '\0';
    const char* paren = std::strrchr(text, ')');
    return paren == nullptr || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
}

}  // namespace

std::set<pid_t> children_of_main_thread() {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD) return {};
    return children_of_task(::getpid(), ::getpid());
}

// A cancelled call must not leave processes behind: neither a child nobody will kill (a cancel that
// lands inside Popen.__init__, after fork, before Popen owns the child) nor what its children
// started (`sh -c "sleep 60 & wait"`: subprocess.run kills the shell, not the sleep). The cancel
// made this process a child subreaper (interrupt_state::cancel), so the orphans of the call came
// to us instead of to init: every child born during the call goes, with all below it, in rounds
// until no new orphan comes up (bounded). The children the call had forked when the cancel came
// (`forked`) are not reaped here: the Popen that may still own one reaps it (CPython's
// subprocess._cleanup). Orphans are ours to reap.
void kill_what_the_call_started(const std::set<pid_t>& before, const std::set<pid_t>& forked) {
    std::set<pid_t> killed;
    constexpr int rounds = 20;
    for (int round = 0; round < rounds; ++round) {
        std::set<pid_t> doomed;
        for (const pid_t child : children_of_task(::getpid(), ::getpid())) {
            if (before.count(child)) continue;
            doomed.insert(child);
            add_descendants(child, doomed);
        }
        bool alive = false;
        for (const pid_t pid : doomed) {
            if (is_zombie(pid)) continue;
            alive = true;
            ::kill(pid, SIGKILL);
            killed.insert(pid);
        }
        if (!alive) break;
        ::usleep(5000);  // let them die, and their orphans reach us
    }
    for (const pid_t pid : killed) {
        if (!forked.count(pid)) ::waitpid(pid, nullptr, WNOHANG);
    }
}

}  // namespace splitbrain::agent
