// Tests the attribute allow-list: every field this kernel prints in /proc/self/status and stat has
// a rule, unknown fields and VmFlags refuse by name, non-default values of the refused attributes
// refuse, and /proc/PID paths map to the restored process's own.
#include "policy/attrs.h"

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "snapshot/proc_attrs.h"
#include "snapshot/unique_fd.h"

namespace prewarm::policy {
namespace {

// The fields of a real, ordinary process (this one): nothing refused, nothing unknown.
ProcAttrs own_attrs() {
  ProcAttrs a;
  auto status = read_file("/proc/self/status");
  EXPECT_TRUE(status);
  a.status = parse_status_fields(*status);
  auto stat = read_file("/proc/self/stat");
  auto fields = parse_stat_fields(*stat);
  EXPECT_TRUE(fields);
  a.stat = *fields;
  a.prctl.mce_kill = 2;
  a.prctl.tsc = 1;
  a.prctl.cpuid = 1;
  return a;
}

std::string all_reasons(const AttrVerdict& v) {
  std::string out;
  for (const auto& o : v.offenders) out += format_offender(o) + "\n";
  return out;
}

TEST(PolicyAttrs, EveryFieldOfThisKernelHasARule) {
  ProcAttrs a = own_attrs();
  for (const auto& [key, value] : a.status) EXPECT_TRUE(status_rule(key)) << "no rule for status " << key;
  for (size_t i = 0; i < a.stat.size(); ++i) EXPECT_TRUE(stat_rule(static_cast<int>(i) + 1)) << "stat field " << i + 1;
  auto v = check_attrs(a, {});
  EXPECT_TRUE(v.offenders.empty()) << all_reasons(v);
  // The fields no restore sets and no launch chooses are checked again at restore.
  for (const char* key : {"Seccomp", "Seccomp_filters", "Cpus_allowed_list", "stat:41"})
    EXPECT_NE(std::find(v.match_keys.begin(), v.match_keys.end(), key), v.match_keys.end()) << key;
}

TEST(PolicyAttrs, UnknownStatusFieldIsRefusedByName) {
  ProcAttrs a = own_attrs();
  a.status.emplace_back("Frobnicated", "yes");
  auto v = check_attrs(a, {});
  ASSERT_EQ(v.offenders.size(), 1u) << all_reasons(v);
  EXPECT_EQ(v.offenders[0].name, "status Frobnicated");
  EXPECT_NE(format_offender(v.offenders[0]).find("unknown"), std::string::npos);
}

TEST(PolicyAttrs, NonDefaultValuesAreRefused) {
  ProcAttrs a = own_attrs();
  for (auto& [key, value] : a.status) {
    if (key == "SigPnd") value = "0000000000000200";
    if (key == "VmPin") value = "8 kB";
  }
  // Printed only by kernels built with user shadow stacks.
  std::erase_if(a.status, [](const auto& kv) { return kv.first == "x86_Thread_features"; });
  a.status.emplace_back("x86_Thread_features", "shstk");
  a.timers.push_back({0, "14/0000000000000000", "signal/pid.1", "1"});
  a.prctl.dumpable = 0;
  a.prctl.mlock_future = true;
  a.prctl.membarrier = -22;
  a.children = {4242};
  auto v = check_attrs(a, {});
  const std::string all = all_reasons(v);
  for (const char* named : {"status SigPnd", "status VmPin", "status x86_Thread_features", "POSIX timer 0",
                            "PR_GET_DUMPABLE", "mlockall(MCL_FUTURE)", "membarrier", "child process 4242"})
    EXPECT_NE(all.find(named), std::string::npos) << named << " not in:\n" << all;
  EXPECT_EQ(v.offenders.size(), 8u) << all;
}

TEST(PolicyAttrs, LocksAndLeasesOnFilesAreRefused) {
  ProcAttrs a = own_attrs();
  // Carried (the blob takes it): an advisory POSIX lock. Refused: a waiter on one ("->").
  parse_fdinfo_attrs(3, "pos:\t0\nflags:\t02\nmnt_id:\t20\nino:\t12\nlock:\t1: POSIX  ADVISORY  WRITE 99 00:1a:12 0 9\n"
                        "lock:\t1: -> POSIX  ADVISORY  WRITE 98 00:1a:12 0 9\n", a);
  parse_fdinfo_attrs(4, "pos:\t0\nflags:\t0\nmnt_id:\t20\nino:\t13\nlock:\t2: LEASE  ACTIVE    READ  99 00:1a:13 0 EOF\n", a);
  parse_fdinfo_attrs(5, "pos:\t0\nflags:\t0\nmnt_id:\t20\nino:\t14\nnewkey:\t1\n", a);
  parse_fdinfo_attrs(6, "pos:\t0\nflags:\t0\neventfd-count:\t1\n", a);  // not a plain file: not ours
  // Carried: they belong to the open file, which the restore reopens.
  parse_fdinfo_attrs(7, "pos:\t0\nflags:\t02\nlock:\t3: FLOCK  ADVISORY  WRITE 99 00:1a:15 0 EOF\n", a);
  parse_fdinfo_attrs(8, "pos:\t0\nflags:\t02\nlock:\t4: OFDLCK ADVISORY  READ  -1 00:1a:16 10 19\n", a);
  auto v = check_attrs(a, {3, 4, 5, 7, 8});
  const std::string all = all_reasons(v);
  EXPECT_NE(all.find("fd 3 lock: file lock (1: -> POSIX"), std::string::npos) << all;
  EXPECT_EQ(all.find("(1: POSIX"), std::string::npos) << all;
  EXPECT_NE(all.find("fd 4 lease: file lease"), std::string::npos) << all;
  EXPECT_NE(all.find("fd 5: fdinfo field newkey"), std::string::npos) << all;
  EXPECT_EQ(v.offenders.size(), 3u) << all;
}

Vma vma_with(const std::vector<std::string>& flags, std::string name = "") {
  Vma v;
  v.start = 0x1000;
  v.end = 0x2000;
  v.name = std::move(name);
  std::string text;
  for (const auto& f : flags) text += f + " ";
  v.vm_flags = parse_vm_flags(text);
  return v;
}

TEST(PolicyAttrs, LockLinesParse) {
  FdLock l = parse_lock_line(8, "4: OFDLCK ADVISORY  READ  -1 00:1a:16 10 19");
  EXPECT_TRUE(l.parsed);
  EXPECT_EQ(l.kind, "OFDLCK");
  EXPECT_EQ(l.access, "READ");
  EXPECT_EQ(l.start, 10u);
  EXPECT_EQ(l.end, 20u);
  FdLock e = parse_lock_line(7, "3: FLOCK  ADVISORY  WRITE 99 00:1a:15 0 EOF");
  EXPECT_TRUE(e.parsed);
  EXPECT_EQ(e.end, 0u);
  EXPECT_FALSE(parse_lock_line(7, "3: -> FLOCK  ADVISORY  WRITE 99 00:1a:15 0 EOF").parsed);
}

TEST(PolicyAttrs, VmFlagsAllowList) {
  EXPECT_EQ(vm_flags_refusal(vma_with({"rd", "wr", "mr", "mw", "me", "ac", "sd", "hg", "dd"})), "");
  EXPECT_EQ(vm_flags_refusal(vma_with({"rd", "wr", "lo", "lf", "sr", "rr", "mg"})), "") << "mlock, madvise and KSM are carried";
  EXPECT_NE(vm_flags_refusal(vma_with({"rd", "zz"})).find("VmFlags zz: unknown"), std::string::npos);
  // Refused flags are named in the kernel's order, unknown ones where the kernel printed them.
  EXPECT_EQ(vm_flags_refusal(vma_with({"rd", "wr", "um", "gu", "ht", "ac", "qq"})),
            "VmFlags um: userfaultfd (missing) registration, VmFlags gu: unknown to this prewarm, "
            "VmFlags ht: hugetlbfs, VmFlags qq: unknown to this prewarm (not carried)");
  // The kernel's own special mappings are moved, whatever their flags.
  EXPECT_EQ(vm_flags_refusal(vma_with({"rd", "mr", "pf", "io", "de", "dd"}, "[vvar]")), "");
}

TEST(PolicyAttrs, EveryVmFlagOfThisProcessIsKnown) {
  auto vmas = read_smaps(0);
  ASSERT_TRUE(vmas);
  for (const auto& v : *vmas) {
    const std::string why = vm_flags_refusal(v);
    EXPECT_EQ(why.find("unknown"), std::string::npos) << v.name << ": " << why;
  }
}

TEST(PolicyAttrs, ProcSelfPaths) {
  EXPECT_EQ(proc_self_path("/proc/42/status", 42), "/proc/self/status");
  EXPECT_EQ(proc_self_path("/proc/42", 42), "/proc/self");
  EXPECT_EQ(proc_self_path("/proc/42/task/42/stat", 42), "/proc/thread-self/stat");
  EXPECT_EQ(proc_self_path("/proc/42/task/43/stat", 42), "");  // another thread
  EXPECT_EQ(proc_self_path("/proc/43/status", 42), "");        // another process
  EXPECT_EQ(proc_self_path("/proc/meminfo", 42), std::nullopt);
  EXPECT_EQ(proc_self_path("/proc/420/status", 42), "");
  EXPECT_EQ(proc_self_path("/home/u/proc/42", 42), std::nullopt);
}

TEST(PolicyAttrs, SignalNames) {
  EXPECT_EQ(signal_number("SIGUSR1"), SIGUSR1);
  EXPECT_EQ(signal_number("usr1"), SIGUSR1);
  EXPECT_EQ(signal_number("12"), 12);
  EXPECT_EQ(signal_number("SIGHUP"), SIGHUP);
  EXPECT_EQ(signal_number("RTMIN+2"), SIGRTMIN + 2);
  EXPECT_EQ(signal_number("SIGKILL"), 0);
  EXPECT_EQ(signal_number("STOP"), 0);
  EXPECT_EQ(signal_number("65"), 0);
  EXPECT_EQ(signal_number("bogus"), 0);
  EXPECT_EQ(signal_number(""), 0);
}

TEST(PolicyAttrs, TimersParse) {
  auto t = parse_timers("ID: 0\nsignal: 10/0000000000000000\nnotify: signal/pid.7\nClockID: 1\nID: 3\nsignal: 14/00\nnotify: thread/tid.8\nClockID: 0\n");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[1].id, 3);
  EXPECT_EQ((*t)[1].notify, "thread/tid.8");
  EXPECT_FALSE(parse_timers("signal: 1\n"));
  EXPECT_FALSE(parse_timers("ID: x\n"));
}

}  // namespace
}  // namespace prewarm::policy
