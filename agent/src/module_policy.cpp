#include "module_policy.hpp"

#include <algorithm>

namespace splitbrain::agent {

namespace {

// "os" covers "os" and "os.path", not "osx".
bool covers(const std::string& module, const std::string& name) {
    return name == module ||
           (name.size() > module.size() && name.compare(0, module.size(), module) == 0 && name[module.size()] == '.');
}

std::vector<std::string> names_of(const splitcore::json& list) {
    std::vector<std::string> names;
    if (!list.is_array()) return names;
    for (const auto& item : list) {
        if (item.is_string()) names.push_back(item.get<std::string>());
    }
    return names;
}

}  // namespace

void module_policy::set(const splitcore::json* limits) {
    m_who.clear();
    m_allow.reset();
    m_deny.clear();
    if (limits == nullptr || !limits->is_object()) return;
    m_who = limits->value("who", std::string());
    if (const auto allow = limits->find("allow"); allow != limits->end() && allow->is_array())
        m_allow = names_of(*allow);
    if (const auto deny = limits->find("deny"); deny != limits->end()) m_deny = names_of(*deny);
}

void module_policy::check(const std::string& name) const {
    auto is_covered = [&](const std::vector<std::string>& modules) {
        return std::any_of(modules.begin(), modules.end(), [&](const std::string& m) { return covers(m, name); });
    };
    if (is_covered(m_deny)) {
        throw splitcore::error(splitcore::errc::module_refused,
                               "key " + m_who + " may not use module " + name +
                                   " on this agent (deny-modules= in its authorized_keys line)");
    }
    if (m_allow && !is_covered(*m_allow)) {
        std::string allowed;
        for (const auto& m : *m_allow) allowed += (allowed.empty() ? "" : ",") + m;
        throw splitcore::error(splitcore::errc::module_refused, "key " + m_who + " may not use module " + name +
                                                                    " on this agent; its allow-modules=\"" + allowed +
                                                                    "\" in authorized_keys does not name it");
    }
}

}  // namespace splitbrain::agent
