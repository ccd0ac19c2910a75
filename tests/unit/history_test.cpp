// Tests the launch and snapshot history on real SQLite files: the schema and its mode, every field
// and NULL round-tripping, the row-based summary and counts, the running totals behind `prewarm
// stats` and /metrics (settled counting, monotonic under pruning, kept across reopen, migrated from
// schema 1), bounded newest-first pages with a cursor, the row caps,
// a reader connection beside the writer (WAL), and that a file that is not our database is refused
// and left as it was.
#include "prewarmd/history.h"

#include "prewarmd/stats.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

LaunchRow launch(const std::string& app, const std::string& mode, std::optional<double> ready_ms = std::nullopt) {
  LaunchRow r;
  r.app = app;
  r.uid = 1000;
  r.time_ms = 1'700'000'000'000;
  r.pid = 4242;
  r.mode = mode;
  r.ready_ms = ready_ms;
  return r;
}

LaunchRow fallback_launch(const std::string& app, const std::string& kind, const std::string& reason,
                          std::optional<double> ready_ms = std::nullopt) {
  LaunchRow r = launch(app, "cold", ready_ms);
  r.fallback_kind = kind;
  r.fallback = reason;
  return r;
}

SnapshotRow snapshot(const std::string& app, bool ok, const std::string& error = "") {
  SnapshotRow s;
  s.app = app;
  s.time_ms = 1'700'000'100'000;
  s.ok = ok;
  s.duration_ms = 812.5;
  s.frozen_ms = 93.25;
  s.image_bytes = ok ? 52'428'800 : 0;
  s.error = error;
  return s;
}

std::vector<int64_t> ids_of(const std::vector<LaunchRow>& rows) {
  std::vector<int64_t> out;
  for (const auto& r : rows) out.push_back(r.id);
  return out;
}

std::vector<double> sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// A plain SQLite connection of the test's own, to set up foreign files and look inside ours.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
      ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db_);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) ADD_FAILURE() << sql << ": " << msg;
    sqlite3_free(msg);
  }
  // The first column of the first row of `sql`, as text ("" when there is no row).
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class HistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-history-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    path_ = scratch_ + "/history.db";
  }
  void TearDown() override { fs::remove_all(scratch_); }

  History open_ok(History::Limits limits = {}) {
    auto h = History::open(path_, limits);
    EXPECT_TRUE(h.ok()) << h.error().describe();
    return h.ok() ? std::move(*h) : History();
  }

  int64_t add(History& h, const LaunchRow& r) {
    auto id = h.add_launch(r);
    EXPECT_TRUE(id.ok()) << id.error().describe();
    return id.ok() ? *id : -1;
  }

  std::vector<LaunchRow> launches_of(const History& h, const std::string& app, size_t limit = 1000) {
    auto rows = h.launches(app, limit);
    EXPECT_TRUE(rows.ok()) << rows.error().describe();
    return rows.ok() ? *rows : std::vector<LaunchRow>{};
  }

  AppSummary summary_of(const History& h, const std::string& app) {
    auto s = h.summary(app);
    EXPECT_TRUE(s.ok()) << s.error().describe();
    return s.ok() ? *s : AppSummary{};
  }

  // open() must return an error naming the file and `problem`, and leave the file's bytes alone.
  void expect_refused(const std::string& what, const std::string& problem) {
    const std::string before = read_bytes(path_);
    try {
      auto h = History::open(path_);
      ASSERT_FALSE(h.ok()) << what << " was opened as a history database";
      EXPECT_NE(h.error().describe().find(path_), std::string::npos) << h.error().describe();
      EXPECT_NE(h.error().describe().find(problem), std::string::npos)
          << what << ": the error does not say '" << problem << "': " << h.error().describe();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": open threw " << e.what() << " instead of returning an error";
    }
    const std::string after = read_bytes(path_);
    if (after != before) {
      size_t at = 0;
      while (at < std::min(after.size(), before.size()) && after[at] == before[at]) ++at;
      ADD_FAILURE() << what << " was modified by the refused open: " << before.size() << " bytes before, "
                    << after.size() << " after, first difference at byte " << at;
    }
  }

  std::string scratch_, path_;
};

TEST_F(HistoryTest, OpenCreatesAPrivateSchemaVersion2EvenUnderUmask0) {
  const mode_t old = ::umask(0);
  {
    History h = open_ok();
    add(h, launch("calc", "cold", 10));  // the -wal and -shm files exist while h is open
    EXPECT_EQ(::umask(old), 0u) << "open() did not restore the caller's umask";
    EXPECT_EQ(mode_of(path_), 0600u);
    for (const char* suffix : {"-wal", "-shm"})
      if (fs::exists(path_ + suffix)) {
        EXPECT_EQ(mode_of(path_ + suffix), 0600u) << suffix;
      }
  }
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), "2");
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('launches', 'snapshots', 'app_totals')"),
            "3");
}

TEST_F(HistoryTest, OpeningTwiceKeepsTheSchemaAndRows) {
  { History h = open_ok(); add(h, launch("calc", "cold", 10)); }
  History h = open_ok();
  EXPECT_EQ(launches_of(h, "calc").size(), 1u);
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), "2");
}

TEST_F(HistoryTest, ALaunchWithoutReadinessHasNulls) {
  History h = open_ok();
  LaunchRow in = launch("calc", "cold");
  in.uid = 1234;
  in.pid = 98765;
  in.time_ms = 1'712'345'678'901;
  const int64_t id = add(h, in);
  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 1u);
  const LaunchRow& r = rows[0];
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(r.app, "calc");
  EXPECT_EQ(r.uid, 1234u);
  EXPECT_EQ(r.pid, 98765);
  EXPECT_EQ(r.time_ms, 1'712'345'678'901);
  EXPECT_EQ(r.mode, "cold");
  EXPECT_EQ(r.fallback, "");
  EXPECT_EQ(r.fallback_kind, "");
  EXPECT_FALSE(r.ready_ms.has_value());
  EXPECT_FALSE(r.phases.has_value());
  EXPECT_FALSE(r.bytes_read.has_value());
}

TEST_F(HistoryTest, SetReadyRecordsPhasesAndBytes) {
  History h = open_ok();
  const int64_t restored = add(h, launch("calc", "restored"));
  const int64_t cold = add(h, launch("calc", "cold"));
  const RestorePhases p{1.5, 20.25, 3.125, 0.5};
  ASSERT_TRUE(h.set_ready(restored, 25.375, p, 7'340'032).ok());
  ASSERT_TRUE(h.set_ready(cold, 480.0, std::nullopt, std::nullopt).ok());

  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, restored);
  EXPECT_EQ(rows[0].mode, "restored");
  ASSERT_TRUE(rows[0].ready_ms.has_value());
  EXPECT_EQ(*rows[0].ready_ms, 25.375);
  ASSERT_TRUE(rows[0].phases.has_value());
  EXPECT_EQ(rows[0].phases->validate_ms, 1.5);
  EXPECT_EQ(rows[0].phases->read_ms, 20.25);
  EXPECT_EQ(rows[0].phases->map_ms, 3.125);
  EXPECT_EQ(rows[0].phases->resume_ms, 0.5);
  ASSERT_TRUE(rows[0].bytes_read.has_value());
  EXPECT_EQ(*rows[0].bytes_read, 7'340'032);

  EXPECT_EQ(rows[1].id, cold);
  ASSERT_TRUE(rows[1].ready_ms.has_value());
  EXPECT_EQ(*rows[1].ready_ms, 480.0);
  EXPECT_FALSE(rows[1].phases.has_value());
  EXPECT_FALSE(rows[1].bytes_read.has_value());
}

TEST_F(HistoryTest, AddLaunchStoresPhasesGivenUpFront) {
  History h = open_ok();
  LaunchRow in = launch("calc", "restored", 12.0);
  in.phases = RestorePhases{1, 2, 3, 4};
  in.bytes_read = 4096;
  add(h, in);
  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_TRUE(rows[0].phases.has_value());
  EXPECT_EQ(rows[0].phases->validate_ms, 1);
  EXPECT_EQ(rows[0].phases->read_ms, 2);
  EXPECT_EQ(rows[0].phases->map_ms, 3);
  EXPECT_EQ(rows[0].phases->resume_ms, 4);
  EXPECT_EQ(rows[0].bytes_read, 4096);
}

// The launcher asks for a restore, the restore is refused before the point of no return, and the
// launch goes on cold: the row says so, with the kind and the reason.
TEST_F(HistoryTest, SetFallbackTurnsTheLaunchCold) {
  History h = open_ok();
  const int64_t id = add(h, launch("calc", "restored"));
  ASSERT_TRUE(h.set_fallback(id, "stale", "/usr/lib/libfoo.so.1 changed since the snapshot (mtime)").ok());
  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].mode, "cold");
  EXPECT_EQ(rows[0].fallback_kind, "stale");
  EXPECT_EQ(rows[0].fallback, "/usr/lib/libfoo.so.1 changed since the snapshot (mtime)");
  const AppSummary s = summary_of(h, "calc");
  EXPECT_EQ(s.cold, 1u);
  EXPECT_EQ(s.restored, 0u);
  EXPECT_EQ(s.fallbacks, 1u);
}

TEST_F(HistoryTest, LaunchesAreTheNewestLimitOldestFirst) {
  History h = open_ok();
  std::vector<int64_t> calc_ids;
  for (int i = 0; i < 10; ++i) {
    calc_ids.push_back(add(h, launch("calc", i % 2 ? "restored" : "cold", 10.0 + i)));
    add(h, launch("notes", "cold", 1));  // interleaved: never in calc's rows
  }
  auto three = launches_of(h, "calc", 3);
  EXPECT_EQ(ids_of(three), std::vector<int64_t>(calc_ids.end() - 3, calc_ids.end()));
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[2].ready_ms, 19.0);
  EXPECT_EQ(ids_of(launches_of(h, "calc", 100)), calc_ids);
  EXPECT_TRUE(launches_of(h, "calc", 0).empty());
  EXPECT_TRUE(launches_of(h, "nobody").empty());
  for (const auto& r : launches_of(h, "notes")) EXPECT_EQ(r.app, "notes");
}

TEST_F(HistoryTest, SnapshotsRoundTripNewestLimitOldestFirst) {
  History h = open_ok();
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) {
    SnapshotRow s = snapshot("calc", true);
    s.time_ms += i;
    s.image_bytes += i;
    auto id = h.add_snapshot(s);
    ASSERT_TRUE(id.ok()) << id.error().describe();
    ids.push_back(*id);
  }
  auto failed = h.add_snapshot(snapshot("calc", false, "calc has a GPU mapping (anon_inode:[perf_event])"));
  ASSERT_TRUE(failed.ok());
  ASSERT_TRUE(h.add_snapshot(snapshot("notes", true)).ok());

  auto rows = h.snapshots("calc", 2);
  ASSERT_TRUE(rows.ok()) << rows.error().describe();
  ASSERT_EQ(rows->size(), 2u);
  const SnapshotRow& ok = (*rows)[0];
  EXPECT_EQ(ok.id, ids[3]);
  EXPECT_EQ(ok.app, "calc");
  EXPECT_EQ(ok.time_ms, 1'700'000'100'003);
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.duration_ms, 812.5);
  EXPECT_EQ(ok.frozen_ms, 93.25);
  EXPECT_EQ(ok.image_bytes, 52'428'803);
  EXPECT_EQ(ok.error, "");
  const SnapshotRow& bad = (*rows)[1];
  EXPECT_EQ(bad.id, *failed);
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.image_bytes, 0);
  EXPECT_EQ(bad.error, "calc has a GPU mapping (anon_inode:[perf_event])");

  auto all = h.snapshots("calc", 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 5u);
  EXPECT_EQ(all->front().id, ids[0]);
}

TEST_F(HistoryTest, SummaryCountsModesFallbacksCapturesAndSamples) {
  History h = open_ok();
  add(h, launch("calc", "cold", 400));  // the first launch: nothing to fall back from
  for (int i = 0; i < 7; ++i) add(h, fallback_launch("calc", "stale", "reason " + std::to_string(i), 300 + i));
  add(h, launch("calc", "cold"));  // never became ready: no sample
  for (double ms : {30.0, 10.0, 20.0}) add(h, launch("calc", "restored", ms));
  add(h, launch("calc", "restored"));  // still starting
  add(h, fallback_launch("notes", "unsupported", "notes uses io_uring", 50));
  ASSERT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
  ASSERT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
  ASSERT_TRUE(h.add_snapshot(snapshot("calc", false, "frozen too long")).ok());
  ASSERT_TRUE(h.add_snapshot(snapshot("notes", false, "x")).ok());

  const AppSummary s = summary_of(h, "calc");
  EXPECT_EQ(s.cold, 9u);
  EXPECT_EQ(s.restored, 4u);
  EXPECT_EQ(s.fallbacks, 7u);
  EXPECT_EQ(s.captures, 2u);
  EXPECT_EQ(s.capture_failures, 1u);
  EXPECT_EQ(sorted(s.cold_ready_ms), (std::vector<double>{300, 301, 302, 303, 304, 305, 306, 400}));
  EXPECT_EQ(sorted(s.restored_ready_ms), (std::vector<double>{10, 20, 30}));
  EXPECT_EQ(s.last_fallbacks,
            (std::vector<std::string>{"reason 2", "reason 3", "reason 4", "reason 5", "reason 6"}));
}

TEST_F(HistoryTest, SummaryOfAnAppWithoutHistoryIsEmpty) {
  History h = open_ok();
  add(h, launch("calc", "cold", 1));
  const AppSummary s = summary_of(h, "nobody");
  EXPECT_EQ(s.cold + s.restored + s.fallbacks + s.captures + s.capture_failures, 0u);
  EXPECT_TRUE(s.cold_ready_ms.empty());
  EXPECT_TRUE(s.restored_ready_ms.empty());
  EXPECT_TRUE(s.last_fallbacks.empty());
}

// Only the newest kSampleLaunches of a mode feed the quantiles, so old launches age out.
TEST_F(HistoryTest, SummarySamplesAreTheNewestPerMode) {
  History h = open_ok();
  const size_t n = History::kSampleLaunches;
  for (size_t i = 0; i < n + 5; ++i) add(h, launch("calc", "cold", i < 5 ? 100'000.0 : 10.0));
  add(h, launch("calc", "restored", 1));
  const AppSummary s = summary_of(h, "calc");
  ASSERT_EQ(s.cold_ready_ms.size(), n);
  EXPECT_EQ(std::count(s.cold_ready_ms.begin(), s.cold_ready_ms.end(), 100'000.0), 0);
  EXPECT_EQ(s.restored_ready_ms.size(), 1u);
  EXPECT_EQ(s.cold, n + 5);
}

TEST_F(HistoryTest, FallbackCountsPerKind) {
  History h = open_ok();
  add(h, launch("calc", "cold", 100));
  for (int i = 0; i < 3; ++i) add(h, fallback_launch("calc", "stale", "image is stale"));
  add(h, fallback_launch("calc", "capturing", "a capture is running"));
  const int64_t refused = add(h, launch("calc", "restored"));
  ASSERT_TRUE(h.set_fallback(refused, "refused", "the kernel refused the mapping").ok());
  add(h, launch("calc", "restored", 10));
  add(h, fallback_launch("notes", "stale", "image is stale"));

  auto counts = h.fallback_counts("calc");
  ASSERT_TRUE(counts.ok()) << counts.error().describe();
  EXPECT_EQ(*counts, (std::vector<std::pair<std::string, uint64_t>>{{"capturing", 1}, {"refused", 1}, {"stale", 3}}));
  auto none = h.fallback_counts("nobody");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(summary_of(h, "calc").fallbacks, 5u);
}

// A fallback is a launch with a fallback kind, whether or not a reason came with it: the count in
// `prewarm stats` and /api/apps agrees with the per-kind counts in /metrics.
TEST_F(HistoryTest, SummaryCountsFallbacksByKind) {
  History h = open_ok();
  add(h, fallback_launch("calc", "stale", ""));
  add(h, fallback_launch("calc", "capturing", "a capture is running"));
  auto counts = h.fallback_counts("calc");
  ASSERT_TRUE(counts.ok()) << counts.error().describe();
  uint64_t by_kind = 0;
  for (const auto& [kind, n] : *counts) by_kind += n;
  EXPECT_EQ(by_kind, 2u);
  EXPECT_EQ(summary_of(h, "calc").fallbacks, by_kind);
}

TEST_F(HistoryTest, ReadyTimesAreEveryReadyLaunchWithItsMode) {
  History h = open_ok();
  add(h, launch("calc", "cold", 250));
  add(h, launch("calc", "cold"));
  const int64_t later = add(h, launch("calc", "restored"));
  add(h, launch("calc", "restored", 40));
  add(h, launch("notes", "cold", 999));
  ASSERT_TRUE(h.set_ready(later, 55, std::nullopt, std::nullopt).ok());

  auto times = h.ready_times("calc");
  ASSERT_TRUE(times.ok()) << times.error().describe();
  auto got = *times;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::pair<std::string, double>>{{"cold", 250}, {"restored", 40}, {"restored", 55}}));
}

TEST_F(HistoryTest, ForgetDeletesOnlyThatApp) {
  History h = open_ok();
  for (const char* app : {"calc", "calc2", "notes"}) {
    add(h, launch(app, "cold", 100));
    add(h, fallback_launch(app, "stale", "stale"));
    ASSERT_TRUE(h.add_snapshot(snapshot(app, true)).ok());
  }
  ASSERT_TRUE(h.forget("calc").ok());
  ASSERT_TRUE(h.forget("c%").ok());  // a name, not a pattern
  ASSERT_TRUE(h.forget("nobody").ok());

  EXPECT_TRUE(launches_of(h, "calc").empty());
  auto snaps = h.snapshots("calc", 10);
  ASSERT_TRUE(snaps.ok());
  EXPECT_TRUE(snaps->empty());
  const AppSummary gone = summary_of(h, "calc");
  EXPECT_EQ(gone.cold + gone.fallbacks + gone.captures, 0u);
  for (const char* app : {"calc2", "notes"}) {
    EXPECT_EQ(launches_of(h, app).size(), 2u) << app;
    EXPECT_EQ(summary_of(h, app).captures, 1u) << app;
  }
}

TEST_F(HistoryTest, LimitsTrimTheOldestRows) {
  History h = open_ok(History::Limits{5, 3});
  std::vector<int64_t> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(add(h, launch(i % 2 ? "calc" : "notes", "cold", i)));
  std::vector<int64_t> kept;
  for (const char* app : {"calc", "notes"})
    for (const auto& r : launches_of(h, app)) kept.push_back(r.id);
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, std::vector<int64_t>(ids.end() - 5, ids.end()));
  auto calc = launches_of(h, "calc");
  ASSERT_FALSE(calc.empty());
  EXPECT_EQ(calc.back().ready_ms, 7.0);

  std::vector<int64_t> snap_ids;
  for (int i = 0; i < 5; ++i) {
    auto id = h.add_snapshot(snapshot("calc", true));
    ASSERT_TRUE(id.ok());
    snap_ids.push_back(*id);
  }
  auto snaps = h.snapshots("calc", 100);
  ASSERT_TRUE(snaps.ok());
  std::vector<int64_t> snap_kept;
  for (const auto& s : *snaps) snap_kept.push_back(s.id);
  EXPECT_EQ(snap_kept, std::vector<int64_t>(snap_ids.end() - 3, snap_ids.end()));
}

TEST_F(HistoryTest, DataSurvivesCloseAndReopen) {
  int64_t id = 0;
  {
    History h = open_ok();
    id = add(h, launch("calc", "restored"));
    ASSERT_TRUE(h.set_ready(id, 33.5, RestorePhases{1, 2, 3, 4}, 8192).ok());
    ASSERT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
  }
  History h = open_ok();
  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].id, id);
  EXPECT_EQ(rows[0].ready_ms, 33.5);
  ASSERT_TRUE(rows[0].phases.has_value());
  EXPECT_EQ(rows[0].phases->resume_ms, 4);
  EXPECT_EQ(rows[0].bytes_read, 8192);
  EXPECT_EQ(summary_of(h, "calc").captures, 1u);
  EXPECT_GT(add(h, launch("calc", "cold")), id);  // ids keep counting up after a reopen
}

TEST_F(HistoryTest, RefusesAFileThatIsNotADatabase) {
  {
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    std::string junk(8192, '\0');
    urandom.read(junk.data(), static_cast<std::streamsize>(junk.size()));
    std::ofstream(path_, std::ios::binary) << junk;
  }
  expect_refused("a file of random bytes", "not a database");
}

TEST_F(HistoryTest, RefusesANewerSchemaVersion) {
  { RawDb raw(path_); raw.exec("CREATE TABLE launches(x); PRAGMA user_version = 99;"); }
  expect_refused("a database of schema version 99", "schema version 99");
}

// user_version is a signed 32-bit field; a version this build does not know is refused whatever
// its sign, not taken for an empty database of ours.
TEST_F(HistoryTest, RefusesANegativeSchemaVersion) {
  { RawDb raw(path_); raw.exec("CREATE TABLE launches(x); PRAGMA user_version = -1;"); }
  expect_refused("a database of schema version -1", "schema version -1");
}

TEST_F(HistoryTest, RefusesAForeignDatabaseWithoutAVersion) {
  {
    RawDb raw(path_);
    raw.exec("CREATE TABLE recipes(name TEXT); INSERT INTO recipes VALUES ('bread');");
  }
  expect_refused("someone else's database", "no schema version");
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("SELECT name FROM recipes"), "bread");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'launches'"), "0");
}

TEST_F(HistoryTest, ReaderSeesRowsTheWriterAddsLater) {
  History writer = open_ok();
  add(writer, launch("calc", "cold", 100));
  auto reader = History::open_reader(path_);
  ASSERT_TRUE(reader.ok()) << reader.error().describe();
  EXPECT_EQ(summary_of(*reader, "calc").cold, 1u);

  const int64_t id = add(writer, launch("calc", "restored"));
  ASSERT_TRUE(writer.set_ready(id, 20, RestorePhases{1, 2, 3, 4}, 100).ok());
  ASSERT_TRUE(writer.add_snapshot(snapshot("calc", true)).ok());
  const AppSummary s = summary_of(*reader, "calc");
  EXPECT_EQ(s.restored, 1u);
  EXPECT_EQ(s.restored_ready_ms, std::vector<double>{20});
  EXPECT_EQ(s.captures, 1u);
  auto rows = launches_of(*reader, "calc");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[1].phases.has_value());
}

TEST_F(HistoryTest, ReaderWorksAfterTheWriterClosed) {
  { History writer = open_ok(); add(writer, launch("calc", "cold", 100)); }
  auto reader = History::open_reader(path_);
  ASSERT_TRUE(reader.ok()) << reader.error().describe();
  EXPECT_EQ(launches_of(*reader, "calc").size(), 1u);
}

TEST_F(HistoryTest, ReaderNeverWrites) {
  History writer = open_ok();
  auto reader = History::open_reader(path_);
  ASSERT_TRUE(reader.ok()) << reader.error().describe();
  EXPECT_FALSE(reader->add_launch(launch("calc", "cold", 1)).ok());
  EXPECT_FALSE(reader->forget("calc").ok());
  EXPECT_TRUE(launches_of(writer, "calc").empty());
}

TEST_F(HistoryTest, ReaderRefusesAMissingFileAndDoesNotCreateIt) {
  auto reader = History::open_reader(path_);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.error().describe().find(path_), std::string::npos) << reader.error().describe();
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(HistoryTest, ReaderRefusesAForeignDatabase) {
  { RawDb raw(path_); raw.exec("CREATE TABLE recipes(name TEXT);"); }
  auto reader = History::open_reader(path_);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.error().describe().find(path_), std::string::npos) << reader.error().describe();
}

TEST_F(HistoryTest, NamesAndReasonsAreStoredVerbatim) {
  History h = open_ok();
  const std::vector<std::string> names = {"x'); DROP TABLE launches;--", "it's \"quoted\"", "kalkulačka-計算機",
                                          "back\\slash", "%", "_"};
  for (const auto& name : names) {
    add(h, fallback_launch(name, "stale'kind", "reason with 'quotes'; DROP TABLE snapshots;--", 5));
    ASSERT_TRUE(h.add_snapshot(snapshot(name, false, "error \"x\" 'y'")).ok());
  }
  for (const auto& name : names) {
    auto rows = launches_of(h, name);
    ASSERT_EQ(rows.size(), 1u) << name;
    EXPECT_EQ(rows[0].app, name);
    EXPECT_EQ(rows[0].fallback_kind, "stale'kind");
    EXPECT_EQ(rows[0].fallback, "reason with 'quotes'; DROP TABLE snapshots;--");
    auto snaps = h.snapshots(name, 10);
    ASSERT_TRUE(snaps.ok());
    ASSERT_EQ(snaps->size(), 1u) << name;
    EXPECT_EQ((*snaps)[0].app, name);
    EXPECT_EQ((*snaps)[0].error, "error \"x\" 'y'");
    EXPECT_EQ(summary_of(h, name).fallbacks, 1u) << name;
  }
  ASSERT_TRUE(h.forget("%").ok());
  EXPECT_TRUE(launches_of(h, "%").empty());
  EXPECT_EQ(launches_of(h, "_").size(), 1u);
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM launches"), "5");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM snapshots"), "5");
}

// ---- Running totals: what list, stats and /metrics answer from, without reading rows ----

AppTotals totals_in(const History& h, const std::string& app) {
  const auto t = h.totals()->get(app);
  return t ? *t : AppTotals{};
}

// The events of a small history, the same every time: cold, fallbacks, restores ready or not, a
// refused restore, captures.
void record_mix(History& h, std::vector<int64_t>* ids = nullptr) {
  auto keep = [&](int64_t id) {
    if (ids) ids->push_back(id);
    return id;
  };
  auto id = [&](const Result<int64_t>& r) { return r.ok() ? *r : -1; };
  keep(id(h.add_launch(launch("calc", "cold", 400))));
  keep(id(h.add_launch(fallback_launch("calc", "stale", "libfoo changed", 420))));
  const int64_t restored = keep(id(h.add_launch(launch("calc", "restored"))));
  EXPECT_TRUE(h.set_ready(restored, 20, RestorePhases{2, 10, 4, 4}, 4096).ok());
  const int64_t refused = keep(id(h.add_launch(launch("calc", "restored"))));
  EXPECT_TRUE(h.set_fallback(refused, "refused", "restore refused: bad checksum").ok());
  EXPECT_TRUE(h.set_ready(refused, 450, std::nullopt, std::nullopt).ok());
  keep(id(h.add_launch(launch("calc", "restored"))));  // never ready: not counted
  keep(id(h.add_launch(launch("notes", "cold", 3000))));
  EXPECT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
  EXPECT_TRUE(h.add_snapshot(snapshot("calc", false, "GPU mapping")).ok());
}

TEST_F(HistoryTest, TotalsCountEachLaunchOnceItsModeIsSettled) {
  History h = open_ok();
  record_mix(h);
  const AppTotals t = totals_in(h, "calc");
  EXPECT_EQ(t.cold.launches, 3u);      // cold, stale fallback, refused restore
  EXPECT_EQ(t.restored.launches, 1u);  // the one that became ready
  EXPECT_EQ(t.fallbacks, (std::map<std::string, uint64_t>{{"refused", 1}, {"stale", 1}}));
  EXPECT_EQ(t.last_fallbacks, (std::vector<std::string>{"libfoo changed", "restore refused: bad checksum"}));
  EXPECT_EQ(t.cold.ready.count(), 3u);
  EXPECT_EQ(t.restored.ready.count(), 1u);
  EXPECT_EQ(t.phased, 1u);
  EXPECT_EQ(t.phase_sum_ms.read_ms, 10);
  EXPECT_EQ(t.bytes_read_sum, 4096);
  EXPECT_EQ(t.captures, 1u);
  EXPECT_EQ(t.capture_failures, 1u);
  EXPECT_EQ(t.last_image_bytes, 52'428'800);
  EXPECT_EQ(totals_in(h, "notes").cold.launches, 1u);
  EXPECT_EQ(h.totals()->size(), 2u);
  // The rows the totals came from, counted by the row-based summary: the same launches by mode
  // (the summary also counts the restore that was never ready).
  const AppSummary s = summary_of(h, "calc");
  EXPECT_EQ(s.cold, t.cold.launches);
  EXPECT_EQ(s.restored, t.restored.launches + 1);
  EXPECT_EQ(s.fallbacks, t.fallback_total());
}

// A restore that died past the point of no return counts as failed, not as a fallback; its row
// stays a restore that was never ready. A launch that became ready cannot fail later.
TEST_F(HistoryTest, AFailedRestoreCountsInTheTotalsOnly) {
  History h = open_ok();
  const int64_t died = add(h, launch("calc", "restored"));
  ASSERT_TRUE(h.set_failed(died).ok());
  const int64_t ready = add(h, launch("calc", "restored"));
  ASSERT_TRUE(h.set_ready(ready, 20, std::nullopt, std::nullopt).ok());
  ASSERT_TRUE(h.set_failed(ready).ok());
  const AppTotals t = totals_in(h, "calc");
  EXPECT_EQ(t.failed, 1u);
  EXPECT_EQ(t.restored.launches, 1u);
  EXPECT_EQ(t.fallback_total(), 0u);
  auto rows = launches_of(h, "calc");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].mode, "restored");
  EXPECT_FALSE(rows[0].ready_ms);
}

TEST_F(HistoryTest, ReadinessReportedTwiceCountsOnce) {
  History h = open_ok();
  const int64_t id = add(h, launch("calc", "restored"));
  ASSERT_TRUE(h.set_ready(id, 20, std::nullopt, std::nullopt).ok());
  ASSERT_TRUE(h.set_ready(id, 25, std::nullopt, std::nullopt).ok());
  ASSERT_TRUE(h.set_fallback(id, "refused", "late").ok());  // after ready: no second count
  const AppTotals t = totals_in(h, "calc");
  EXPECT_EQ(t.restored.launches, 1u);
  EXPECT_EQ(t.restored.ready.count(), 1u);
  EXPECT_EQ(t.cold.launches, 0u);
}

// Pruned rows leave the totals as they were: the /metrics counters never go down.
TEST_F(HistoryTest, TotalsAreMonotonicWhileRowsArePruned) {
  History h = open_ok(History::Limits{5, 3});
  uint64_t last_cold = 0, last_captures = 0;
  for (int i = 0; i < 40; ++i) {
    add(h, launch("calc", "cold", 100 + i));
    ASSERT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
    const AppTotals t = totals_in(h, "calc");
    EXPECT_EQ(t.cold.launches, last_cold + 1);
    EXPECT_EQ(t.captures, last_captures + 1);
    last_cold = t.cold.launches, last_captures = t.captures;
  }
  EXPECT_EQ(launches_of(h, "calc").size(), 5u);
  EXPECT_EQ(totals_in(h, "calc").cold.ready.count(), 40u);
  EXPECT_EQ(summary_of(h, "calc").cold, 5u) << "the rows are pruned; the totals are not";
  // A launch pruned before it became ready is not counted, and its readiness changes nothing.
  History g = open_ok(History::Limits{2, 2});
  const int64_t old = add(g, launch("notes", "restored"));
  add(g, launch("notes", "cold", 1));
  add(g, launch("notes", "cold", 1));
  ASSERT_TRUE(g.set_ready(old, 20, std::nullopt, std::nullopt).ok());
  EXPECT_EQ(totals_in(g, "notes").restored.launches, 0u);
}

TEST_F(HistoryTest, TotalsSurviveReopenExactly) {
  AppTotals before;
  {
    History h = open_ok();
    record_mix(h);
    before = totals_in(h, "calc");
  }
  History h = open_ok();
  EXPECT_EQ(totals_in(h, "calc"), before);
  add(h, launch("calc", "cold", 10));
  EXPECT_EQ(totals_in(h, "calc").cold.launches, before.cold.launches + 1);
}

TEST_F(HistoryTest, ForgetDropsTheTotalsToo) {
  History h = open_ok();
  record_mix(h);
  ASSERT_TRUE(h.forget("calc").ok());
  EXPECT_FALSE(h.totals()->get("calc"));
  EXPECT_TRUE(h.totals()->get("notes"));
  History again = open_ok();
  EXPECT_FALSE(again.totals()->get("calc"));
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM app_totals"), "1");
}

// A file written by the previous prewarm (schema 1, no totals) is migrated once: its totals are
// computed from its rows, and equal the ones the same events give when recorded live.
TEST_F(HistoryTest, MigratesASchema1FileByTotallingItsRows) {
  const std::string live_path = scratch_ + "/live.db";
  AppTotals live_calc, live_notes;
  {
    auto live = History::open(live_path);
    ASSERT_TRUE(live.ok());
    record_mix(*live);
    live_calc = totals_in(*live, "calc");
    live_notes = totals_in(*live, "notes");
  }
  {
    // The same rows in a schema 1 file: copied over, and the totals table removed.
    RawDb raw(path_);
    raw.exec("ATTACH '" + live_path + "' AS live");
    raw.exec("CREATE TABLE launches AS SELECT * FROM live.launches");
    raw.exec("CREATE TABLE snapshots AS SELECT * FROM live.snapshots");
    raw.exec("CREATE INDEX launches_by_app ON launches(app, id); CREATE INDEX snapshots_by_app ON snapshots(app, id)");
    raw.exec("DETACH live");
    raw.exec("PRAGMA user_version = 1");
  }
  History h = open_ok();
  EXPECT_EQ(totals_in(h, "calc"), live_calc);
  EXPECT_EQ(totals_in(h, "notes"), live_notes);
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), "2");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM app_totals"), "2");
}

TEST_F(HistoryTest, DamagedTotalsRefuseTheFile) {
  { History h = open_ok(); add(h, launch("calc", "cold", 1)); }
  { RawDb raw(path_); raw.exec("UPDATE app_totals SET totals = '{\"v\": 1}' WHERE app = 'calc'"); }
  auto h = History::open(path_);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().describe().find("totals of calc"), std::string::npos) << h.error().describe();
}

TEST_F(HistoryTest, ReaderHasNoTotalsAndCannotWrite) {
  { History h = open_ok(); add(h, launch("calc", "cold", 1)); }
  auto reader = History::open_reader(path_);
  ASSERT_TRUE(reader.ok()) << reader.error().describe();
  EXPECT_FALSE(reader->totals());
  EXPECT_FALSE(reader->add_launch(launch("calc", "cold", 1)).ok());
}

// ---- Pages: newest first, bounded, from a cursor ----

TEST_F(HistoryTest, LaunchPagesWalkBackFromTheNewestWithACursor) {
  History h = open_ok();
  std::vector<int64_t> calc;
  for (int i = 0; i < 25; ++i) {
    calc.push_back(add(h, launch("calc", "cold", i)));
    add(h, launch("notes", "cold", i));  // interleaved: pages are per app
  }
  std::vector<int64_t> walked;
  int64_t before = 0;
  for (int page = 0; page < 10; ++page) {
    auto rows = h.launch_page("calc", before, 10);
    ASSERT_TRUE(rows.ok()) << rows.error().describe();
    if (rows->empty()) break;
    EXPECT_LE(rows->size(), 10u);
    for (const auto& r : *rows) {
      EXPECT_EQ(r.app, "calc");
      walked.push_back(r.id);
    }
    before = rows->back().id;
  }
  std::vector<int64_t> newest_first(calc.rbegin(), calc.rend());
  EXPECT_EQ(walked, newest_first);
}

TEST_F(HistoryTest, PagesAreBoundedWhateverIsAsked) {
  History h = open_ok();
  for (size_t i = 0; i < History::kMaxPage + 30; ++i) {
    add(h, launch("calc", "cold", 1));
    ASSERT_TRUE(h.add_snapshot(snapshot("calc", true)).ok());
  }
  auto rows = h.launch_page("calc", 0, 1'000'000);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), History::kMaxPage);
  auto snaps = h.snapshot_page("calc", 0, 1'000'000);
  ASSERT_TRUE(snaps.ok());
  EXPECT_EQ(snaps->size(), History::kMaxPage);
  for (size_t i = 1; i < snaps->size(); ++i) EXPECT_LT((*snaps)[i].id, (*snaps)[i - 1].id) << "newest first";
  auto none = h.launch_page("calc", 1, 10);  // nothing is older than the first row
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace prewarm
