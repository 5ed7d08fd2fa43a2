// The modules a session's client key may name (its allow-modules= / deny-modules= options in the
// agent's authorized_keys), as the supervisor tells the worker in the session's hello. It governs
// what the client asks for by name (import, box.run's modules), not what those modules import
// themselves: pyvisa may use ctypes for a key denied ctypes. It is a policy, not a sandbox.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "splitcore/protocol.hpp"

namespace splitbrain::agent {

class module_policy {
public:
    // From the hello's "limits" field ({who, allow: [names] or null, deny: [names]}); null: no limits.
    void set(const splitcore::json* limits);
    // Throws splitcore::error(module_refused) unless `name` ("os.path") may be used: no prefix of it
    // is denied and, with an allow list, some prefix of it is allowed.
    void check(const std::string& name) const;

private:
    std::string m_who;
    std::optional<std::vector<std::string>> m_allow;
    std::vector<std::string> m_deny;
};

}  // namespace splitbrain::agent
