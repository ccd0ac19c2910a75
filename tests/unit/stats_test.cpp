// Tests the launch statistics shown by `prewarm stats` and the dashboard: nearest-rank quantiles,
// per-mode p50/p95, speedup and hit rate from a history summary, null for what cannot be known yet,
// the JSON of history rows, and the restore report a restored app's READY=1 message carries.
#include "prewarmd/stats.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

using nlohmann::json;

TEST(Quantile, EmptyIsNaN) {
  EXPECT_TRUE(std::isnan(quantile({}, 0.5)));
  EXPECT_TRUE(std::isnan(quantile({}, 0.95)));
}

TEST(Quantile, SingleValueForEveryQ) {
  for (double q : {0.0, 0.01, 0.5, 0.95, 1.0}) EXPECT_EQ(quantile({42}, q), 42) << q;
}

// Nearest rank: the smallest value with at least q of the data at or below it; never an
// interpolated value that no launch had.
TEST(Quantile, NearestRank) {
  const std::vector<double> ten = {7, 3, 10, 1, 9, 2, 8, 4, 6, 5};  // 1..10, unsorted
  EXPECT_EQ(quantile(ten, 0.5), 5);
  EXPECT_EQ(quantile(ten, 0.9), 9);
  EXPECT_EQ(quantile(ten, 0.95), 10);
  EXPECT_EQ(quantile(ten, 0.91), 10);
  EXPECT_EQ(quantile(ten, 0.1), 1);
  EXPECT_EQ(quantile(ten, 0.11), 2);
  EXPECT_EQ(quantile(ten, 1.0), 10);
  EXPECT_EQ(quantile(ten, 0.0), 1);  // rank 0 is clamped to the smallest

  EXPECT_EQ(quantile({40, 10, 30, 20}, 0.5), 20);  // not 25
  EXPECT_EQ(quantile({10, 20, 30}, 0.5), 20);
  EXPECT_EQ(quantile({10, 20}, 0.5), 10);
  EXPECT_EQ(quantile({10, 20}, 0.95), 20);

  std::vector<double> twenty;
  for (int i = 20; i >= 1; --i) twenty.push_back(i);
  EXPECT_EQ(quantile(twenty, 0.95), 19);  // rank exactly 19, no floating-point round-up
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  EXPECT_EQ(quantile(hundred, 0.95), 95);
  EXPECT_EQ(quantile(hundred, 0.5), 50);
}

TEST(Quantile, RankAboveTheSizeIsClamped) {
  EXPECT_EQ(quantile({1, 2, 3}, 1.5), 3);
}

App app_named(const std::string& name) {
  App a;
  a.config.name = name;
  a.status.state = policy::AppState::kValid;
  return a;
}

AppSummary sample_summary() {
  AppSummary s;
  s.cold = 5;
  s.restored = 15;
  s.fallbacks = 1;
  s.captures = 2;
  s.capture_failures = 1;
  s.cold_ready_ms = {400, 100, 300, 200};
  s.restored_ready_ms = {60, 10, 50, 20, 40, 30};
  s.last_fallbacks = {"image is stale"};
  return s;
}

TEST(AppStats, PerModeQuantilesSpeedupAndHitRate) {
  App a = app_named("calc");
  a.status.reason = "captured after idle:500";
  const json s = app_stats(a, 123456, sample_summary());
  EXPECT_EQ(s["name"], "calc");
  EXPECT_EQ(s["state"], "valid");
  EXPECT_EQ(s["reason"], "captured after idle:500");
  EXPECT_EQ(s["cold_ready_ms"]["n"], 4);
  EXPECT_EQ(s["cold_ready_ms"]["p50"], 200.0);
  EXPECT_EQ(s["cold_ready_ms"]["p95"], 400.0);
  EXPECT_EQ(s["restored_ready_ms"]["n"], 6);
  EXPECT_EQ(s["restored_ready_ms"]["p50"], 30.0);
  EXPECT_EQ(s["restored_ready_ms"]["p95"], 60.0);
  ASSERT_TRUE(s["speedup"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["speedup"].get<double>(), 200.0 / 30.0);
  // From the launch counts, not the ready samples: 15 of 20.
  ASSERT_TRUE(s["hit_rate"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.75);
  EXPECT_EQ(s["image_bytes"], 123456);
  EXPECT_EQ(s["launches"]["cold"], 5);
  EXPECT_EQ(s["launches"]["restored"], 15);
  EXPECT_EQ(s["launches"]["fallbacks"], 1);
  EXPECT_EQ(s["captures"], 2);
  EXPECT_EQ(s["capture_failures"], 1);
  EXPECT_EQ(s["last_fallbacks"], json::array({"image is stale"}));
}

TEST(AppStats, NoLaunchesGiveNullsNotNaN) {
  const json s = app_stats(app_named("fresh"), 0, AppSummary{});
  for (const char* series : {"cold_ready_ms", "restored_ready_ms"}) {
    EXPECT_TRUE(s[series]["p50"].is_null()) << series << ": " << s[series].dump();
    EXPECT_TRUE(s[series]["p95"].is_null()) << series << ": " << s[series].dump();
    EXPECT_EQ(s[series]["n"], 0);
  }
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_TRUE(s["hit_rate"].is_null()) << s.dump();
  EXPECT_EQ(s["launches"]["cold"], 0);
  EXPECT_TRUE(s["last_fallbacks"].is_array());
  EXPECT_TRUE(s["last_fallbacks"].empty());
  // The CLI prints this document; "NaN" is not JSON.
  EXPECT_EQ(s.dump().find("NaN"), std::string::npos);
  EXPECT_FALSE(json::parse(s.dump(), nullptr, false).is_discarded());
}

TEST(AppStats, OnlyColdLaunchesHaveNoSpeedup) {
  AppSummary sum;
  sum.cold = 2;
  sum.cold_ready_ms = {100, 300};
  const json s = app_stats(app_named("calc"), 0, sum);
  EXPECT_EQ(s["cold_ready_ms"]["p50"], 100.0);
  EXPECT_TRUE(s["restored_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  ASSERT_TRUE(s["hit_rate"].is_number());
  EXPECT_EQ(s["hit_rate"].get<double>(), 0.0);
}

TEST(AppStats, OnlyRestoredLaunchesHaveNoSpeedup) {
  AppSummary sum;
  sum.restored = 3;
  sum.restored_ready_ms = {10, 30, 20};
  const json s = app_stats(app_named("calc"), 0, sum);
  EXPECT_EQ(s["restored_ready_ms"]["p50"], 20.0);
  EXPECT_TRUE(s["cold_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_EQ(s["hit_rate"].get<double>(), 1.0);
}

// Launches that never became ready count for the hit rate but have no sample.
TEST(AppStats, LaunchesWithoutSamplesStillCountForTheHitRate) {
  AppSummary sum;
  sum.cold = 1;
  sum.restored = 3;
  const json s = app_stats(app_named("calc"), 0, sum);
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_EQ(s["cold_ready_ms"]["n"], 0);
  ASSERT_TRUE(s["hit_rate"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.75);
}

TEST(AppStats, LastFallbacksArePassedThroughInOrder) {
  AppSummary sum;
  sum.last_fallbacks = {"reason 3", "reason 4", "reason 5", "reason 6", "reason 7"};
  const json s = app_stats(app_named("calc"), 0, sum);
  EXPECT_EQ(s["last_fallbacks"], json::array({"reason 3", "reason 4", "reason 5", "reason 6", "reason 7"}));
}

// The whole path `prewarm stats` takes: rows in a real history file, its summary, the JSON.
TEST(AppStats, FromARealHistory) {
  char tmpl[] = "/tmp/prewarm-stats-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  struct RemoveAll {
    std::string dir;
    ~RemoveAll() { std::filesystem::remove_all(dir); }
  } scratch{tmpl};
  {
    auto h = History::open(scratch.dir + "/history.db");
    ASSERT_TRUE(h.ok()) << h.error().describe();
    auto add = [&](const char* mode, std::optional<double> ready, const std::string& kind = "",
                   const std::string& reason = "") {
      LaunchRow r;
      r.app = "calc";
      r.mode = mode;
      r.ready_ms = ready;
      r.fallback_kind = kind;
      r.fallback = reason;
      ASSERT_TRUE(h->add_launch(r).ok());
    };
    add("cold", 400);
    add("cold", 600, "stale", "image is stale");
    add("restored", 50);
    add("restored", 30);
    add("restored", std::nullopt);
    auto sum = h->summary("calc");
    ASSERT_TRUE(sum.ok()) << sum.error().describe();
    const json s = app_stats(app_named("calc"), 4096, *sum);
    EXPECT_EQ(s["launches"]["cold"], 2);
    EXPECT_EQ(s["launches"]["restored"], 3);
    EXPECT_EQ(s["launches"]["fallbacks"], 1);
    EXPECT_EQ(s["cold_ready_ms"]["p50"], 400.0);
    EXPECT_EQ(s["restored_ready_ms"]["p50"], 30.0);
    EXPECT_DOUBLE_EQ(s["speedup"].get<double>(), 400.0 / 30.0);
    EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.6);
    EXPECT_EQ(s["last_fallbacks"], json::array({"image is stale"}));
  }
}

TEST(RowJson, LaunchWithEverything) {
  LaunchRow r;
  r.id = 17;
  r.app = "calc";
  r.time_ms = 1'700'000'000'123;
  r.pid = 4321;
  r.mode = "restored";
  r.ready_ms = 25.5;
  r.phases = RestorePhases{1.5, 20, 3.25, 0.75};
  r.bytes_read = 1 << 20;
  const json j = to_json(r);
  EXPECT_EQ(j["id"], 17);
  EXPECT_EQ(j["time_ms"], 1'700'000'000'123);
  EXPECT_EQ(j["pid"], 4321);
  EXPECT_EQ(j["mode"], "restored");
  EXPECT_EQ(j["ready_ms"], 25.5);
  EXPECT_EQ(j["phases"], json({{"validate_ms", 1.5}, {"read_ms", 20.0}, {"map_ms", 3.25}, {"resume_ms", 0.75}}));
  EXPECT_EQ(j["bytes_read"], 1 << 20);
  EXPECT_TRUE(j["fallback"].is_null()) << j.dump();
  EXPECT_TRUE(j["fallback_kind"].is_null()) << j.dump();
}

TEST(RowJson, LaunchWithoutReadinessHasNulls) {
  LaunchRow r;
  r.id = 3;
  r.mode = "cold";
  r.fallback_kind = "stale";
  r.fallback = "image is stale";
  const json j = to_json(r);
  EXPECT_EQ(j["fallback_kind"], "stale");
  EXPECT_EQ(j["fallback"], "image is stale");
  for (const char* key : {"ready_ms", "phases", "bytes_read"}) {
    ASSERT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
    EXPECT_TRUE(j[key].is_null()) << key << ": " << j.dump();
  }
}

TEST(RowJson, Snapshots) {
  SnapshotRow ok{5, "calc", 1'700'000'000'000, true, 812.5, 93.25, 52'428'800, ""};
  const json j = to_json(ok);
  EXPECT_EQ(j["id"], 5);
  EXPECT_EQ(j["time_ms"], 1'700'000'000'000);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["duration_ms"], 812.5);
  EXPECT_EQ(j["frozen_ms"], 93.25);
  EXPECT_EQ(j["image_bytes"], 52'428'800);
  ASSERT_TRUE(j.contains("error"));
  EXPECT_TRUE(j["error"].is_null()) << j.dump();

  SnapshotRow failed{6, "calc", 1, false, 10, 0, 0, "calc has a GPU mapping"};
  const json f = to_json(failed);
  EXPECT_EQ(f["ok"], false);
  EXPECT_EQ(f["error"], "calc has a GPU mapping");
}

// The stamps of one restore: the launcher's start, then each phase's end, on CLOCK_MONOTONIC.
constexpr int64_t kT0 = 5'000'000'000;
constexpr int64_t kValidated = kT0 + 2'500'000;    // +2.5 ms
constexpr int64_t kRead = kValidated + 10'000'000;  // +10 ms
constexpr int64_t kMapped = kRead + 1'250'000;      // +1.25 ms
constexpr int64_t kResumed = kMapped + 750'000;     // +0.75 ms
constexpr int64_t kNow = kResumed + 3'000'000;

std::string twenty_digits(int64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020" PRId64, v);
  return buf;
}

struct Fields {
  std::string validated = std::to_string(kValidated), read = std::to_string(kRead);
  std::string bytes = "7340032", mapped = twenty_digits(kMapped), resumed = twenty_digits(kResumed);
};

// The message as the restorer blob leaves it (its stamps fixed-width), an empty value meaning
// "leave the line out".
std::string report(const Fields& f) {
  std::string m = "READY=1\nPREWARM_LAUNCH=3\n";
  auto line = [&](const char* key, const std::string& v) {
    if (!v.empty()) m += std::string(key) + "=" + v + "\n";
  };
  line("PREWARM_VALIDATED_NS", f.validated);
  line("PREWARM_READ_NS", f.read);
  line("PREWARM_BYTES_READ", f.bytes);
  line("PREWARM_MAPPED_NS", f.mapped);
  line("PREWARM_RESUMED_NS", f.resumed);
  return m;
}

TEST(RestoreReport, PhasesInMilliseconds) {
  const std::string m = report(Fields{});
  ASSERT_NE(m.find("PREWARM_MAPPED_NS=00000000005013750000\n"), std::string::npos) << m;
  auto r = parse_restore_report(m, kT0, kNow);
  ASSERT_TRUE(r.has_value()) << m;
  EXPECT_EQ(r->resumed_ns, kResumed);
  EXPECT_DOUBLE_EQ(r->phases.validate_ms, 2.5);
  EXPECT_DOUBLE_EQ(r->phases.read_ms, 10.0);
  EXPECT_DOUBLE_EQ(r->phases.map_ms, 1.25);
  EXPECT_DOUBLE_EQ(r->phases.resume_ms, 0.75);
  EXPECT_EQ(r->bytes_read, 7'340'032);
}

TEST(RestoreReport, FieldsInAnyOrderAndAmongOthers) {
  const std::string m = "STATUS=ready to serve\nPREWARM_RESUMED_NS=" + std::to_string(kResumed) +
                        "\nPREWARM_BYTES_READ=0\nPREWARM_MAPPED_NS=" + std::to_string(kMapped) +
                        "\nREADY=1\nPREWARM_READ_NS=" + std::to_string(kRead) +
                        "\nPREWARM_VALIDATED_NS=" + std::to_string(kValidated);  // no final newline
  auto r = parse_restore_report(m, kT0, kNow);
  ASSERT_TRUE(r.has_value()) << m;
  EXPECT_DOUBLE_EQ(r->phases.read_ms, 10.0);
  EXPECT_EQ(r->bytes_read, 0);
}

// Stamps equal to each other or to the bounds are in order (a coarse clock can tick that way).
TEST(RestoreReport, EqualStampsAreInOrder) {
  Fields f;
  f.validated = f.read = std::to_string(kT0);
  f.mapped = f.resumed = twenty_digits(kNow);
  auto r = parse_restore_report(report(f), kT0, kNow);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->phases.validate_ms, 0);
  EXPECT_EQ(r->phases.read_ms, 0);
  EXPECT_DOUBLE_EQ(r->phases.map_ms, static_cast<double>(kNow - kT0) / 1e6);
  EXPECT_EQ(r->phases.resume_ms, 0);
}

TEST(RestoreReport, AMissingFieldIsNoReport) {
  for (int missing = 0; missing < 5; ++missing) {
    Fields f;
    std::string* field[] = {&f.validated, &f.read, &f.bytes, &f.mapped, &f.resumed};
    field[missing]->clear();
    EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value()) << report(f);
  }
  EXPECT_FALSE(parse_restore_report("READY=1\n", kT0, kNow).has_value());
  EXPECT_FALSE(parse_restore_report("", kT0, kNow).has_value());
}

TEST(RestoreReport, AMalformedNumberIsNoReport) {
  for (const std::string bad : {"", "abc", "123abc", "12 ", " 12", "+12", "1.5", "0x10", "99999999999999999999"}) {
    for (int which = 0; which < 5; ++which) {
      Fields f;
      std::string* field[] = {&f.validated, &f.read, &f.bytes, &f.mapped, &f.resumed};
      std::string m = report(f);
      // Replace the value in place so an empty value stays as "KEY=\n".
      const std::string old = *field[which];
      const auto pos = m.find("=" + old + "\n");
      ASSERT_NE(pos, std::string::npos);
      m.replace(pos + 1, old.size(), bad);
      EXPECT_FALSE(parse_restore_report(m, kT0, kNow).has_value()) << "value '" << bad << "' in\n" << m;
    }
  }
}

TEST(RestoreReport, NegativeBytesIsNoReport) {
  Fields f;
  f.bytes = "-1";
  EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value());
}

TEST(RestoreReport, OutOfOrderStampsAreNoReport) {
  {
    Fields f;  // read before validated
    std::swap(f.validated, f.read);
    EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value()) << report(f);
  }
  {
    Fields f;  // mapped before read
    f.mapped = std::to_string(kRead - 1);
    EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value()) << report(f);
  }
  {
    Fields f;  // resumed before mapped
    f.resumed = std::to_string(kMapped - 1);
    EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value()) << report(f);
  }
}

TEST(RestoreReport, StampsOutsideTheLaunchAreNoReport) {
  const std::string m = report(Fields{});
  EXPECT_FALSE(parse_restore_report(m, kValidated + 1, kNow).has_value()) << "validated before t0";
  EXPECT_FALSE(parse_restore_report(m, kT0, kResumed - 1).has_value()) << "resumed after now";
  Fields f;
  f.validated = "0";
  EXPECT_FALSE(parse_restore_report(report(f), kT0, kNow).has_value()) << "a stamp of 0";
}

TEST(WithoutPrewarmFields, DropsExactlyThePrewarmLines) {
  const std::string m = report(Fields{});
  EXPECT_EQ(without_prewarm_fields(m), "READY=1\n");
  EXPECT_EQ(without_prewarm_fields("READY=1\nPREWARM_LAUNCH=3\nSTATUS=serving on :8080\nPREWARM_READ_NS=5\n"
                                   "MAINPID=77\n"),
            "READY=1\nSTATUS=serving on :8080\nMAINPID=77\n");
}

TEST(WithoutPrewarmFields, KeepsEverythingElseVerbatim) {
  for (const std::string m : {"READY=1", "READY=1\n", "STATUS=PREWARM_X=1 is only text\nREADY=1\n",
                              "X_PREWARM_Y=1\nprewarm_lower=2\n", "READY=1\n\nSTATUS=two newlines\n", ""})
    EXPECT_EQ(without_prewarm_fields(m), m);
  EXPECT_EQ(without_prewarm_fields("PREWARM_LAUNCH=3\nREADY=1"), "READY=1");
  EXPECT_EQ(without_prewarm_fields("PREWARM_LAUNCH=3\n"), "");
}

}  // namespace
}  // namespace prewarm
