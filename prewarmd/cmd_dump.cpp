// The dump and restore commands: each a short list of named steps over the engine libraries.
#include "prewarmd/cmd_dump.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <vector>

#include "policy/support.h"
#include "restorer/restore.h"
#include "snapshot/dump.h"

namespace prewarm::cli {
namespace {

std::optional<pb::Mapping::Kind> kind_for(policy::MappingClass c) {
  switch (c) {
    case policy::MappingClass::kAnon: return pb::Mapping::ANON;
    case policy::MappingClass::kFile: return pb::Mapping::FILE;
    case policy::MappingClass::kSharedAnon: return pb::Mapping::SHARED_ANON;
    case policy::MappingClass::kVdso: return pb::Mapping::VDSO;
    case policy::MappingClass::kVvar: return pb::Mapping::VVAR;
    case policy::MappingClass::kVvarVclock: return pb::Mapping::VVAR_VCLOCK;
    case policy::MappingClass::kSkip:
    case policy::MappingClass::kRefuse: break;
  }
  return std::nullopt;
}

}  // namespace

int run_dump(pid_t pid, const std::string& dir, bool kill_after) {
  const auto t0 = std::chrono::steady_clock::now();
  // 1. Freeze: from here until detach the process runs no instruction.
  auto frozen = FrozenProcess::seize(pid);
  if (!frozen) {
    std::fprintf(stderr, "prewarm dump: cannot freeze pid %d: %s (is it running, and may this user ptrace it?)\n",
                 pid, frozen.error().describe().c_str());
    return kExitError;
  }
  // 2. Collect /proc and register state.
  auto state = collect_state(*frozen);
  if (!state) {
    std::fprintf(stderr, "prewarm dump: pid %d: %s\n", pid, state.error().describe().c_str());
    return kExitError;
  }
  // 3. Policy: everything unsupported is reported at once, and the process is left running.
  std::vector<policy::Offender> offenders = policy::check_threads(state->threads);
  std::vector<std::optional<pb::Mapping::Kind>> kinds;
  for (size_t i = 0; i < state->vmas.size(); ++i) {
    const Vma& v = state->vmas[i];
    const auto& f = state->vma_files[i];
    auto d = policy::classify_mapping(v, f.exists && S_ISREG(f.st.st_mode));
    if (d.cls == policy::MappingClass::kRefuse)
      offenders.push_back({v.start, v.end, v.name, v.vm_flags_text(), d.reason});
    kinds.push_back(kind_for(d.cls));
  }
  std::vector<pb::OpenFile> files;
  for (const auto& fd : state->fds) {
    auto d = policy::classify_fd(fd.fd, fd.target, fd.stat_ok ? fd.st.st_mode : 0);
    if (d.cls == policy::FdClass::kRefuse)
      offenders.push_back({0, 0, "fd " + std::to_string(fd.fd) + " -> " + fd.target, {}, d.reason});
    else if (d.cls != policy::FdClass::kStdio)
      files.push_back(open_file_record(fd, d.cls == policy::FdClass::kDirectory,
                                       d.cls == policy::FdClass::kCharDevice));
  }
  if (!offenders.empty()) {
    std::fprintf(stderr, "prewarm dump: pid %d cannot be snapshotted:\n", pid);
    for (const auto& o : offenders) std::fprintf(stderr, "  %s\n", policy::format_offender(o).c_str());
    std::fprintf(stderr, "no image was written; the process keeps running\n");
    return kExitUnsupported;
  }
  // 4. Pages and manifest, published atomically.
  auto stats = write_image(*state, kinds, files, dir);
  if (!stats) {
    std::fprintf(stderr, "prewarm dump: pid %d: %s; no image was written\n", pid,
                 stats.error().describe().c_str());
    return kExitError;
  }
  // 5. Let the process go on, or end it.
  if (kill_after) frozen->kill();
  else if (auto d = frozen->detach(); !d)
    std::fprintf(stderr, "prewarm dump: warning: %s\n", d.error().describe().c_str());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "prewarm dump: pid %d -> %s: %zu mappings, %lu pages stored (%lu zero pages skipped), %.1f ms\n",
               pid, dir.c_str(), stats->mappings, static_cast<unsigned long>(stats->pages_stored),
               static_cast<unsigned long>(stats->zero_pages_skipped), ms);
  return kExitOk;
}

int run_restore(const std::string& dir) {
  Error e = restore_in_place(dir);  // returns only on failure
  std::fprintf(stderr, "prewarm restore: %s: %s\n", dir.c_str(), e.describe().c_str());
  return kExitError;
}

}  // namespace prewarm::cli
