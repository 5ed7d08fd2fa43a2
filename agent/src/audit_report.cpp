#include "audit_report.hpp"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

namespace splitbrain::agent {

namespace fs = std::filesystem;

namespace {

// "90s", "10m", "1h", "2d" (a bare number is seconds); nullopt if it is none of these.
std::optional<double> parse_duration(const std::string& text) {
    if (text.empty()) return std::nullopt;
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !(value >= 0)) return std::nullopt;
    const std::string unit(end);
    if (unit.empty() || unit == "s") return value;
    if (unit == "m") return value * 60;
    if (unit == "h") return value * 3600;
    if (unit == "d") return value * 86400;
    return std::nullopt;
}

// "2026-12-01T14:02:03.123Z" as seconds since the epoch; nullopt if it is not that.
std::optional<double> parse_time(const std::string& text) {
    std::tm tm{};
    int millis = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec, &millis) != 7) {
        return std::nullopt;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<double>(::timegm(&tm)) + millis / 1000.0;
}

std::string cell(const nlohmann::json& entry, const char* field) {
    const auto found = entry.find(field);
    if (found == entry.end()) return "";
    return found->is_string() ? found->get<std::string>() : found->dump();
}

}  // namespace

int audit_command(const std::vector<std::string>& args, const std::string& default_path) {
    fs::path path = default_path;
    std::optional<double> since;
    bool as_json = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                std::cerr << "splitbrain-agent: " << args[i] << " needs a value\n";
                std::exit(2);
            }
            return args[++i];
        };
        if (args[i] == "--audit-log") {
            path = value();
        } else if (args[i] == "--since") {
            const std::string text = value();
            since = parse_duration(text);
            if (!since) {
                std::cerr << "splitbrain-agent: --since needs a duration (90s, 10m, 1h, 2d), not '" << text << "'\n";
                return 2;
            }
        } else if (args[i] == "--json") {
            as_json = true;
        } else {
            std::cerr << "splitbrain-agent: unexpected argument '" << args[i]
                      << "' to audit\nTry 'splitbrain-agent --help'.\n";
            return 2;
        }
    }
    std::vector<fs::path> files;  // oldest first: PATH.K … PATH.1, PATH
    for (unsigned n = 1; n < 10000 && fs::exists(path.string() + "." + std::to_string(n)); ++n) {
        files.insert(files.begin(), path.string() + "." + std::to_string(n));
    }
    if (!fs::exists(path)) {
        std::cerr << "splitbrain-agent: no audit log at " << path.string()
                  << " (start the agent with --audit-log PATH, or name it here with --audit-log)\n";
        return 1;
    }
    files.push_back(path);
    const double cutoff = since ? static_cast<double>(std::time(nullptr)) - *since : 0;
    if (!as_json) {
        std::printf("%-24s %-20s %-12s %-8s %-40s %-16s %9s\n", "TIME", "KEY", "SESSION", "OP", "TARGET", "OUTCOME",
                    "MS");
    }
    for (const auto& file : files) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            const auto entry = nlohmann::json::parse(line, nullptr, false);
            if (entry.is_discarded() || !entry.is_object()) continue;  // a line cut short by a crash
            const auto time = parse_time(cell(entry, "time"));
            if (!time || *time < cutoff) continue;
            if (as_json) {
                std::cout << line << "\n";
                continue;
            }
            std::printf("%-24s %-20s %-12s %-8s %-40s %-16s %9s\n", cell(entry, "time").c_str(),
                        cell(entry, "key").substr(0, 20).c_str(), cell(entry, "session").c_str(),
                        cell(entry, "op").c_str(), cell(entry, "target").substr(0, 40).c_str(),
                        cell(entry, "outcome").c_str(), cell(entry, "ms").c_str());
        }
    }
    return 0;
}

}  // namespace splitbrain::agent
