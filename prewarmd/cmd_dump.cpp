// `prewarm dump` and `prewarm restore`: thin wrappers over the engine that report to the user.
#include "prewarmd/cmd_dump.h"

#include <cstdio>

#include "prewarmd/dump_flow.h"
#include "restorer/restore.h"

namespace prewarm::cli {

int run_dump(pid_t pid, const std::string& dir, bool kill_after) {
  DumpOutcome r = dump_process(pid, dir, kill_after);
  switch (r.status) {
    case DumpOutcome::kFailed:
      std::fprintf(stderr, "prewarm dump: %s; no image was written\n", r.message.c_str());
      return kExitError;
    case DumpOutcome::kUnsupported:
      std::fprintf(stderr, "prewarm dump: pid %d cannot be snapshotted:\n", pid);
      for (const auto& o : r.offenders) std::fprintf(stderr, "  %s\n", o.c_str());
      std::fprintf(stderr, "no image was written; the process keeps running\n");
      return kExitUnsupported;
    case DumpOutcome::kOk: break;
  }
  if (!r.message.empty()) std::fprintf(stderr, "prewarm dump: %s\n", r.message.c_str());
  std::fprintf(stderr,
               "prewarm dump: pid %d -> %s: %zu mappings, %lu pages stored (%lu zero pages "
               "skipped), frozen %.1f ms, %.1f ms in all\n",
               pid, dir.c_str(), r.stats.mappings, static_cast<unsigned long>(r.stats.pages_stored),
               static_cast<unsigned long>(r.stats.zero_pages_skipped), r.freeze_ms, r.total_ms);
  return kExitOk;
}

int run_restore(const std::string& dir) {
  Error e = restore_in_place(dir);  // returns only on failure
  const std::string why = e.describe();
  // Errors about the image's own files already name it.
  if (why.starts_with(dir))
    std::fprintf(stderr, "prewarm restore: %s; not restored\n", why.c_str());
  else
    std::fprintf(stderr, "prewarm restore: %s: %s; not restored\n", dir.c_str(), why.c_str());
  return kExitError;
}

}  // namespace prewarm::cli
