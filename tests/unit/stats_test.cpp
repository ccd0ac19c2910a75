// Tests the launch statistics shown by `prewarm stats`: nearest-rank quantiles, per-mode p50/p95,
// speedup and hit rate on a hand-built launch history, null for what cannot be known yet.
#include "prewarmd/stats.h"

#include <cmath>
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

LaunchRecord launch(const char* mode, double ready_ms, const std::string& fallback = "") {
  LaunchRecord r;
  r.time_ms = 1700000000000;
  r.mode = mode;
  r.ready_ms = ready_ms;
  r.fallback = fallback;
  r.pid = 100;
  return r;
}

App sample_app() {
  App a;
  a.config.name = "calc";
  a.status.state = "valid";
  a.status.reason = "";
  a.status.cold = 5;
  a.status.restored = 15;
  a.status.fallbacks = 1;
  a.status.captures = 2;
  a.status.capture_failures = 1;
  for (double ms : {400.0, 100.0, 300.0, 200.0}) a.status.recent.push_back(launch("cold", ms));
  a.status.recent.push_back(launch("cold", -1, "image is stale"));  // never became ready
  for (double ms : {60.0, 10.0, 50.0, 20.0, 40.0, 30.0}) a.status.recent.push_back(launch("restored", ms));
  a.status.recent.push_back(launch("restored", -1));  // still starting
  return a;
}

TEST(AppStats, PerModeQuantilesSpeedupAndHitRate) {
  const json s = app_stats(sample_app(), 123456);
  EXPECT_EQ(s["name"], "calc");
  EXPECT_EQ(s["state"], "valid");
  EXPECT_EQ(s["cold_ready_ms"]["n"], 4);  // launches without a ready time are not counted
  EXPECT_EQ(s["cold_ready_ms"]["p50"], 200.0);
  EXPECT_EQ(s["cold_ready_ms"]["p95"], 400.0);
  EXPECT_EQ(s["restored_ready_ms"]["n"], 6);
  EXPECT_EQ(s["restored_ready_ms"]["p50"], 30.0);
  EXPECT_EQ(s["restored_ready_ms"]["p95"], 60.0);
  ASSERT_TRUE(s["speedup"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["speedup"].get<double>(), 200.0 / 30.0);
  // From the lifetime counters, not the bounded recent list: 15 of 20.
  ASSERT_TRUE(s["hit_rate"].is_number()) << s.dump();
  EXPECT_DOUBLE_EQ(s["hit_rate"].get<double>(), 0.75);
  EXPECT_EQ(s["image_bytes"], 123456);
  EXPECT_EQ(s["launches"]["cold"], 5);
  EXPECT_EQ(s["launches"]["restored"], 15);
  EXPECT_EQ(s["launches"]["fallbacks"], 1);
  EXPECT_EQ(s["captures"], 2);
  EXPECT_EQ(s["capture_failures"], 1);
  EXPECT_EQ(s["last_fallbacks"], json::array({"image is stale"}));
  ASSERT_EQ(s["recent"].size(), 12u);
  EXPECT_EQ(s["recent"][0]["mode"], "cold");
  EXPECT_EQ(s["recent"][0]["ready_ms"], 400.0);
}

TEST(AppStats, NoLaunchesGiveNullsNotNaN) {
  App a;
  a.config.name = "fresh";
  const json s = app_stats(a, 0);
  for (const char* series : {"cold_ready_ms", "restored_ready_ms"}) {
    EXPECT_TRUE(s[series]["p50"].is_null()) << series << ": " << s[series].dump();
    EXPECT_TRUE(s[series]["p95"].is_null()) << series << ": " << s[series].dump();
    EXPECT_EQ(s[series]["n"], 0);
  }
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_TRUE(s["hit_rate"].is_null()) << s.dump();
  EXPECT_TRUE(s["last_fallbacks"].is_array());
  EXPECT_TRUE(s["last_fallbacks"].empty());
  // The CLI prints this document; "NaN" is not JSON.
  EXPECT_EQ(s.dump().find("NaN"), std::string::npos);
  EXPECT_EQ(json::parse(s.dump(), nullptr, false).is_discarded(), false);
}

TEST(AppStats, OnlyColdLaunchesHaveNoSpeedup) {
  App a;
  a.config.name = "calc";
  a.status.cold = 2;
  a.status.recent = {launch("cold", 100), launch("cold", 300)};
  const json s = app_stats(a, 0);
  EXPECT_EQ(s["cold_ready_ms"]["p50"], 100.0);
  EXPECT_TRUE(s["restored_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  ASSERT_TRUE(s["hit_rate"].is_number());
  EXPECT_EQ(s["hit_rate"].get<double>(), 0.0);
}

TEST(AppStats, OnlyRestoredLaunchesHaveNoSpeedup) {
  App a;
  a.config.name = "calc";
  a.status.restored = 3;
  a.status.recent = {launch("restored", 10), launch("restored", 30), launch("restored", 20)};
  const json s = app_stats(a, 0);
  EXPECT_EQ(s["restored_ready_ms"]["p50"], 20.0);
  EXPECT_TRUE(s["cold_ready_ms"]["p50"].is_null());
  EXPECT_TRUE(s["speedup"].is_null()) << s.dump();
  EXPECT_EQ(s["hit_rate"].get<double>(), 1.0);
}

TEST(AppStats, LastFallbacksAreTheFiveNewest) {
  App a;
  a.config.name = "calc";
  for (int i = 0; i < 8; ++i) {
    a.status.recent.push_back(launch("cold", 100, "reason " + std::to_string(i)));
    a.status.recent.push_back(launch("restored", 10));  // no fallback: not listed
  }
  const json s = app_stats(a, 0);
  EXPECT_EQ(s["last_fallbacks"],
            json::array({"reason 3", "reason 4", "reason 5", "reason 6", "reason 7"}));
  EXPECT_EQ(s["recent"].size(), 16u);
}

}  // namespace
}  // namespace prewarm
