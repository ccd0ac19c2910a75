// Tests the app state machine: what each event leaves, what is sticky (unsupported), and the
// registry's text form of the states.
#include "policy/app_state.h"

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

using E = AppEvent;

TEST(AppState, TextRoundTripsAndOldCapturingReadsAsNone) {
  for (auto s : {AppState::kNone, AppState::kValid, AppState::kStale, AppState::kUnsupported})
    EXPECT_EQ(parse_app_state(to_string(s)), s);
  EXPECT_EQ(parse_app_state("capturing"), AppState::kNone);
  EXPECT_EQ(parse_app_state("bogus"), std::nullopt);
  EXPECT_EQ(to_string(LaunchMode::kCold), "cold");
  EXPECT_EQ(to_string(LaunchMode::kRestored), "restored");
}

TEST(AppState, CaptureOutcomes) {
  const AppStatus none{};
  EXPECT_EQ(transition(none, {E::kCaptured}), (AppStatus{AppState::kValid, ""}));
  EXPECT_EQ(transition(none, {E::kCaptureUnsupported, "fd 5 -> socket"}),
            (AppStatus{AppState::kUnsupported, "fd 5 -> socket"}));
  // Failed, refused and rejected captures change no image, so not the state either.
  const AppStatus stale{AppState::kStale, "libfoo changed"};
  EXPECT_EQ(transition(stale, {E::kCaptureFailed, "x"}), (AppStatus{AppState::kStale, "capture failed: x"}));
  EXPECT_EQ(transition(none, {E::kCaptureRefused, "euid changed"}),
            (AppStatus{AppState::kNone, "capture refused: euid changed"}));
  EXPECT_EQ(transition(none, {E::kImageRejected, "over the budget"}).reason, "image not kept: over the budget");
}

TEST(AppState, UnsupportedIsStickyUntilRegisteredAgain) {
  const AppStatus u{AppState::kUnsupported, "perf ring"};
  EXPECT_EQ(transition(u, {E::kImagesGone, "evicted"}), u);
  EXPECT_EQ(transition(u, {E::kRegistered}), (AppStatus{AppState::kNone, ""}));
}

TEST(AppState, InvalidationStaleAndRefusedRestores) {
  const AppStatus valid{AppState::kValid, ""};
  EXPECT_EQ(transition(valid, {E::kStale, "/usr/bin/x: mtime"}), (AppStatus{AppState::kStale, "/usr/bin/x: mtime"}));
  EXPECT_EQ(transition(valid, {E::kInvalidated, "by uid 0"}), (AppStatus{AppState::kNone, "by uid 0"}));
  EXPECT_EQ(transition(valid, {E::kImagesGone, "evicted"}), (AppStatus{AppState::kNone, "evicted"}));
  EXPECT_EQ(transition(valid, {E::kRestoreRefused, "bad checksum", true}),
            (AppStatus{AppState::kValid, "restore refused: bad checksum"}));
  EXPECT_EQ(transition(valid, {E::kRestoreRefused, "bad checksum", false}).state, AppState::kNone);
}

}  // namespace
}  // namespace prewarm::policy
