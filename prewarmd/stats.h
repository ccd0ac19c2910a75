// Launch statistics of an app from its recent launches: counts, p50/p95 time to ready per mode,
// speedup, hit rate, recent fallback reasons.
#pragma once

#include <nlohmann/json.hpp>

#include "prewarmd/registry.h"

namespace prewarm {

nlohmann::json app_stats(const App& app, uint64_t image_bytes);

// The q-quantile (0..1) of `v` by nearest rank; NaN if empty.
double quantile(std::vector<double> v, double q);

}  // namespace prewarm
