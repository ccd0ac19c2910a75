#include "policy/launch_decision.h"

namespace prewarm::policy {

LaunchDecision decide_launch(const AppStatus& status, bool capturing, uid_t app_uid,
                             const std::vector<ImageCandidate>& images) {
  LaunchDecision d;
  if (capturing) return {"", "", "a snapshot is being captured", "capturing"};
  if (status.state == AppState::kUnsupported) return {"", "", "unsupported: " + status.reason, "unsupported"};
  for (const auto& i : images) {
    // One changed file is enough: the next capture records the new one.
    if (!i.change.empty()) return {"", i.key, "stale: " + i.change, "stale"};
    // Only an image of the app's own user is ever handed out.
    if (i.uid != app_uid) continue;
    if (i.key_matches) return {i.key, "", "", ""};
  }
  if (images.empty()) return {"", "", "no snapshot yet", ""};
  return {"", "", "no snapshot for this launch context (environment, stdio kind or command differ)", "context"};
}

}  // namespace prewarm::policy
