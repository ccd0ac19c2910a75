// The attribute allow-list. Each table row says what becomes of one field on restore; README's
// "What a restore carries" lists the same.
#include "policy/attrs.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace prewarm::policy {
namespace {

using F = AttrFate;

constexpr AttrRule carried(std::string_view why = {}) { return {F::kCarried, {}, why}; }
constexpr AttrRule own(std::string_view why = {}) { return {F::kLaunchOwn, {}, why}; }
constexpr AttrRule recomputed() { return {F::kRecomputed, {}, {}}; }
constexpr AttrRule match(std::string_view why) { return {F::kMatch, {}, why}; }
constexpr AttrRule only(std::string_view value, std::string_view why) { return {F::kDefaultOnly, value, why}; }

const std::map<std::string_view, AttrRule>& status_table() {
  static const std::map<std::string_view, AttrRule> t = {
      {"Name", carried("command name (PR_SET_NAME)")},
      {"Umask", carried()},
      {"State", recomputed()},
      {"Tgid", own("pid")},
      {"Ngid", recomputed()},
      {"Pid", own("pid")},
      {"PPid", own("parent")},
      {"TracerPid", own("tracer")},
      {"Uid", own("credentials")},
      {"Gid", own("credentials")},
      {"FDSize", recomputed()},
      {"Groups", own("supplementary groups")},
      {"NStgid", own("pid")},
      {"NSpid", own("pid")},
      {"NSpgid", own("process group")},
      {"NSsid", own("session")},
      {"Kthread", only("0", "kernel thread")},
      {"VmPeak", recomputed()},
      {"VmSize", recomputed()},
      {"VmLck", recomputed()},  // the mlocked ranges themselves are VmFlags lo/lf
      {"VmPin", only("0 kB", "pinned pages (RDMA, io_uring buffers)")},
      {"VmHWM", recomputed()},
      {"VmRSS", recomputed()},
      {"RssAnon", recomputed()},
      {"RssFile", recomputed()},
      {"RssShmem", recomputed()},
      {"VmData", recomputed()},
      {"VmStk", recomputed()},
      {"VmExe", recomputed()},
      {"VmLib", recomputed()},
      {"VmPTE", recomputed()},
      {"VmSwap", recomputed()},
      {"HugetlbPages", only("0 kB", "hugetlbfs pages")},
      {"CoreDumping", only("0", "core dump in progress")},
      {"THP_enabled", carried("PR_SET_THP_DISABLE")},
      {"untag_mask", only("0xffffffffffffffff", "linear address masking (LAM)")},
      {"Threads", carried("threads")},
      {"SigQ", recomputed()},  // the pending signals themselves are SigPnd/ShdPnd
      {"SigPnd", only("0000000000000000", "pending signals (they would be lost)")},
      {"ShdPnd", only("0000000000000000", "pending signals (they would be lost)")},
      {"SigBlk", carried()},
      {"SigIgn", carried()},
      {"SigCgt", carried()},
      {"CapInh", own("credentials")},
      {"CapPrm", own("credentials")},
      {"CapEff", own("credentials")},
      {"CapBnd", own("credentials")},
      {"CapAmb", own("credentials")},
      {"NoNewPrivs", carried("PR_SET_NO_NEW_PRIVS")},
      {"Seccomp", match("seccomp mode")},
      {"Seccomp_filters", match("seccomp filters")},
      {"Speculation_Store_Bypass", match("speculation control")},
      {"SpeculationIndirectBranch", match("speculation control")},
      {"Cpus_allowed", match("CPU affinity")},
      {"Cpus_allowed_list", match("CPU affinity")},
      {"Mems_allowed", match("memory node affinity")},
      {"Mems_allowed_list", match("memory node affinity")},
      {"voluntary_ctxt_switches", recomputed()},
      {"nonvoluntary_ctxt_switches", recomputed()},
      {"x86_Thread_features", only("", "x86 shadow stack")},
      {"x86_Thread_features_locked", only("", "x86 shadow stack")},
  };
  return t;
}

// VmFlags of a mapping prewarm maps again. Carried: protections and mapping flags (rd wr ex sh,
// the may-flags, gd), madvise state (hg nh dc wf dd sr rr mg) and mlock (lo lf: mlock2 again); recomputed: kernel accounting (ac nr
// sd). Everything else refuses the snapshot, and so does a mnemonic this prewarm cannot decode.
// A switch without a default: a flag added to VmFlag does not compile until it has a fate here.
std::optional<std::string_view> flag_refused(VmFlag f) {
  using V = VmFlag;
  switch (f) {
    case V::kRead: case V::kWrite: case V::kExec: case V::kShared: case V::kMayRead:
    case V::kMayWrite: case V::kMayExec: case V::kMayShare: case V::kGrowsDown: case V::kAccount:
    case V::kNoReserve: case V::kSoftDirty: case V::kHugePage: case V::kNoHugePage:
    case V::kDontCopy: case V::kWipeOnFork: case V::kDontDump: case V::kLocked: case V::kLockOnFault:
    case V::kSeqRead: case V::kRandRead: case V::kMergeable:
      return std::nullopt;
    case V::kPfnMap: return "raw PFN mapping";
    case V::kIo: return "I/O memory";
    case V::kDontExpand: return "not expandable (a kernel object's mapping)";
    case V::kMixedMap: return "mixed map (a kernel object's mapping)";
    case V::kHugetlb: return "hugetlbfs";
    case V::kSync: return "MAP_SYNC";
    case V::kArch1: return "architecture-specific flag";
    case V::kUffdMissing: return "userfaultfd (missing) registration";
    case V::kUffdWp: return "userfaultfd (write-protect) registration";
    case V::kUffdMinor: return "userfaultfd (minor) registration";
    case V::kShadowStack: return "shadow stack";
    case V::kSealed: return "sealed (mseal)";
    case V::kDroppable: return "droppable";
    case V::kArm64Bti: return "arm64 branch target identification";
    case V::kArm64Mte: return "arm64 memory tagging";
  }
  return "unknown to this prewarm";  // a value outside the enum, as from_bits can make
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

Offender named(std::string name, std::string reason) { return Offender{0, 0, std::move(name), {}, std::move(reason)}; }

}  // namespace

std::optional<AttrRule> status_rule(std::string_view key) {
  auto it = status_table().find(key);
  if (it == status_table().end()) return std::nullopt;
  return it->second;
}

std::optional<AttrRule> stat_rule(int f) {
  if (f < 1 || f > 52) return std::nullopt;
  if (f == 2 || f == 19 || f == 20 || f == 25 || (f >= 26 && f <= 34) || (f >= 45 && f <= 51))
    return carried();  // comm, nice, threads, rsslim, mm layout, stack/ip (registers), signals
  if (f == 1 || (f >= 4 && f <= 8) || f == 22 || f == 38) return own("pid, parent, session, tty, start time");
  if (f == 21) return only("0", "itrealvalue");
  if (f == 40) return match("real-time priority");
  if (f == 41) return match("scheduling policy");
  return recomputed();  // state, flags, fault and time counters, sizes, wchan, cpu, exit code
}

std::string vm_flags_refusal(const Vma& vma) {
  if (vma.name == "[vdso]" || vma.name == "[vvar]" || vma.name == "[vvar_vclock]" || vma.name == "[vsyscall]")
    return {};
  std::string out;
  for_each_vm_flag(vma.vm_flags, [&](std::optional<VmFlag> f, std::string_view word) {
    const std::optional<std::string_view> why = f ? flag_refused(*f) : "unknown to this prewarm";
    if (!why) return;
    if (!out.empty()) out += ", ";
    out += "VmFlags " + std::string(word) + ": " + std::string(*why);
  });
  if (!out.empty()) out += " (not carried)";
  return out;
}

AttrVerdict check_attrs(const ProcAttrs& a, const std::vector<int>& plain_fds) {
  AttrVerdict v;
  auto& off = v.offenders;
  for (const auto& [key, value] : a.status) {
    auto rule = status_rule(key);
    if (!rule) {
      off.push_back(named("status " + key, "a /proc status field unknown to this prewarm (value: " + value + ")"));
    } else if (rule->fate == F::kDefaultOnly && value != rule->default_value) {
      off.push_back(named("status " + key, std::string(rule->why) + " is not carried (value: " + value + ")"));
    } else if (rule->fate == F::kMatch) {
      v.match_keys.push_back(key);
    }
  }
  for (size_t i = 0; i < a.stat.size(); ++i) {
    const int field = static_cast<int>(i) + 1;
    auto rule = stat_rule(field);
    if (!rule) {
      off.push_back(named("stat field " + std::to_string(field), "unknown to this prewarm (value: " + a.stat[i] + ")"));
    } else if (rule->fate == F::kDefaultOnly && a.stat[i] != rule->default_value) {
      off.push_back(named("stat field " + std::to_string(field), std::string(rule->why) + " is not carried"));
    } else if (rule->fate == F::kMatch) {
      v.match_keys.push_back("stat:" + std::to_string(field));
    }
  }
  for (int c : a.children)
    off.push_back(named("child process " + std::to_string(c),
                        "child processes (zombies too) are not carried: the restored process would have none "
                        "(its wait() gives ECHILD)"));
  for (const auto& t : a.timers)
    if (!t.carried) off.push_back(named("POSIX timer " + std::to_string(t.id),
                        "timer_create timer (clock " + t.clock + ", notify " + t.notify + ") is not carried"));

  auto plain = [&](int fd) { return std::find(plain_fds.begin(), plain_fds.end(), fd) != plain_fds.end(); };
  for (const auto& l : a.locks) {
    if (!plain(l.fd)) continue;
    // flock and OFD locks belong to the open file, which the restore reopens and locks again.
    // POSIX locks belong to the process and go away when any fd on the file is closed: the blob
    // takes them after the launcher's fds are closed. Leases and delegations are not carried.
    const bool carried = (l.kind == "FLOCK" || l.kind == "OFDLCK" || l.kind == "POSIX") && l.mode == "ADVISORY" &&
                         (l.access == "READ" || l.access == "WRITE");
    if (l.parsed && carried) continue;
    const bool lease = l.kind == "LEASE" || l.kind == "DELEG" || l.line.find("LEASE") != std::string::npos;
    off.push_back(named("fd " + std::to_string(l.fd) + " " + (lease ? "lease" : "lock"),
                        std::string(lease ? "file lease" : "file lock") + " (" + l.line + ") is not carried"));
  }
  for (const auto& [fd, key] : a.fdinfo_keys) {
    if (!plain(fd) || key == "pos" || key == "flags" || key == "mnt_id" || key == "ino" || key == "lock") continue;
    off.push_back(named("fd " + std::to_string(fd), "fdinfo field " + key + " unknown to this prewarm"));
  }

  const auto& p = a.prctl;
  // A getter the kernel does not have (-EINVAL) means the feature is absent: the default.
  auto refuse_unless = [&](long value, long def, const char* name, const char* what) {
    if (value == def || value == -22) return;
    off.push_back(named(name, std::string(what) + " is not carried (value " + std::to_string(value) + ")"));
  };
  refuse_unless(p.dumpable, 1, "prctl PR_GET_DUMPABLE", "non-default dumpable mode");
  refuse_unless(p.mce_kill, 2 /* PR_MCE_KILL_DEFAULT */, "prctl PR_MCE_KILL_GET", "machine-check kill policy");
  refuse_unless(p.tsc, 1 /* PR_TSC_ENABLE */, "prctl PR_GET_TSC", "rdtsc trapping");
  refuse_unless(p.io_flusher, 0, "prctl PR_GET_IO_FLUSHER", "IO flusher mode");
  refuse_unless(p.memory_merge, 0, "prctl PR_GET_MEMORY_MERGE", "KSM for the whole process");
  refuse_unless(p.mdwe, 0, "prctl PR_GET_MDWE", "memory-deny-write-execute");
  if (p.cpuid != 1 && p.cpuid != -22 && p.cpuid != -19 /* ENODEV: no CPUID faulting */)
    off.push_back(named("arch_prctl ARCH_GET_CPUID", "CPUID faulting is not carried"));
  if (p.child_subreaper < 0 || p.pdeathsig < 0 || p.thp_disable < 0 || p.timerslack_ns < 0)
    off.push_back(named("prctl", "a carried prctl attribute could not be read"));
  if (p.membarrier < 0)
    off.push_back(named("membarrier", "registrations cannot be read (MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3+)"));
  if (p.mlock_future)
    off.push_back(named(p.mlock_onfault ? "mlockall(MCL_FUTURE|MCL_ONFAULT)" : "mlockall(MCL_FUTURE)",
                        "locking of future mappings is not carried"));
  return v;
}

std::optional<std::string> proc_self_path(const std::string& target, int pid) {
  if (!target.starts_with("/proc/")) return std::nullopt;
  std::string_view rest = std::string_view(target).substr(6);
  const size_t slash = rest.find('/');
  std::string_view first = rest.substr(0, slash);
  if (!all_digits(first)) return std::nullopt;
  if (first != std::to_string(pid)) return std::string();
  if (slash == std::string_view::npos) return std::string("/proc/self");
  rest = rest.substr(slash);  // "/..." after the pid
  const std::string task = "/task/" + std::to_string(pid);
  if (rest == task) return std::string("/proc/thread-self");
  if (rest.starts_with(task + "/")) return "/proc/thread-self" + std::string(rest.substr(task.size()));
  if (rest.starts_with("/task/")) return std::string();  // another thread: threads are not carried here
  return "/proc/self" + std::string(rest);
}

}  // namespace prewarm::policy

#include <signal.h>
#include <string.h>

namespace prewarm::policy {

int signal_number(std::string_view name) {
  std::string n(name);
  for (auto& c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (n.starts_with("SIG")) n.erase(0, 3);
  int sig = 0;
  if (all_digits(n)) {
    sig = n.size() <= 2 ? std::stoi(n) : 0;
  } else if (n.starts_with("RTMIN")) {
    std::string off = n.substr(5);
    if (off.empty()) sig = SIGRTMIN;
    else if (off[0] == '+' && all_digits(off.substr(1)) && off.size() <= 3) sig = SIGRTMIN + std::stoi(off.substr(1));
  } else {
    for (int s = 1; s < 32 && sig == 0; ++s)
      if (const char* abbrev = sigabbrev_np(s); abbrev != nullptr && n == abbrev) sig = s;
  }
  if (sig < 1 || sig > SIGRTMAX || sig == SIGKILL || sig == SIGSTOP) return 0;
  return sig;
}

}  // namespace prewarm::policy
