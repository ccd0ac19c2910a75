// A capture, run in a child of prewarmd: dump the ready app, record the files it depends on,
// compute the snapshot key. The outcome goes to INCOMING.result.json for the daemon to publish.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "policy/launch_key.h"

namespace prewarm {

struct CaptureResult {
  std::string status = "failed";  // "ok", "unsupported", "failed"
  std::string message;
  std::string key;
  std::vector<policy::FileRecord> files;
  double freeze_ms = 0;
};

// Returns the child's exit code; the result file is written in every case it can be.
int run_capture_child(pid_t pid, unsigned delay_ms, const std::string& incoming, const policy::LaunchContext& ctx,
                      const std::vector<std::string>& argv, const std::string& cwd,
                      const std::vector<std::string>& watch);

// Reads (and removes) the result; a missing or garbled file is a failed capture.
CaptureResult read_capture_result(const std::string& incoming);

}  // namespace prewarm
