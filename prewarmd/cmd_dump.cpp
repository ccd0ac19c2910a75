// `prewarm dump` and `prewarm restore`: thin wrappers over the engine that report to the user.
#include "prewarmd/cmd_dump.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "policy/attrs.h"
#include "prewarmd/dump_flow.h"
#include "restorer/restore.h"

namespace prewarm::cli {

int run_dump(pid_t pid, const std::string& dir, bool kill_after, bool any_cgroup) {
  DumpOptions opts{.kill = kill_after};
  // A restore runs in its launcher's namespaces and cgroups, as a rule where this dump is taken:
  // the app's must be the same (its cgroups unless --any-cgroup).
  auto here = read_placement(::getpid());
  if (!here) {
    std::fprintf(stderr, "prewarm dump: %s; no image was written\n", here.error().describe().c_str());
    return kExitError;
  }
  if (any_cgroup) here->cgroups.clear();
  opts.launched_in = std::move(*here);
  DumpOutcome r = dump_process(pid, dir, opts);
  switch (r.status) {
    case DumpOutcome::kFailed:
    case DumpOutcome::kRefused:     // only with a verifier, which `prewarm dump` has not
    case DumpOutcome::kOverBudget:  // only with a byte cap, likewise
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
  if (r.attempts > 1)
    std::fprintf(stderr, "prewarm dump: dumped %d times: a mutex held at the first dump was released right after it\n",
                 r.attempts);
  std::fprintf(stderr,
               "prewarm dump: pid %d -> %s: %zu mappings, %lu pages stored (%lu zero pages "
               "skipped, found with %s), frozen %.1f ms, %.1f ms in all\n",
               pid, dir.c_str(), r.stats.mappings, static_cast<unsigned long>(r.stats.pages_stored),
               static_cast<unsigned long>(r.stats.zero_pages_skipped), r.stats.page_finder, r.freeze_ms, r.total_ms);
  return kExitOk;
}

int run_restore(const std::string& dir, bool allow_other_owner, const std::string& on_restore, bool lazy) {
  RestoreOptions options;
  options.lazy = lazy;
  // Lazy restores keep the image's working set beside it, where its owner can write.
  if (lazy)
    options.working_set_fd = ::open((dir + "/workingset").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  options.note = [&](const std::string& what) { std::fprintf(stderr, "prewarm restore: %s: %s\n", dir.c_str(), what.c_str()); };
  if (!on_restore.empty() && (options.on_restore_signal = policy::signal_number(on_restore)) == 0) {
    std::fprintf(stderr, "prewarm restore: --on-restore %s is not a signal an app can catch (e.g. SIGUSR1)\n",
                 on_restore.c_str());
    return kExitUsage;
  }
  // An image is process memory that someone else may have written: restored by another user, it
  // would run that user's code with the caller's credentials (for root: as uid 0).
  auto open_part = [&](const char* part) -> Result<UniqueFd> {
    const std::string path = dir + "/" + part;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return errno_error("open " + path);
    UniqueFd f(fd);
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return errno_error("stat " + path);
    if (!S_ISREG(st.st_mode)) return data_error(path + " is not a regular file");
    if (st.st_uid != ::getuid() && !allow_other_owner)
      return data_error(path + " is owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " +
                        std::to_string(::getuid()) + "); restoring it would run its owner's memory with your "
                        "credentials. Pass --allow-other-owner if you trust it");
    if (::fcntl(f.get(), F_SETFL, 0) != 0) return errno_error("fcntl " + path);
    return f;
  };
  Error e = [&]() -> Error {
    auto manifest = open_part("snapshot.pb");
    if (!manifest) return manifest.error();
    auto pages = open_part("pages.img");
    if (!pages) return pages.error();
    return restore_in_place(std::move(*manifest), std::move(*pages), options);  // returns only on failure
  }();
  const std::string why = e.describe();
  // Errors about the image's own files already name it.
  if (why.starts_with(dir))
    std::fprintf(stderr, "prewarm restore: %s; not restored\n", why.c_str());
  else
    std::fprintf(stderr, "prewarm restore: %s: %s; not restored\n", dir.c_str(), why.c_str());
  return e.unsupported ? kExitUnsupported : kExitError;
}

}  // namespace prewarm::cli
