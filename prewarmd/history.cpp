#include "prewarmd/history.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

#include "prewarmd/stats.h"

namespace prewarm {
namespace {

using json_doc = nlohmann::json;

constexpr const char* kSchema = R"sql(
CREATE TABLE launches(
  id INTEGER PRIMARY KEY,
  app TEXT NOT NULL,
  uid INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('cold', 'restored')),
  fallback TEXT,
  fallback_kind TEXT,
  ready_ms REAL,
  validate_ms REAL, read_ms REAL, map_ms REAL, resume_ms REAL,
  bytes_read INTEGER);
CREATE INDEX launches_by_app ON launches(app, id);
CREATE TABLE snapshots(
  id INTEGER PRIMARY KEY,
  app TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  frozen_ms REAL NOT NULL,
  image_bytes INTEGER NOT NULL,
  error TEXT);
CREATE INDEX snapshots_by_app ON snapshots(app, id);
)sql";

// Version 2: each app's running totals (AppTotals::to_json), written with every row they count.
constexpr const char* kTotalsSchema = "CREATE TABLE app_totals(app TEXT PRIMARY KEY, totals TEXT NOT NULL);";

// One prepared statement; finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
  Stmt& bind(int i, const std::string& v) { return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT)); }
  Stmt& bind_text_or_null(int i, const std::string& v) { return v.empty() ? check(sqlite3_bind_null(s_, i)) : bind(i, v); }
  template <typename T>
  Stmt& bind(int i, const std::optional<T>& v) { return v ? bind(i, *v) : check(sqlite3_bind_null(s_, i)); }

  // SQLITE_ROW, SQLITE_DONE, or the error of preparing, binding or stepping.
  int step() { return rc_ == SQLITE_OK ? sqlite3_step(s_) : rc_; }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double real(int c) const { return sqlite3_column_double(s_, c); }
  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::optional<double> opt_real(int c) const { return null(c) ? std::nullopt : std::optional<double>(real(c)); }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
  }

 private:
  Stmt& check(int rc) {
    if (rc_ == SQLITE_OK && rc != SQLITE_OK) rc_ = rc;
    return *this;
  }
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

// Steps `s` to its end, appending row(s) for each result row; false on an error.
template <typename T, typename F>
bool collect(Stmt& s, std::vector<T>& out, F row) {
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(row(s));
  return rc == SQLITE_DONE;
}

}  // namespace

History::~History() { sqlite3_close_v2(db_); }

History& History::operator=(History&& o) noexcept {
  if (this != &o) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(o.db_, nullptr);
    limits_ = o.limits_;
    totals_ = std::move(o.totals_);
  }
  return *this;
}

Error History::db_error(const std::string& what) const {
  return data_error("history database: " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
}

Result<void> History::exec(const char* sql) const {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return ok();
  std::string m = msg ? msg : "unknown error";
  sqlite3_free(msg);
  return data_error("history database: " + m);
}

namespace {

Result<sqlite3*> open_db(const std::string& path, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return data_error("cannot open the history database " + path + ": " + m);
  }
  sqlite3_busy_timeout(db, 2000);
  sqlite3_extended_result_codes(db, 1);
  return db;
}

}  // namespace

Result<int64_t> History::user_version(const std::string& path) const {
  Stmt v(db_, "PRAGMA user_version");
  if (v.step() != SQLITE_ROW) return db_error("read the schema version of " + path);
  return v.i64(0);
}

Result<History> History::open(const std::string& path, Limits limits) {
  // Timings are not secrets, but the app names and fallback reasons are the users' business.
  const mode_t old = ::umask(077);
  auto db = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  ::umask(old);
  if (!db) return db.error();
  History h(*db, limits);
  // The first statement that reads the file tells a database from anything else.
  PW_ASSIGN(const int64_t version, h.user_version(path));
  if (version != 0 && version != 1 && version != kSchemaVersion)
    return data_error("history database " + path + " has schema version " + std::to_string(version) +
                      ", which this prewarmd does not know (it writes " + std::to_string(kSchemaVersion) + ")");
  if (version == 0) {
    int64_t tables = 0;
    {
      Stmt t(h.db_, "SELECT count(*) FROM sqlite_master");
      if (t.step() != SQLITE_ROW) return h.db_error("inspect " + path);
      tables = t.i64(0);
    }
    if (tables != 0) return data_error("history database " + path + " has tables but no schema version");
  }
  // Only now that the file is known to be ours (or empty) may anything be written to it.
  PW_TRY(h.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
  if (version == 0) {
    PW_TRY(h.exec("BEGIN"));
    auto r = h.exec(kSchema);
    if (r) r = h.exec(kTotalsSchema);
    if (!r) {
      (void)h.exec("ROLLBACK");
      return r.error();
    }
    PW_TRY(h.exec("PRAGMA user_version=2; COMMIT"));
  } else if (version == 1) {
    PW_TRY(h.migrate_to_2());
  }
  h.totals_ = std::make_shared<TotalsBoard>();
  PW_TRY(h.load_totals());
  return h;
}

// The totals of a version 1 file, from its rows, once: what they say is all that is known of the
// launches already pruned.
Result<void> History::migrate_to_2() {
  std::map<std::string, AppTotals> all;
  PW_TRY(exec("BEGIN IMMEDIATE"));
  auto fail = [this](Error e) {
    (void)exec("ROLLBACK");
    return e;
  };
  if (auto r = exec(kTotalsSchema); !r) return fail(r.error());
  {
    Stmt s(db_,
           "SELECT app, mode, fallback_kind, fallback, ready_ms, validate_ms, read_ms, map_ms, resume_ms, bytes_read"
           " FROM launches ORDER BY id");
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      AppTotals& t = all[s.text(0)];
      const std::string mode = s.text(1);
      count_start(t, mode, s.text(2), s.text(3));
      if (s.null(4)) continue;
      std::optional<RestorePhases> phases;
      if (!s.null(5)) phases = RestorePhases{s.real(5), s.real(6), s.real(7), s.real(8)};
      std::optional<int64_t> bytes;
      if (!s.null(9)) bytes = s.i64(9);
      count_ready(t, mode, s.real(4), phases, bytes);
    }
    if (rc != SQLITE_DONE) return fail(db_error("read the launches to total them"));
  }
  {
    Stmt s(db_, "SELECT app, ok, duration_ms, frozen_ms, image_bytes FROM snapshots ORDER BY id");
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) count_capture(all[s.text(0)], s.i64(1) != 0, s.real(2), s.real(3), s.i64(4));
    if (rc != SQLITE_DONE) return fail(db_error("read the snapshots to total them"));
  }
  for (const auto& [app, t] : all)
    if (auto r = write_totals(app, t); !r) return fail(r.error());
  if (auto r = exec("PRAGMA user_version=2; COMMIT"); !r) return fail(r.error());
  return ok();
}

Result<void> History::load_totals() {
  Stmt s(db_, "SELECT app, totals FROM app_totals");
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    const json_doc j = json_doc::parse(s.text(1), nullptr, false);
    auto t = j.is_discarded() ? std::nullopt : AppTotals::from_json(j);
    if (!t) return data_error("history database: the totals of " + s.text(0) + " are damaged");
    totals_->put(s.text(0), std::move(*t));
  }
  if (rc != SQLITE_DONE) return db_error("load the totals");
  return ok();
}

Result<void> History::write_totals(const std::string& app, const AppTotals& t) {
  Stmt s(db_, "INSERT INTO app_totals(app, totals) VALUES (?1, ?2) ON CONFLICT(app) DO UPDATE SET totals = excluded.totals");
  if (s.bind(1, app).bind(2, t.to_json().dump()).step() != SQLITE_DONE) return db_error("record the totals of " + app);
  return ok();
}

bool History::sync_totals() { return !totals_ || totals_->sync(); }

template <typename F>
Result<void> History::with_totals(const std::string& app, F body) {
  if (!totals_) return data_error("history database: opened for reading only");
  const auto current = totals_->own(app);
  AppTotals t = current ? *current : AppTotals{};
  PW_TRY(exec("BEGIN IMMEDIATE"));
  Result<void> r = body(t);
  if (r) r = write_totals(app, t);
  if (r) r = exec("COMMIT");
  if (!r) {
    (void)exec("ROLLBACK");
    return r;
  }
  totals_->put(app, std::move(t));
  return ok();
}

namespace {

// The app, mode and readiness of launch `id`, if it is still in the history (one lookup by key).
struct LaunchState {
  std::string app, mode;
  bool ready = false;
};

std::optional<LaunchState> launch_state(sqlite3* db, int64_t id) {
  Stmt s(db, "SELECT app, mode, ready_ms IS NOT NULL FROM launches WHERE id = ?1");
  if (s.bind(1, id).step() != SQLITE_ROW) return std::nullopt;
  return LaunchState{s.text(0), s.text(1), s.i64(2) != 0};
}

}  // namespace

Result<History> History::open_reader(const std::string& path) {
  auto db = open_db(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
  if (!db) return db.error();
  History h(*db, Limits{});
  PW_ASSIGN(const int64_t version, h.user_version(path));
  if (version != kSchemaVersion)
    return data_error("history database " + path + " has schema version " + std::to_string(version) + ", not " +
                      std::to_string(kSchemaVersion));
  return h;
}

Result<int64_t> History::add_launch(const LaunchRow& r) {
  int64_t id = 0;
  PW_TRY(with_totals(r.app, [&](AppTotals& t) -> Result<void> {
    Stmt s(db_,
           "INSERT INTO launches(app, uid, time_ms, pid, mode, fallback, ready_ms, validate_ms, read_ms, map_ms, resume_ms,"
           " bytes_read, fallback_kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
    s.bind(1, r.app).bind(2, static_cast<int64_t>(r.uid)).bind(3, r.time_ms).bind(4, static_cast<int64_t>(r.pid));
    s.bind(5, r.mode).bind_text_or_null(6, r.fallback).bind(7, r.ready_ms);
    for (int i = 0; i < 4; ++i) {
      std::optional<double> v;
      if (r.phases) v = i == 0 ? r.phases->validate_ms : i == 1 ? r.phases->read_ms : i == 2 ? r.phases->map_ms : r.phases->resume_ms;
      s.bind(8 + i, v);
    }
    s.bind(12, r.bytes_read).bind_text_or_null(13, r.fallback_kind);
    if (s.step() != SQLITE_DONE) return db_error("record a launch of " + r.app);
    id = sqlite3_last_insert_rowid(db_);
    // Trimming by key costs one range delete; the totals keep what the pruned rows counted.
    Stmt trim(db_, "DELETE FROM launches WHERE id <= ?1");
    if (trim.bind(1, id - limits_.launches).step() != SQLITE_DONE) return db_error("trim the launch history");
    count_start(t, r.mode, r.fallback_kind, r.fallback);
    if (r.ready_ms) count_ready(t, r.mode, *r.ready_ms, r.phases, r.bytes_read);
    return ok();
  }));
  return id;
}

Result<void> History::set_fallback(int64_t id, const std::string& kind, const std::string& reason) {
  const auto was = launch_state(db_, id);
  if (!was) return ok();  // pruned already: nothing left to change or count
  return with_totals(was->app, [&](AppTotals& t) -> Result<void> {
    Stmt s(db_, "UPDATE launches SET mode = 'cold', fallback = ?2, fallback_kind = ?3 WHERE id = ?1");
    if (s.bind(1, id).bind(2, reason).bind(3, kind).step() != SQLITE_DONE) return db_error("record a fallback");
    // Only a restore not yet counted becomes a cold launch; anything else is counted already.
    if (was->mode == "restored" && !was->ready) count_fallback(t, kind, reason);
    return ok();
  });
}

Result<void> History::set_failed(int64_t id) {
  const auto was = launch_state(db_, id);
  if (!was) return ok();
  // The row stays a restore that never became ready (the reason is in the log); the totals,
  // which /metrics and `prewarm stats` show, count it as failed, once.
  if (was->mode != "restored" || was->ready) return ok();
  return with_totals(was->app, [&](AppTotals& t) -> Result<void> {
    t.failed++;
    return ok();
  });
}

Result<void> History::set_ready(int64_t id, double ready_ms, const std::optional<RestorePhases>& p,
                                std::optional<int64_t> bytes_read) {
  const auto was = launch_state(db_, id);
  if (!was) return ok();
  return with_totals(was->app, [&](AppTotals& t) -> Result<void> {
    Stmt s(db_,
           "UPDATE launches SET ready_ms = ?2, validate_ms = ?3, read_ms = ?4, map_ms = ?5, resume_ms = ?6,"
           " bytes_read = ?7 WHERE id = ?1");
    s.bind(1, id).bind(2, ready_ms);
    s.bind(3, p ? std::optional(p->validate_ms) : std::nullopt).bind(4, p ? std::optional(p->read_ms) : std::nullopt);
    s.bind(5, p ? std::optional(p->map_ms) : std::nullopt).bind(6, p ? std::optional(p->resume_ms) : std::nullopt);
    s.bind(7, bytes_read);
    if (s.step() != SQLITE_DONE) return db_error("record a time to ready");
    if (!was->ready) count_ready(t, was->mode, ready_ms, p, bytes_read);
    return ok();
  });
}

Result<int64_t> History::add_snapshot(const SnapshotRow& r) {
  int64_t id = 0;
  PW_TRY(with_totals(r.app, [&](AppTotals& t) -> Result<void> {
    Stmt s(db_,
           "INSERT INTO snapshots(app, time_ms, ok, duration_ms, frozen_ms, image_bytes, error)"
           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    s.bind(1, r.app).bind(2, r.time_ms).bind(3, static_cast<int64_t>(r.ok)).bind(4, r.duration_ms);
    s.bind(5, r.frozen_ms).bind(6, r.image_bytes).bind_text_or_null(7, r.error);
    if (s.step() != SQLITE_DONE) return db_error("record a snapshot of " + r.app);
    id = sqlite3_last_insert_rowid(db_);
    Stmt trim(db_, "DELETE FROM snapshots WHERE id <= ?1");
    if (trim.bind(1, id - limits_.snapshots).step() != SQLITE_DONE) return db_error("trim the snapshot history");
    count_capture(t, r.ok, r.duration_ms, r.frozen_ms, r.image_bytes);
    return ok();
  }));
  return id;
}

Result<void> History::forget(const std::string& app) {
  PW_TRY(exec("BEGIN IMMEDIATE"));
  Stmt a(db_, "DELETE FROM launches WHERE app = ?1");
  Stmt b(db_, "DELETE FROM snapshots WHERE app = ?1");
  Stmt c(db_, "DELETE FROM app_totals WHERE app = ?1");
  if (a.bind(1, app).step() != SQLITE_DONE || b.bind(1, app).step() != SQLITE_DONE ||
      c.bind(1, app).step() != SQLITE_DONE || !exec("COMMIT")) {
    const Error e = db_error("forget " + app);
    (void)exec("ROLLBACK");
    return e;
  }
  if (totals_) totals_->erase(app);
  return ok();
}

namespace {

constexpr const char* kLaunchColumns =
    "id, app, uid, time_ms, pid, mode, fallback, ready_ms, validate_ms, read_ms, map_ms, resume_ms, bytes_read, fallback_kind";

LaunchRow launch_row(Stmt& q) {
  LaunchRow r;
  r.id = q.i64(0);
  r.app = q.text(1);
  r.uid = static_cast<uid_t>(q.i64(2));
  r.time_ms = q.i64(3);
  r.pid = static_cast<pid_t>(q.i64(4));
  r.mode = q.text(5);
  r.fallback = q.text(6);
  r.ready_ms = q.opt_real(7);
  if (!q.null(8)) r.phases = RestorePhases{q.real(8), q.real(9), q.real(10), q.real(11)};
  if (!q.null(12)) r.bytes_read = q.i64(12);
  r.fallback_kind = q.text(13);
  return r;
}

int64_t page_before(int64_t before) { return before > 0 ? before : INT64_MAX; }
int64_t page_limit(size_t limit) { return static_cast<int64_t>(std::min(limit, History::kMaxPage)); }

}  // namespace

Result<std::vector<LaunchRow>> History::launches(const std::string& app, size_t limit) const {
  Stmt s(db_, (std::string("SELECT * FROM (SELECT ") + kLaunchColumns +
               " FROM launches WHERE app = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id").c_str());
  s.bind(1, app).bind(2, static_cast<int64_t>(limit));
  std::vector<LaunchRow> out;
  if (!collect(s, out, launch_row)) return db_error("read the launches of " + app);
  return out;
}

Result<std::vector<LaunchRow>> History::launch_page(const std::string& app, int64_t before, size_t limit) const {
  // The index (app, id) walked backwards from `before`: the cost is the page, not the history.
  Stmt s(db_, (std::string("SELECT ") + kLaunchColumns +
               " FROM launches WHERE app = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3").c_str());
  s.bind(1, app).bind(2, page_before(before)).bind(3, page_limit(limit));
  std::vector<LaunchRow> out;
  if (!collect(s, out, launch_row)) return db_error("read the launches of " + app);
  return out;
}

Result<std::vector<SnapshotRow>> History::snapshot_page(const std::string& app, int64_t before, size_t limit) const {
  Stmt s(db_,
         "SELECT id, app, time_ms, ok, duration_ms, frozen_ms, image_bytes, error FROM snapshots"
         " WHERE app = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3");
  s.bind(1, app).bind(2, page_before(before)).bind(3, page_limit(limit));
  std::vector<SnapshotRow> out;
  if (!collect(s, out, [](Stmt& r) {
        return SnapshotRow{r.i64(0), r.text(1), r.i64(2), r.i64(3) != 0, r.real(4), r.real(5), r.i64(6), r.text(7)};
      }))
    return db_error("read the snapshots of " + app);
  return out;
}

Result<std::vector<SnapshotRow>> History::snapshots(const std::string& app, size_t limit) const {
  Stmt s(db_,
         "SELECT * FROM (SELECT id, app, time_ms, ok, duration_ms, frozen_ms, image_bytes, error FROM snapshots"
         " WHERE app = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id");
  s.bind(1, app).bind(2, static_cast<int64_t>(limit));
  std::vector<SnapshotRow> out;
  if (!collect(s, out, [](Stmt& r) {
        return SnapshotRow{r.i64(0), r.text(1), r.i64(2), r.i64(3) != 0, r.real(4), r.real(5), r.i64(6), r.text(7)};
      }))
    return db_error("read the snapshots of " + app);
  return out;
}

Result<std::vector<std::pair<std::string, uint64_t>>> History::fallback_counts(const std::string& app) const {
  Stmt s(db_, "SELECT fallback_kind, count(*) FROM launches WHERE app = ?1 AND fallback_kind IS NOT NULL GROUP BY 1 ORDER BY 1");
  s.bind(1, app);
  std::vector<std::pair<std::string, uint64_t>> out;
  if (!collect(s, out, [](Stmt& r) { return std::pair{r.text(0), static_cast<uint64_t>(r.i64(1))}; }))
    return db_error("count the fallbacks of " + app);
  return out;
}

Result<std::vector<std::pair<std::string, double>>> History::ready_times(const std::string& app) const {
  Stmt s(db_, "SELECT mode, ready_ms FROM launches WHERE app = ?1 AND ready_ms IS NOT NULL");
  s.bind(1, app);
  std::vector<std::pair<std::string, double>> out;
  if (!collect(s, out, [](Stmt& r) { return std::pair{r.text(0), r.real(1)}; }))
    return db_error("read the times to ready of " + app);
  return out;
}

Result<AppSummary> History::summary(const std::string& app) const {
  AppSummary sum;
  Stmt counts(db_,
              "SELECT count(*) FILTER (WHERE mode = 'cold'), count(*) FILTER (WHERE mode = 'restored'),"
              " count(*) FILTER (WHERE fallback_kind IS NOT NULL) FROM launches WHERE app = ?1");
  if (counts.bind(1, app).step() != SQLITE_ROW) return db_error("count the launches of " + app);
  sum.cold = static_cast<uint64_t>(counts.i64(0));
  sum.restored = static_cast<uint64_t>(counts.i64(1));
  sum.fallbacks = static_cast<uint64_t>(counts.i64(2));
  Stmt caps(db_, "SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok) FROM snapshots WHERE app = ?1");
  if (caps.bind(1, app).step() != SQLITE_ROW) return db_error("count the snapshots of " + app);
  sum.captures = static_cast<uint64_t>(caps.i64(0));
  sum.capture_failures = static_cast<uint64_t>(caps.i64(1));
  for (const char* mode : {"cold", "restored"}) {
    Stmt s(db_, "SELECT ready_ms FROM launches WHERE app = ?1 AND mode = ?2 AND ready_ms IS NOT NULL ORDER BY id DESC LIMIT ?3");
    s.bind(1, app).bind(2, std::string(mode)).bind(3, static_cast<int64_t>(kSampleLaunches));
    auto& v = mode[0] == 'c' ? sum.cold_ready_ms : sum.restored_ready_ms;
    if (!collect(s, v, [](Stmt& r) { return r.real(0); })) return db_error("read the times to ready of " + app);
  }
  Stmt f(db_, "SELECT fallback FROM (SELECT id, fallback FROM launches WHERE app = ?1 AND fallback IS NOT NULL ORDER BY id DESC LIMIT 5) ORDER BY id");
  f.bind(1, app);
  if (!collect(f, sum.last_fallbacks, [](Stmt& r) { return r.text(0); })) return db_error("read the fallbacks of " + app);
  return sum;
}

}  // namespace prewarm
