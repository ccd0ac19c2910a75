// Which image a launch gets, or why it starts cold: decided over what the daemon found (the app's
// state, its images with their recorded files re-checked and their keys recomputed).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "policy/app_state.h"

namespace prewarm::policy {

struct ImageCandidate {
  std::string key;
  uid_t uid = 0;             // whose image it is
  std::string change;        // the first recorded file that changed ("PATH: why"), "" if none
  bool key_matches = false;  // its key equals this launch's key over its recorded files
};

struct LaunchDecision {
  std::string image;        // the key to restore, "" for a cold start
  std::string stale_image;  // an image found stale: the daemon drops it
  std::string why_cold;     // shown to the user and recorded
  std::string kind;         // the fallback's kind in the history ("" for a first launch)
};

LaunchDecision decide_launch(const AppStatus& status, bool capturing, uid_t app_uid,
                             const std::vector<ImageCandidate>& images);

}  // namespace prewarm::policy
