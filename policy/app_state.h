// An app's snapshot state and the one function that moves it: every change of state the daemon
// makes is an event here, so the rules (what is sticky, what a refusal leaves) live in one place.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace prewarm::policy {

enum class AppState { kNone, kValid, kStale, kUnsupported };
enum class LaunchMode { kCold, kRestored };

std::string_view to_string(AppState s);
std::string_view to_string(LaunchMode m);
// Parses the registry's text; an older file's "capturing" (a capture cut short) reads as none.
std::optional<AppState> parse_app_state(std::string_view text);

struct AppStatus {
  AppState state = AppState::kNone;
  std::string reason;  // why: stale, unsupported, refused or failed captures, invalidations
  bool operator==(const AppStatus&) const = default;
};

struct AppEvent {
  enum Kind {
    kRegistered,          // (re-)registered: a new configuration, no images
    kCaptured,            // an image was published
    kCaptureUnsupported,  // the app holds something that cannot be restored: always cold
    kCaptureFailed,       // the dump or its records failed; try again next cold launch
    kCaptureRefused,      // the process was not the one launched (identity, exec, credentials)
    kImageRejected,       // the image was not admitted to the store (its size)
    kStale,               // a recorded file changed
    kInvalidated,         // by a user's request
    kImagesGone,          // every image of the app was removed (eviction, a lost store)
    kRestoreRefused,      // a launcher refused the image before the point of no return
  };
  Kind kind;
  std::string reason;
  bool images_left = false;  // kRestoreRefused: whether other images of the app remain
};

AppStatus transition(const AppStatus& now, const AppEvent& e);

}  // namespace prewarm::policy
