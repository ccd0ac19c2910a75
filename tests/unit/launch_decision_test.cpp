// Tests which image a launch gets: only the app user's own image with a matching key, stale
// images dropped first, and a reason for every cold start.
#include "policy/launch_decision.h"

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

const AppStatus kValid{AppState::kValid, ""};

TEST(DecideLaunch, RestoresTheOwnersMatchingImage) {
  auto d = decide_launch(kValid, false, 1000, {{"k1", 1000, "", false}, {"k2", 1000, "", true}});
  EXPECT_EQ(d.image, "k2");
  EXPECT_EQ(d.why_cold, "");
}

TEST(DecideLaunch, NeverAnImageOfAnotherUser) {
  auto d = decide_launch(kValid, false, 1000, {{"k", 1001, "", true}});
  EXPECT_EQ(d.image, "");
  EXPECT_EQ(d.kind, "context");
}

TEST(DecideLaunch, StaleImageDroppedAndColdWithTheChange) {
  auto d = decide_launch(kValid, false, 1000, {{"k", 1000, "/usr/lib/libx.so: mtime changed", true}});
  EXPECT_EQ(d.image, "");
  EXPECT_EQ(d.stale_image, "k");
  EXPECT_EQ(d.kind, "stale");
  EXPECT_NE(d.why_cold.find("libx.so"), std::string::npos);
}

TEST(DecideLaunch, CapturingUnsupportedAndFirstLaunch) {
  EXPECT_EQ(decide_launch(kValid, true, 1, {{"k", 1, "", true}}).kind, "capturing");
  auto u = decide_launch({AppState::kUnsupported, "perf ring"}, false, 1, {});
  EXPECT_EQ(u.kind, "unsupported");
  EXPECT_NE(u.why_cold.find("perf ring"), std::string::npos);
  auto first = decide_launch({}, false, 1, {});
  EXPECT_EQ(first.why_cold, "no snapshot yet");
  EXPECT_EQ(first.kind, "");
}

}  // namespace
}  // namespace prewarm::policy
