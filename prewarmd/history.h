// Launch and snapshot history in SQLite (STATE/history.db): every launch with its mode, fallback
// reason, time to ready and restore phases; every capture with its duration and image size.
// WAL mode, so the dashboard's reader thread never blocks the daemon loop's writes, and a commit
// costs no fsync. Bounded: the oldest rows go once a table holds more than its cap.
// Next to the rows, each app's running totals (table app_totals, one JSON document per app) are
// updated in the same transaction as each row and held in memory (a TotalsBoard), so nothing that
// answers list, stats or /metrics reads the rows; the rows are paged through, newest first.
#pragma once

#include <sqlite3.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

struct RestorePhases {
  double validate_ms = 0;  // launcher start to pages: ask prewarmd, load, check, open
  double read_ms = 0;      // anonymous pages read and verified into staging
  double map_ms = 0;       // plan, handoff, launcher unmapped, the app's mappings in place
  double resume_ms = 0;    // mm fields, TLS, signals, fds: until rt_sigreturn
  bool operator==(const RestorePhases&) const = default;
};

struct AppTotals;
class TotalsBoard;

struct LaunchRow {
  int64_t id = 0;
  std::string app;
  uid_t uid = 0;
  int64_t time_ms = 0;  // wall clock at the launch
  pid_t pid = 0;
  std::string mode;      // "cold" or "restored"
  // Why a launch went cold although a snapshot could have served it: a short kind for counting
  // ("capturing", "unsupported", "stale", "context", "unreadable", "refused") and the full reason.
  // Both empty for a restore and for the first launch, which had nothing to fall back from.
  std::string fallback_kind;
  std::string fallback;
  std::optional<double> ready_ms;
  std::optional<RestorePhases> phases;
  std::optional<int64_t> bytes_read;
};

struct SnapshotRow {
  int64_t id = 0;
  std::string app;
  int64_t time_ms = 0;
  bool ok = false;
  double duration_ms = 0;
  double frozen_ms = 0;
  int64_t image_bytes = 0;
  std::string error;
};

struct AppSummary {
  uint64_t cold = 0, restored = 0, fallbacks = 0;  // launches held in the history
  uint64_t captures = 0, capture_failures = 0;
  std::vector<double> cold_ready_ms, restored_ready_ms;  // the newest kSampleLaunches per mode
  std::vector<std::string> last_fallbacks;               // newest last, at most 5
};

class History {
 public:
  // 2: app_totals added (a version 1 file is migrated: totals computed once from its rows).
  static constexpr int kSchemaVersion = 2;
  static constexpr size_t kSampleLaunches = 1000;
  static constexpr size_t kMaxPage = 200;  // rows per page: bounds what one request reads

  struct Limits {
    int64_t launches = 200'000;
    int64_t snapshots = 20'000;
  };

  History() = default;
  ~History();
  History(History&& o) noexcept : db_(o.db_), limits_(o.limits_), totals_(std::move(o.totals_)) { o.db_ = nullptr; }
  History& operator=(History&& o) noexcept;
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // Creates the schema in a new file, loads every app's totals (computing them from the rows of a
  // version 1 file). A file that is not a database, or of a schema version
  // this build does not know, is an error: the caller decides whether to move it aside.
  static Result<History> open(const std::string& path, Limits limits);
  static Result<History> open(const std::string& path) { return open(path, Limits{}); }
  // A second connection for readers (the dashboard thread); never creates or migrates.
  static Result<History> open_reader(const std::string& path);

  Result<int64_t> add_launch(const LaunchRow& row);
  // The restore was refused before the point of no return: the launch went on cold.
  Result<void> set_fallback(int64_t id, const std::string& kind, const std::string& reason);
  // The restore failed past the point of no return (its process ended before it was ready): it
  // counts as a failed launch in the totals (not as a fallback). Call it once per launch.
  Result<void> set_failed(int64_t id);
  // Cold launches per fallback kind over the whole history, for /metrics.
  Result<std::vector<std::pair<std::string, uint64_t>>> fallback_counts(const std::string& app) const;
  Result<void> set_ready(int64_t id, double ready_ms, const std::optional<RestorePhases>& phases,
                         std::optional<int64_t> bytes_read);
  Result<int64_t> add_snapshot(const SnapshotRow& row);
  Result<void> forget(const std::string& app);

  // The running totals of every app this writer recorded (none for a reader): the loop and the
  // dashboard read these, never the rows.
  std::shared_ptr<const TotalsBoard> totals() const { return totals_; }
  // Hands the readers what the writer could not yet (TotalsBoard::sync); false if some is still.
  bool sync_totals();

  // One page of `app`'s launches, newest first: at most min(limit, kMaxPage) rows with an id
  // below `before` (0: from the newest). The next page is the one before the last row's id.
  Result<std::vector<LaunchRow>> launch_page(const std::string& app, int64_t before, size_t limit) const;
  Result<std::vector<SnapshotRow>> snapshot_page(const std::string& app, int64_t before, size_t limit) const;

  // The newest `limit` rows of `app`, oldest first.
  Result<std::vector<LaunchRow>> launches(const std::string& app, size_t limit) const;
  Result<std::vector<SnapshotRow>> snapshots(const std::string& app, size_t limit) const;
  // Computed from the rows (the newest kSampleLaunches per mode): a reference for tests and tools;
  // the daemon answers from totals().
  Result<AppSummary> summary(const std::string& app) const;
  // (mode, ready_ms) of every launch of `app` that became ready, for histograms.
  Result<std::vector<std::pair<std::string, double>>> ready_times(const std::string& app) const;

 private:
  explicit History(sqlite3* db, Limits limits) : db_(db), limits_(limits) {}
  Result<void> exec(const char* sql) const;
  Result<int64_t> user_version(const std::string& path) const;
  Error db_error(const std::string& what) const;
  Result<void> migrate_to_2();
  Result<void> load_totals();
  // Runs `body` (which updates `t`, the totals of `app`) and the write of `t` in one transaction;
  // on success `t` replaces the app's totals in memory.
  template <typename F>
  Result<void> with_totals(const std::string& app, F body);
  Result<void> write_totals(const std::string& app, const AppTotals& t);

  sqlite3* db_ = nullptr;
  Limits limits_;
  std::shared_ptr<TotalsBoard> totals_;
};

}  // namespace prewarm
