// `splitbrain-agent audit`: prints the audit log (its rotated files too) as a table or JSON lines.
#pragma once

#include <string>
#include <vector>

namespace splitbrain::agent {

// args: [--audit-log PATH] [--since DURATION] [--json]; returns the exit status.
int audit_command(const std::vector<std::string>& args, const std::string& default_path);

}  // namespace splitbrain::agent
