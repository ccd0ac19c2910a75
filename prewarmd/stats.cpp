#include "prewarmd/stats.h"

#include <algorithm>
#include <cmath>

namespace prewarm {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  q = std::clamp(q, 0.0, 1.0);
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

nlohmann::json app_stats(const App& app, uint64_t image_bytes) {
  std::vector<double> cold, restored;
  nlohmann::json fallbacks = nlohmann::json::array(), recent = nlohmann::json::array();
  for (const auto& r : app.status.recent) {
    if (r.ready_ms >= 0) (r.mode == "restored" ? restored : cold).push_back(r.ready_ms);
    if (!r.fallback.empty()) fallbacks.push_back(r.fallback);
    recent.push_back(to_json(r));
  }
  while (fallbacks.size() > 5) fallbacks.erase(fallbacks.begin());
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  const double c50 = quantile(cold, 0.5), r50 = quantile(restored, 0.5);
  const uint64_t total = app.status.cold + app.status.restored;
  return {{"name", app.config.name},
          {"state", app.status.state},
          {"reason", app.status.reason},
          {"launches", {{"cold", app.status.cold}, {"restored", app.status.restored}, {"fallbacks", app.status.fallbacks}}},
          {"cold_ready_ms", {{"p50", num(c50)}, {"p95", num(quantile(cold, 0.95))}, {"n", cold.size()}}},
          {"restored_ready_ms", {{"p50", num(r50)}, {"p95", num(quantile(restored, 0.95))}, {"n", restored.size()}}},
          {"speedup", num(c50 / r50)},
          {"hit_rate", total ? nlohmann::json(static_cast<double>(app.status.restored) / static_cast<double>(total)) : nlohmann::json(nullptr)},
          {"image_bytes", image_bytes},
          {"captures", app.status.captures},
          {"capture_failures", app.status.capture_failures},
          {"last_fallbacks", fallbacks},
          {"recent", recent}};
}

}  // namespace prewarm
