// Snapshotting a live process, shared by `prewarm dump` and prewarmd's capture: freeze, collect,
// apply the support policy, write the image, let the process go (or end it).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "snapshot/dump.h"

namespace prewarm {

struct DumpOutcome {
  enum Status { kOk, kUnsupported, kFailed } status = kFailed;
  std::string message;                 // kFailed: what went wrong
  std::vector<std::string> offenders;  // kUnsupported: one formatted line each
  DumpStats stats;
  double freeze_ms = 0;                // how long the process was stopped
  double total_ms = 0;
};

// Writes a complete image to `dir` or nothing at all; the process keeps running unless `kill`.
DumpOutcome dump_process(pid_t pid, const std::string& dir, bool kill);

}  // namespace prewarm
