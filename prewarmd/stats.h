// Launch statistics of an app: counts, p50/p95 time to ready per mode, speedup, hit rate, recent
// fallback reasons, kept as running totals (AppTotals) updated as each launch and capture is
// recorded, so that answering costs O(apps) and not O(history); and the restore report a restored
// app's READY=1 carries.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "prewarmd/history.h"
#include "prewarmd/registry.h"

namespace prewarm {

// Bucket bounds (seconds) of the Prometheus time-to-ready histogram; counted exactly.
inline constexpr std::array<double, 11> kReadyBucketsSeconds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5, 1, 2.5, 5, 10};

// A bounded sketch of times to ready for percentiles: logarithmic buckets (bucket i holds values
// in (g^(i-1), g^i], g = 1.02), so a quantile is within kRelativeError (0.99%) of the sample the
// nearest-rank rule picks, whatever the distribution. Values are clamped to [1 us, 10^4 s] (at
// most ~1,280 buckets); only buckets that hold samples are stored.
class ReadySketch {
 public:
  static constexpr double kGamma = 1.02;
  static constexpr double kRelativeError = (kGamma - 1) / (kGamma + 1);
  static constexpr double kMinMs = 1e-3, kMaxMs = 1e7;

  void add(double ms);
  // The q-quantile (0..1) by nearest rank, within kRelativeError of the true one; NaN if empty.
  double quantile(double q) const;
  uint64_t count() const { return count_; }
  double sum_ms() const { return sum_; }
  size_t buckets() const { return buckets_.size(); }

  nlohmann::json to_json() const;
  static std::optional<ReadySketch> from_json(const nlohmann::json& j);
  bool operator==(const ReadySketch&) const = default;

 private:
  std::vector<std::pair<int32_t, uint64_t>> buckets_;  // (index, count), ascending index
  uint64_t count_ = 0;
  double sum_ = 0, min_ = 0, max_ = 0;
};

// Everything list, stats, /api/apps and /metrics say of one app, as running totals since the app
// was first recorded: pruning old history rows does not lower them (the /metrics counters are
// monotonic). A launch counts under its mode once that is settled: a cold one when it starts, a
// restore when it is ready (a refused restore counts as cold, with its fallback, when refused).
struct AppTotals {
  struct Mode {
    uint64_t launches = 0;
    ReadySketch ready;                                        // times to ready, ms
    std::array<uint64_t, kReadyBucketsSeconds.size()> le{};   // ready within each bucket bound
    bool operator==(const Mode&) const = default;
  };
  static constexpr size_t kLastFallbacks = 5;

  Mode cold, restored;
  uint64_t failed = 0;  // restores that ended past the point of no return (never ready)
  std::map<std::string, uint64_t> fallbacks;  // by kind ("stale", "refused", ...)
  std::vector<std::string> last_fallbacks;    // the reasons, newest last, at most kLastFallbacks
  uint64_t phased = 0;                        // restores that reported their phases
  RestorePhases phase_sum_ms;
  int64_t bytes_read_sum = 0;
  uint64_t captures = 0, capture_failures = 0;
  int64_t last_image_bytes = 0, image_bytes_sum = 0;
  double capture_ms_sum = 0, frozen_ms_sum = 0;

  uint64_t fallback_total() const;
  nlohmann::json to_json() const;  // the persisted form
  static std::optional<AppTotals> from_json(const nlohmann::json& j);
  bool operator==(const AppTotals&) const = default;
};

// The updates, one per recorded event (shared by the live writes and the one-time rebuild from rows).
void count_start(AppTotals& t, std::string_view mode, const std::string& fallback_kind, const std::string& fallback);
void count_fallback(AppTotals& t, const std::string& kind, const std::string& reason);
void count_ready(AppTotals& t, std::string_view mode, double ready_ms, const std::optional<RestorePhases>& phases,
                 std::optional<int64_t> bytes_read);
void count_capture(AppTotals& t, bool ok, double duration_ms, double frozen_ms, int64_t image_bytes);

// The totals of every app, shared by the daemon loop (their one writer, through History) and the
// dashboard and query threads (which read them). Readers get immutable copies of one app's totals;
// the writer replaces an app's entry whole. The readers are SCHED_IDLE threads, which a busy
// machine may not run again for a long time, so the writer never waits for the lock they take:
// it keeps its own copy, and a change it could not hand over now waits in `pending_` for the next
// put/erase or sync().
class TotalsBoard {
 public:
  using Ptr = std::shared_ptr<const AppTotals>;
  // Readers (any thread): null if nothing was recorded.
  Ptr get(const std::string& app) const;
  std::map<std::string, Ptr> all() const;
  size_t size() const;
  // The writer's thread only: its own copy, current, never waiting.
  Ptr own(const std::string& app) const;
  void put(const std::string& app, AppTotals t);
  void erase(const std::string& app);
  bool sync();  // hands over what is pending; false if some is still
  bool synced() const { return pending_.empty(); }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Ptr> apps_;  // the readers', under mu_
  std::map<std::string, Ptr> own_;   // the writer's
  std::vector<std::pair<std::string, Ptr>> pending_;  // the writer's changes not in apps_ yet (null: erased)
};

nlohmann::json app_stats(const App& app, uint64_t image_bytes, const AppTotals& totals);

// Serialized per-app answers (an app_stats object, a block of /metrics lines), each rebuilt only
// when what it shows changed: its totals (a new TotalsBoard entry), state, reason, image bytes or
// the viewer's view of it. A query over every app then costs about a concatenation. One owner
// thread per cache; entries of apps not asked for since the previous sweep() are dropped.
template <typename T>
class PartCache {
 public:
  struct Stamp {
    TotalsBoard::Ptr totals;  // held, so a freed entry's address cannot come back as a match
    std::string state, reason;
    uint64_t image_bytes = 0;
    bool details = true;
    uint64_t images = 0, generation = 0;  // what `list` also shows: image count, App::generation
    bool operator==(const Stamp&) const = default;
  };
  template <typename Build>
  const T& get(const std::string& app, Stamp stamp, Build build) {
    Entry& e = entries_[app];
    e.used = true;
    if (!e.valid || !(e.stamp == stamp)) {
      e.text = build();
      e.stamp = std::move(stamp);
      e.valid = true;
    }
    return e.text;
  }
  void sweep() {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (!it->second.used) {
        it = entries_.erase(it);
      } else {
        it->second.used = false;
        ++it;
      }
    }
  }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Stamp stamp;
    T text;
    bool valid = false, used = false;
  };
  std::map<std::string, Entry> entries_;
};
using TextCache = PartCache<std::string>;
nlohmann::json to_json(const LaunchRow& r);
nlohmann::json to_json(const SnapshotRow& r);

// The q-quantile (0..1) of `v` by nearest rank; NaN if empty.
double quantile(std::vector<double> v, double q);

// What the launcher and the restorer blob wrote into the readiness message of a restore
// (snapshot/ready_message.h): the phases from the launch's start `t0_ns`. Missing, malformed or
// out of order (not within [t0_ns, now_ns]): none.
struct RestoreReport {
  int64_t resumed_ns = 0;
  RestorePhases phases;
  int64_t bytes_read = 0;
};
std::optional<RestoreReport> parse_restore_report(std::string_view message, int64_t t0_ns, int64_t now_ns);

}  // namespace prewarm
