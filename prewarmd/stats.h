// Launch statistics of an app from its history: counts, p50/p95 time to ready per mode, speedup,
// hit rate, recent fallback reasons; and the restore report a restored app's READY=1 carries.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "prewarmd/history.h"
#include "prewarmd/registry.h"

namespace prewarm {

nlohmann::json app_stats(const App& app, uint64_t image_bytes, const AppSummary& summary);
nlohmann::json to_json(const LaunchRow& r);
nlohmann::json to_json(const SnapshotRow& r);

// The q-quantile (0..1) of `v` by nearest rank; NaN if empty.
double quantile(std::vector<double> v, double q);

// What the launcher and the restorer blob wrote into the readiness message of a restore
// (PREWARM_VALIDATED_NS, _READ_NS, _MAPPED_NS, _RESUMED_NS, _BYTES_READ): the phases from the
// launch's start `t0_ns`. Missing, malformed or out of order (not within [t0_ns, now_ns]): none.
struct RestoreReport {
  int64_t resumed_ns = 0;
  RestorePhases phases;
  int64_t bytes_read = 0;
};
std::optional<RestoreReport> parse_restore_report(std::string_view message, int64_t t0_ns, int64_t now_ns);

// `message` without its PREWARM_* lines: what goes on to systemd.
std::string without_prewarm_fields(std::string_view message);

}  // namespace prewarm
