// Timing samples and the JSON line each figure is reported as (read by bench/wire/bench_wire.py).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace splitbench {
using bench_clock = std::chrono::steady_clock;

inline double seconds_since(bench_clock::time_point start) {
    return std::chrono::duration<double>(bench_clock::now() - start).count();
}

// Seconds per repetition; a figure is its median and the 10th/90th percentiles as the spread.
class samples {
public:
    void add(double seconds) { m_values.push_back(seconds); }
    [[nodiscard]] std::size_t size() const { return m_values.size(); }

    [[nodiscard]] double quantile(double q) const {
        if (m_values.empty()) {
            return 0.0;
        }
        std::vector<double> sorted = m_values;
        std::sort(sorted.begin(), sorted.end());
        const double pos = q * static_cast<double>(sorted.size() - 1);
        const auto lo = static_cast<std::size_t>(pos);
        const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
    }

private:
    std::vector<double> m_values;
};

// One figure per line on stdout: {"name", "kind": "latency"|"throughput", "median_s", "p10_s",
// "p90_s", "n", "bytes"}; throughput figures carry the bytes moved per repetition.
inline void report(const std::string& name, const samples& s, std::size_t bytes = 0,
                   nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json line = {{"name", name},
                           {"kind", bytes ? "throughput" : "latency"},
                           {"median_s", s.quantile(0.5)},
                           {"p10_s", s.quantile(0.1)},
                           {"p90_s", s.quantile(0.9)},
                           {"n", s.size()},
                           {"bytes", bytes}};
    line.update(extra);
    std::cout << line.dump() << std::endl;
}
}  // namespace splitbench
