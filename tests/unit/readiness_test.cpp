// Tests the --ready grammar (what is accepted, what is refused, that it prints back the same) and
// the idle detector's rule: a whole window of sleeping samples without CPU time, reset by any work.
#include "policy/readiness.h"

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

TEST(ParseReadyMode, AcceptsEachForm) {
  auto m = parse_ready_mode("notify");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, ReadyMode::kNotify);

  m = parse_ready_mode("idle");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, ReadyMode::kIdle);
  EXPECT_EQ(m->ms, 500u);

  m = parse_ready_mode("idle:250");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, ReadyMode::kIdle);
  EXPECT_EQ(m->ms, 250u);

  m = parse_ready_mode("delay:1500");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, ReadyMode::kDelay);
  EXPECT_EQ(m->ms, 1500u);
}

TEST(ParseReadyMode, AcceptsTheLimits) {
  auto m = parse_ready_mode("idle:1");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->ms, 1u);
  m = parse_ready_mode("delay:600000");  // ten minutes
  ASSERT_TRUE(m);
  EXPECT_EQ(m->ms, 600000u);
}

TEST(ParseReadyMode, RefusesMalformedText) {
  const std::vector<std::string> bad = {
      "",           "garbage",     "Notify",      "IDLE",       " idle",        "idle ",
      "notify:5",   "notify:",     "delay",       "delay:",     "idle:",        ":500",
      "idle:0",     "delay:0",     "idle:-5",     "idle:+5",    "idle:abc",     "idle:10ms",
      "idle:10 ",   "idle: 10",    "delay:1.5",   "idle:0x10",  "idle:5:6",     "sleep:5",
      "idle:600001", "delay:4294967296", "idle:99999999999999999999999"};
  for (const auto& text : bad) {
    auto m = parse_ready_mode(text);
    EXPECT_FALSE(m) << "accepted \"" << text << "\" as " << to_string(*m);
  }
}

TEST(ReadyModeToString, PrintsEachKind) {
  EXPECT_EQ(to_string(ReadyMode{ReadyMode::kNotify, 0}), "notify");
  EXPECT_EQ(to_string(ReadyMode{ReadyMode::kIdle, 750}), "idle:750");
  EXPECT_EQ(to_string(ReadyMode{ReadyMode::kDelay, 2000}), "delay:2000");
}

TEST(ReadyModeToString, RoundTripsThroughParse) {
  for (const char* text : {"notify", "idle:1", "idle:500", "idle:600000", "delay:1", "delay:30000"}) {
    auto m = parse_ready_mode(text);
    ASSERT_TRUE(m) << text;
    EXPECT_EQ(to_string(*m), text);
    auto again = parse_ready_mode(to_string(*m));
    ASSERT_TRUE(again) << to_string(*m);
    EXPECT_EQ(again->kind, m->kind);
    EXPECT_EQ(again->ms, m->ms);
  }
  // "idle" is shorthand; it prints in full and means the same.
  auto m = parse_ready_mode("idle");
  ASSERT_TRUE(m);
  EXPECT_EQ(to_string(*m), "idle:500");
}

TEST(IdleDetector, FirstSampleNeverCounts) {
  // Without a previous sample there is nothing to compare the CPU time to.
  IdleDetector d(0);
  EXPECT_FALSE(d.sample(0, 'S', 7));
  EXPECT_EQ(d.sample(5, 'S', 7), std::optional<double>(5));
  // Not even with zero CPU time, which a process that has just started may well have.
  IdleDetector fresh(0);
  EXPECT_FALSE(fresh.sample(0, 'S', 0));
}

TEST(IdleDetector, NeedsAWholeWindowAndReturnsWhenIdlenessBegan) {
  IdleDetector d(100);
  EXPECT_FALSE(d.sample(0, 'S', 10));
  EXPECT_FALSE(d.sample(10, 'S', 10));  // idle from here
  EXPECT_FALSE(d.sample(60, 'S', 10));
  EXPECT_FALSE(d.sample(109.5, 'S', 10));  // 99.5 ms: not yet
  EXPECT_EQ(d.sample(110, 'S', 10), std::optional<double>(10));
  // And it stays ready, still reporting the same start, while nothing happens.
  EXPECT_EQ(d.sample(500, 'S', 10), std::optional<double>(10));
}

TEST(IdleDetector, IdleKernelWaitCountsAsAsleep) {
  IdleDetector d(50);
  EXPECT_FALSE(d.sample(0, 'I', 3));
  EXPECT_FALSE(d.sample(10, 'I', 3));
  EXPECT_EQ(d.sample(60, 'S', 3), std::optional<double>(10));
}

TEST(IdleDetector, CpuTimeResetsTheWindow) {
  IdleDetector d(100);
  EXPECT_FALSE(d.sample(0, 'S', 10));
  EXPECT_FALSE(d.sample(10, 'S', 10));
  EXPECT_FALSE(d.sample(90, 'S', 11));  // it ran in between although it sleeps now
  EXPECT_FALSE(d.sample(100, 'S', 11));  // idle again from here
  EXPECT_FALSE(d.sample(150, 'S', 11));  // 140 ms after the first quiet sample: not enough now
  EXPECT_FALSE(d.sample(199, 'S', 11));
  EXPECT_EQ(d.sample(200, 'S', 11), std::optional<double>(100));
}

TEST(IdleDetector, RunningStateResetsTheWindow) {
  IdleDetector d(100);
  EXPECT_FALSE(d.sample(0, 'S', 10));
  EXPECT_FALSE(d.sample(10, 'S', 10));
  EXPECT_FALSE(d.sample(60, 'R', 10));  // on a CPU right now, though no tick was charged yet
  EXPECT_FALSE(d.sample(111, 'S', 10));  // 'R' broke the window begun at 10
  EXPECT_FALSE(d.sample(200, 'S', 10));
  EXPECT_EQ(d.sample(211, 'S', 10), std::optional<double>(111));
}

TEST(IdleDetector, OtherStatesAreNotIdle) {
  // Disk sleep is work in progress; stopped and zombie processes are not waiting for requests.
  for (char state : {'R', 'D', 'T', 't', 'Z'}) {
    IdleDetector d(10);
    EXPECT_FALSE(d.sample(0, state, 1)) << state;
    EXPECT_FALSE(d.sample(100, state, 1)) << state;
    EXPECT_FALSE(d.sample(200, state, 1)) << state;
  }
}

TEST(IdleDetector, ReadyStateIsLostOnActivity) {
  IdleDetector d(50);
  EXPECT_FALSE(d.sample(0, 'S', 1));
  EXPECT_FALSE(d.sample(10, 'S', 1));
  ASSERT_EQ(d.sample(60, 'S', 1), std::optional<double>(10));
  EXPECT_FALSE(d.sample(70, 'S', 2));
  EXPECT_FALSE(d.sample(80, 'S', 2));
  EXPECT_EQ(d.sample(130, 'S', 2), std::optional<double>(80));
}

}  // namespace
}  // namespace prewarm::policy
