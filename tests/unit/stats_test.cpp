// Tests the launch statistics shown by `prewarm stats` and the dashboard: nearest-rank quantiles,
// the bounded sketch behind p50/p95 (its error bound on real shapes of data), the running totals
// (when a launch counts, their JSON), speedup and hit rate, null for what cannot be known yet,
// the JSON of history rows, and the restore report a restored app's READY=1 message carries.
#include "prewarmd/stats.h"

#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
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

// Totals as the history builds them: `cold` and `restored` launches that became ready after the
// given times, plus launches of each mode that never did.
AppTotals totals_of(const std::vector<double>& cold, const std::vector<double>& restored, uint64_t cold_unready = 0,
                    uint64_t restored_unready = 0) {
  AppTotals t;
  for (double ms : cold) count_start(t, "cold", "", ""), count_ready(t, "cold", ms, std::nullopt, std::nullopt);
  for (double ms : restored) count_ready(t, "restored", ms, std::nullopt, std::nullopt);
  t.cold.launches += cold_unready;
  t.restored.launches += restored_unready;
  return t;
}

// Within the sketch's stated error of the exact value.
void expect_close(const json& got, double want) {
  ASSERT_TRUE(got.is_number()) << got.dump();
  EXPECT_NEAR(got.get<double>(), want, want * ReadySketch::kRelativeError) << "want " << want;
}

AppTotals sample_totals() {
  // 5 cold (one a fallback, one never ready), 15 restored (9 without a sample).
  AppTotals t = totals_of({400, 100, 300}, {60, 10, 50, 20, 40, 30}, 1, 9);
  count_fallback(t, "stale", "image is stale");
  count_ready(t, "cold", 200, std::nullopt, std::nullopt);  // the fallback launch became ready
  count_capture(t, true, 800, 90, 52'428'800);
  count_capture(t, true, 700, 80, 1'000);
  count_capture(t, false, 10, 0, 0);
  return t;
}

TEST(AppStats, PerModeQuantilesSpeedupAndHitRate) {
  App a = app_named("calc");
  a.status.reason = "captured after idle:500";
  const json s = app_stats(a, 123456, sample_totals());
  EXPECT_EQ(s["name"], "calc");
  EXPECT_EQ(s["state"], "valid");
  EXPECT_EQ(s["reason"], "captured after idle:500");
  EXPECT_EQ(s["cold_ready_ms"]["n"], 4);
  expect_close(s["cold_ready_ms"]["p50"], 200.0);
  expect_close(s["cold_ready_ms"]["p95"], 400.0);
  EXPECT_EQ(s["restored_ready_ms"]["n"], 6);
  expect_close(s["restored_ready_ms"]["p50"], 30.0);
  expect_close(s["restored_ready_ms"]["p95"], 60.0);
  ASSERT_TRUE(s["speedup"].is_number()) << s.dump();
  EXPECT_NEAR(s["speedup"].get<double>(), 200.0 / 30.0, 200.0 / 30.0 * 2.1 * ReadySketch::kRelativeError);
  // From the launch counts, not the ready samples: 15 of 20.
  ASSERT_TRUE(s["hit_rate"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.75);
  EXPECT_EQ(s["image_bytes"], 123456);
  EXPECT_EQ(s["launches"]["cold"], 5);
  EXPECT_EQ(s["launches"]["restored"], 15);
  EXPECT_EQ(s["launches"]["fallbacks"], 1);
  EXPECT_EQ(s["fallbacks_by_kind"], json({{"stale", 1}}));
  EXPECT_EQ(s["captures"], 2);
  EXPECT_EQ(s["capture_failures"], 1);
  EXPECT_EQ(s["captured_image_bytes_last"], 1'000);
  EXPECT_EQ(s["capture_ms_mean"], 750.0);
  EXPECT_EQ(s["last_fallbacks"], json::array({"image is stale"}));
}

TEST(AppStats, NoLaunchesGiveNullsNotNaN) {
  const json s = app_stats(app_named("fresh"), 0, AppTotals{});
  for (const char* series : {"cold_ready_ms", "restored_ready_ms"}) {
    EXPECT_TRUE(s[series]["p50"].is_null()) << series << ": " << s[series].dump();
    EXPECT_TRUE(s[series]["p95"].is_null()) << series << ": " << s[series].dump();
    EXPECT_EQ(s[series]["n"], 0);
  }
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_TRUE(s["hit_rate"].is_null()) << s.dump();
  EXPECT_TRUE(s["restore_phases_mean_ms"].is_null()) << s.dump();
  EXPECT_TRUE(s["capture_ms_mean"].is_null()) << s.dump();
  EXPECT_EQ(s["launches"]["cold"], 0);
  EXPECT_TRUE(s["last_fallbacks"].is_array());
  EXPECT_TRUE(s["last_fallbacks"].empty());
  // The CLI prints this document; "NaN" is not JSON.
  EXPECT_EQ(s.dump().find("NaN"), std::string::npos);
  EXPECT_FALSE(json::parse(s.dump(), nullptr, false).is_discarded());
}

TEST(AppStats, OnlyColdLaunchesHaveNoSpeedup) {
  const json s = app_stats(app_named("calc"), 0, totals_of({100, 300}, {}));
  expect_close(s["cold_ready_ms"]["p50"], 100.0);
  EXPECT_TRUE(s["restored_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  ASSERT_TRUE(s["hit_rate"].is_number());
  EXPECT_EQ(s["hit_rate"].get<double>(), 0.0);
}

TEST(AppStats, OnlyRestoredLaunchesHaveNoSpeedup) {
  const json s = app_stats(app_named("calc"), 0, totals_of({}, {10, 30, 20}));
  expect_close(s["restored_ready_ms"]["p50"], 20.0);
  EXPECT_TRUE(s["cold_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_EQ(s["hit_rate"].get<double>(), 1.0);
}

// Launches that never became ready count for the hit rate but have no sample.
TEST(AppStats, LaunchesWithoutSamplesStillCountForTheHitRate) {
  const json s = app_stats(app_named("calc"), 0, totals_of({}, {}, 1, 3));
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_EQ(s["cold_ready_ms"]["n"], 0);
  ASSERT_TRUE(s["hit_rate"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.75);
}

TEST(AppStats, LastFallbacksAreTheNewestFiveInOrder) {
  AppTotals t;
  for (int i = 1; i <= 7; ++i) count_fallback(t, "stale", "reason " + std::to_string(i));
  const json s = app_stats(app_named("calc"), 0, t);
  EXPECT_EQ(s["last_fallbacks"], json::array({"reason 3", "reason 4", "reason 5", "reason 6", "reason 7"}));
  EXPECT_EQ(s["launches"]["fallbacks"], 7);
  EXPECT_EQ(s["launches"]["cold"], 7);
}

TEST(AppStats, RestorePhasesAreMeans) {
  AppTotals t;
  count_ready(t, "restored", 20, RestorePhases{2, 10, 4, 4}, 1000);
  count_ready(t, "restored", 30, RestorePhases{4, 20, 2, 4}, 3000);
  const json s = app_stats(app_named("calc"), 0, t);
  EXPECT_EQ(s["restore_phases_mean_ms"],
            json({{"validate_ms", 3.0}, {"read_ms", 15.0}, {"map_ms", 3.0}, {"resume_ms", 4.0}, {"n", 2}}));
  EXPECT_EQ(t.bytes_read_sum, 4000);
}

// The sketch against exact nearest-rank quantiles, on shapes launch times take: tight, spread over
// decades, two modes, and all equal.
TEST(ReadySketch, QuantilesWithinTheStatedRelativeError) {
  std::vector<std::vector<double>> sets;
  uint64_t x = 88172645463325252ull;  // xorshift: the same numbers on every machine
  auto next = [&x] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<double>(x >> 11) / 9007199254740992.0;  // [0, 1)
  };
  std::vector<double> tight, decades, bimodal, equal(500, 21.5);
  for (int i = 0; i < 5000; ++i) {
    tight.push_back(20 + next());
    decades.push_back(0.01 * std::pow(10, 7 * next()));  // 10 us to 100 s
    bimodal.push_back(next() < 0.8 ? 18 + 4 * next() : 300 + 200 * next());
  }
  for (const auto* v : {&tight, &decades, &bimodal, &equal}) {
    ReadySketch s;
    for (double ms : *v) s.add(ms);
    ASSERT_EQ(s.count(), v->size());
    for (double q : {0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0}) {
      const double exact = quantile(*v, q);
      EXPECT_NEAR(s.quantile(q), exact, exact * ReadySketch::kRelativeError * 1.0000001) << "q " << q;
    }
  }
}

TEST(ReadySketch, EmptyIsNaNAndSumIsExact) {
  ReadySketch s;
  EXPECT_TRUE(std::isnan(s.quantile(0.5)));
  s.add(1.5);
  s.add(2.5);
  EXPECT_EQ(s.sum_ms(), 4.0);
  EXPECT_EQ(s.quantile(0.0), 1.5);  // the extremes are exact
  EXPECT_EQ(s.quantile(1.0), 2.5);
}

// Bounded whatever it is fed: values outside [1 us, 10^4 s] are clamped into the end buckets.
TEST(ReadySketch, BucketsAreBounded) {
  ReadySketch s;
  for (double ms = 1e-9; ms < 1e12; ms *= 1.001) s.add(ms);
  s.add(0);
  s.add(-5);
  EXPECT_LE(s.buckets(), 1300u);
  EXPECT_GT(s.count(), 20'000u);
}

TEST(ReadySketch, JsonRoundTripAndRejectsDamage) {
  ReadySketch s;
  for (double ms : {1.0, 2.0, 2.0, 500.0}) s.add(ms);
  auto back = ReadySketch::from_json(json::parse(s.to_json().dump()));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
  json bad = s.to_json();
  bad["n"] = 5;  // counts no longer add up
  EXPECT_FALSE(ReadySketch::from_json(bad));
  json unordered = s.to_json();
  std::swap(unordered["b"][0], unordered["b"][1]);
  EXPECT_FALSE(ReadySketch::from_json(unordered));
  EXPECT_FALSE(ReadySketch::from_json(json::object()));
}

TEST(AppTotals, JsonRoundTrip) {
  AppTotals t = sample_totals();
  count_ready(t, "restored", 25, RestorePhases{1, 2, 3, 4}, 77);
  auto back = AppTotals::from_json(json::parse(t.to_json().dump()));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, t);
  json bad = t.to_json();
  bad["v"] = 2;
  EXPECT_FALSE(AppTotals::from_json(bad));
  bad = t.to_json();
  bad["cold"]["le"] = json::array({1, 2});
  EXPECT_FALSE(AppTotals::from_json(bad));
}

// The persisted form, as prewarmd has written it since version 1 (history.db keeps it across
// upgrades): read back field by field, and written again byte for byte.
TEST(AppTotals, ReadsAndWritesTheStoredForm) {
  const std::string stored =
      R"({"bytes_read_sum":77,"capture_failures":1,"capture_ms_sum":120.5,"captures":3,)"
      R"("cold":{"launches":2,"le":[0,1,2,2,2,2,2,2,2,2,2],"ready":{"b":[[117,1],[152,1]],"max":20.0,"min":10.0,"n":2,"sum":30.0}},)"
      R"("failed":4,"fallbacks":{"stale":1},"frozen_ms_sum":9.25,"image_bytes_sum":4096,"last_fallbacks":["changed"],)"
      R"("last_image_bytes":2048,"phase_sum_ms":[1.0,2.0,3.0,4.0],"phased":1,)"
      R"("restored":{"launches":0,"le":[0,0,0,0,0,0,0,0,0,0,0],"ready":{"b":[],"max":0.0,"min":0.0,"n":0,"sum":0.0}},"v":1})";
  auto t = AppTotals::from_json(json::parse(stored));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->cold.launches, 2u);
  EXPECT_EQ(t->cold.ready.count(), 2u);
  EXPECT_EQ(t->cold.ready.quantile(1.0), 20.0);
  EXPECT_EQ(t->cold.le[1], 1u);
  EXPECT_EQ(t->failed, 4u);
  EXPECT_EQ(t->fallbacks.at("stale"), 1u);
  EXPECT_EQ(t->last_fallbacks, std::vector<std::string>{"changed"});
  EXPECT_EQ(t->phase_sum_ms, (RestorePhases{1, 2, 3, 4}));
  EXPECT_EQ(t->bytes_read_sum, 77);
  EXPECT_EQ(t->captures, 3u);
  EXPECT_EQ(t->capture_failures, 1u);
  EXPECT_EQ(t->last_image_bytes, 2048);
  EXPECT_EQ(t->image_bytes_sum, 4096);
  EXPECT_EQ(t->capture_ms_sum, 120.5);
  EXPECT_EQ(t->frozen_ms_sum, 9.25);
  EXPECT_EQ(t->to_json().dump(), stored);
  // Totals written before failed restores were counted have no "failed".
  json older = json::parse(stored);
  older.erase("failed");
  auto o = AppTotals::from_json(older);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->failed, 0u);
  json short_phases = json::parse(stored);
  short_phases["phase_sum_ms"] = json::array({1.0, 2.0, 3.0});
  EXPECT_FALSE(AppTotals::from_json(short_phases));
  json bad_sketch = json::parse(stored);
  bad_sketch["cold"]["ready"]["n"] = 3;
  EXPECT_FALSE(AppTotals::from_json(bad_sketch));
}

// Prometheus buckets are exact and inclusive: a launch ready after exactly 0.25 s is in le=0.25.
TEST(AppTotals, ReadyBucketsAreInclusive) {
  AppTotals t;
  count_ready(t, "cold", 250, std::nullopt, std::nullopt);
  count_ready(t, "cold", 1200, std::nullopt, std::nullopt);
  const std::array<uint64_t, 11> want = {0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
  EXPECT_EQ(t.cold.le, want);
}

// A refused restore counts once, as cold with its fallback; a restore counts when it is ready.
TEST(AppTotals, LaunchesCountOnceTheirModeIsSettled) {
  AppTotals t;
  count_start(t, "restored", "", "");
  EXPECT_EQ(t.restored.launches, 0u);
  count_ready(t, "restored", 20, std::nullopt, std::nullopt);
  EXPECT_EQ(t.restored.launches, 1u);
  count_start(t, "cold", "", "");
  count_start(t, "cold", "stale", "libfoo changed");
  EXPECT_EQ(t.cold.launches, 2u);
  EXPECT_EQ(t.fallbacks, (std::map<std::string, uint64_t>{{"stale", 1}}));
  count_ready(t, "cold", 300, std::nullopt, std::nullopt);
  EXPECT_EQ(t.cold.launches, 2u) << "readiness of a cold launch does not count it again";
}

// The whole path `prewarm stats` takes: rows recorded in a real history file, its totals, the JSON.
TEST(AppStats, FromARealHistory) {
  char tmpl[] = "/tmp/prewarm-stats-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  struct RemoveAll {
    std::string dir;
    ~RemoveAll() { std::filesystem::remove_all(dir); }
  } scratch{tmpl};
  for (int pass = 0; pass < 2; ++pass) {  // as recorded, then as loaded again from the file
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
    if (pass == 0) {
      add("cold", 400);
      add("cold", 600, "stale", "image is stale");
      add("restored", 50);
      add("restored", 30);
      add("restored", std::nullopt);  // not ready (yet): not counted
    }
    const auto t = h->totals()->get("calc");
    ASSERT_TRUE(t) << "pass " << pass;
    const json s = app_stats(app_named("calc"), 4096, *t);
    EXPECT_EQ(s["launches"]["cold"], 2);
    EXPECT_EQ(s["launches"]["restored"], 2);
    EXPECT_EQ(s["launches"]["fallbacks"], 1);
    expect_close(s["cold_ready_ms"]["p50"], 400.0);
    expect_close(s["restored_ready_ms"]["p50"], 30.0);
    EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.5);
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
  std::string m = "READY=1\n";
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

}  // namespace
}  // namespace prewarm
