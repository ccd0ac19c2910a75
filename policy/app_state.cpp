#include "policy/app_state.h"

namespace prewarm::policy {

std::string_view to_string(AppState s) {
  switch (s) {
    case AppState::kNone: return "none";
    case AppState::kValid: return "valid";
    case AppState::kStale: return "stale";
    case AppState::kUnsupported: return "unsupported";
  }
  return "none";
}

std::string_view to_string(LaunchMode m) { return m == LaunchMode::kRestored ? "restored" : "cold"; }

std::optional<AppState> parse_app_state(std::string_view t) {
  if (t == "none" || t == "capturing") return AppState::kNone;
  if (t == "valid") return AppState::kValid;
  if (t == "stale") return AppState::kStale;
  if (t == "unsupported") return AppState::kUnsupported;
  return std::nullopt;
}

AppStatus transition(const AppStatus& now, const AppEvent& e) {
  switch (e.kind) {
    case AppEvent::kRegistered: return {AppState::kNone, ""};
    case AppEvent::kCaptured: return {AppState::kValid, ""};
    case AppEvent::kCaptureUnsupported: return {AppState::kUnsupported, e.reason};
    // A failed or refused capture changes no image: the state stays, the reason says what happened.
    case AppEvent::kCaptureFailed: return {now.state, "capture failed: " + e.reason};
    case AppEvent::kCaptureRefused: return {now.state, "capture refused: " + e.reason};
    case AppEvent::kImageRejected: return {now.state, "image not kept: " + e.reason};
    case AppEvent::kStale: return {AppState::kStale, e.reason};
    case AppEvent::kInvalidated: return {AppState::kNone, e.reason};
    case AppEvent::kImagesGone:
      // Unsupported is a property of the app, not of its images.
      if (now.state == AppState::kUnsupported) return now;
      return {AppState::kNone, e.reason};
    case AppEvent::kRestoreRefused:
      return {e.images_left ? now.state : AppState::kNone, "restore refused: " + e.reason};
  }
  return now;
}

}  // namespace prewarm::policy
