// Support rules. The field's lesson (CRIU, Chromium): VmFlags `pf io` mark GPU/DRM/device memory
// that cannot be recreated; such mappings must refuse the snapshot, never be skipped silently.
#include "policy/support.h"

#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <cstring>

namespace prewarm::policy {
namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

MappingDecision refuse(std::string why) { return {MappingClass::kRefuse, std::move(why)}; }

}  // namespace

MappingDecision classify_mapping(const Vma& vma, bool regular_file) {
  const std::string& n = vma.name;
  // The kernel's own special mappings carry `pf io` too, and are moved, not refused.
  if (n == "[vsyscall]") return {MappingClass::kSkip, {}};
  if (n == "[vdso]") return {MappingClass::kVdso, {}};
  if (n == "[vvar]") return {MappingClass::kVvar, {}};
  if (n == "[vvar_vclock]") return {MappingClass::kVvarVclock, {}};
  if (vma.vm_flags.has(VmFlag::kPfnMap) || vma.vm_flags.has(VmFlag::kIo))
    return refuse("raw PFN/IO mapping (VmFlags pf/io: GPU, DRM or device memory)");
  if (starts_with(n, "anon_inode:")) return refuse("kernel object mapping (" + n + ")");
  if (starts_with(n, "socket:")) return refuse("socket ring mapping");
  if (starts_with(n, "/SYSV")) return refuse("SysV shared memory");
  if (n == "/dev/zero (deleted)" && vma.shared) return {MappingClass::kSharedAnon, {}};
  if (starts_with(n, "/memfd:")) return refuse("memfd mapping");
  if (vma.is_deleted()) return refuse("mapped file was deleted");
  if (n.empty() || n == "[heap]" || n == "[stack]" || starts_with(n, "[anon:")) {
    if (vma.inode != 0) return refuse("anonymous-looking mapping with an inode");
    if (vma.shared) return {MappingClass::kSharedAnon, {}};
    return {MappingClass::kAnon, {}};
  }
  if (starts_with(n, "/")) {
    if (!regular_file) return refuse("mapping of a device or special file");
    return {MappingClass::kFile, {}};
  }
  return refuse("unknown kind of mapping");
}

FdDecision classify_fd(int fd, const std::string& target, unsigned mode) {
  if (fd <= 2) return {FdClass::kStdio, {}};
  auto refuse_fd = [](std::string why) { return FdDecision{FdClass::kRefuse, std::move(why)}; };
  if (starts_with(target, "socket:")) return {FdClass::kSocket, {}};
  if (starts_with(target, "pipe:")) return {FdClass::kPipe, {}};
  if (target == "anon_inode:[eventfd]") return {FdClass::kEventfd, {}};
  if (target == "anon_inode:[eventpoll]") return {FdClass::kEpoll, {}};
  if (target == "anon_inode:[timerfd]") return {FdClass::kTimerfd, {}};
  if (target == "anon_inode:[signalfd]") return {FdClass::kSignalfd, {}};
  if (target == "anon_inode:inotify") return {FdClass::kInotify, {}};
  if (starts_with(target, "anon_inode:")) return refuse_fd("kernel object fd (" + target + ")");
  if (!starts_with(target, "/")) return refuse_fd("unsupported kind of file (" + target + ")");
  if (starts_with(target, "/memfd:") && target.ends_with(" (deleted)") && (mode & S_IFMT) == S_IFREG)
    return {FdClass::kMemfd, {}};
  if (target.size() > 10 && target.ends_with(" (deleted)")) {
    if ((mode & S_IFMT) == S_IFREG) return {FdClass::kDeleted, {}};
    return refuse_fd("open file was deleted");
  }
  switch (mode & S_IFMT) {
    case S_IFREG: return {FdClass::kRegular, {}};
    case S_IFDIR: return {FdClass::kDirectory, {}};
    case S_IFCHR:
      // Devices without per-open state: reopening gives the same thing.
      for (const char* ok : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
        if (target == ok) return {FdClass::kCharDevice, {}};
      return refuse_fd("character device");
    case S_IFIFO: return refuse_fd("named pipe");
    default: return refuse_fd("unsupported kind of file");
  }
}

std::string format_offender(const Offender& o) {
  char range[64] = "";
  if (o.start != o.end)
    std::snprintf(range, sizeof range, "%lx-%lx ", static_cast<unsigned long>(o.start),
                  static_cast<unsigned long>(o.end));
  std::string out = range;
  out += o.name.empty() ? std::string("(anonymous)") : o.name;
  if (!o.vm_flags.empty()) out += " [VmFlags: " + o.vm_flags + "]";
  out += ": " + o.reason;
  return out;
}

namespace {

std::string signal_names(uint64_t set) {
  std::string out;
  for (int n = 1; n <= 64; ++n) {
    if (!((set >> (n - 1)) & 1)) continue;
    const char* abbrev = n < 32 ? sigabbrev_np(n) : nullptr;
    out += (out.empty() ? "" : ", ") + (abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(n));
  }
  return out;
}

std::string thread_name(const ThreadInfo& t, bool main) {
  return (main ? "main thread " : "thread ") + std::to_string(t.tid) + " (" + t.comm + ")";
}

}  // namespace

std::vector<Offender> check_threads(const std::vector<ThreadInfo>& threads, uint64_t shared_pending) {
  std::vector<Offender> out;
  auto add = [&](std::string name, std::string reason) {
    out.push_back(Offender{0, 0, std::move(name), {}, std::move(reason)});
  };
  if (threads.size() > kMaxThreads)
    add("threads", "process has " + std::to_string(threads.size()) + " threads; at most " +
                       std::to_string(kMaxThreads) + " are restored");
  if (shared_pending)
    add("signals", "pending for the process and not carried: " + signal_names(shared_pending));
  for (size_t i = 0; i < threads.size(); ++i) {
    const ThreadInfo& t = threads[i];
    const std::string name = thread_name(t, i == 0);
    if (t.pending) add(name, "signals pending for the thread and not carried: " + signal_names(t.pending));
    if (i > 0 && t.credentials != threads[0].credentials)
      add(name, "its credentials, capabilities or seccomp filters differ from the main thread's; a restore "
                "gives every thread the launcher's one set");
    const Placement &own = t.placement, &main = threads[0].placement;
    if (i > 0 && (own.ns != main.ns || own.lsm_label != main.lsm_label))
      add(name, "its namespaces or security label differ from the main thread's (unshare, setns or change_hat in "
                "that thread); a restore gives every thread the launcher's");
    if (i > 0 && own.cgroups != main.cgroups)
      add(name, "its cgroups differ from the main thread's; a restore puts every thread in the launcher's");
    if (i > 0 && t.scheduling != threads[0].scheduling)
      add(name, "its scheduling (" + t.scheduling + ") differs from the main thread's (" + threads[0].scheduling +
                    "); a restore gives every thread the main thread's");
    if (!t.rseq_unreadable.empty())
      add(name, "its rseq registration cannot be read (" + t.rseq_unreadable +
                    "; Linux 5.13+ has it), so a restore would lose it");
    if (!t.robust_held.empty() || t.robust_op_pending) {
      char at[32] = "";
      if (!t.robust_held.empty())
        std::snprintf(at, sizeof at, " at 0x%lx", static_cast<unsigned long>(t.robust_held[0]));
      add(name, std::string("holds a robust mutex") + at +
                    (t.robust_op_pending ? " (or is taking one)" : "") +
                    "; its futex word names the thread's tid, which changes on restore");
    }
  }
  return out;
}

}  // namespace prewarm::policy
