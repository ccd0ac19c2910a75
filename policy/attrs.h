// The allow-list of process attributes: every field the dump reads from /proc (status, stat,
// fdinfo, smaps VmFlags) and every prctl-like getter it runs has a fate here. A field or flag this
// table does not know is refused by name, so a kernel that grows a new attribute makes prewarm
// refuse rather than drop it. Plain decisions over parsed data: no syscalls.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/support.h"
#include "snapshot/proc_attrs.h"
#include "snapshot/proc_maps.h"

namespace prewarm::policy {

enum class AttrFate {
  kCarried,     // the image keeps it and the restore sets it again
  kLaunchOwn,   // the launching process's (credentials, groups, pids, session, cgroups, loginuid)
  kRecomputed,  // a counter or a view of other state (memory sizes, fault counts, CPU times)
  kMatch,       // neither: a launch where it differs is not restored (seccomp, affinity, ...)
  kDefaultOnly, // only the default value is accepted; anything else refuses the snapshot
};

struct AttrRule {
  AttrFate fate = AttrFate::kDefaultOnly;
  std::string_view default_value;  // for kDefaultOnly
  std::string_view why;            // what it is, for the refusal
};

// nullopt: a field this prewarm does not know (refused).
std::optional<AttrRule> status_rule(std::string_view key);
// `field` counts from 1 as in proc(5).
std::optional<AttrRule> stat_rule(int field);

// "" when every VmFlag of a carried mapping is carried or recomputed, else the reason naming the
// flags that are not. The kernel's own special mappings ([vdso], [vvar]...) are not asked.
std::string vm_flags_refusal(const Vma& vma);

struct AttrVerdict {
  std::vector<Offender> offenders;
  std::vector<std::string> match_keys;  // "Seccomp", ..., "stat:41": checked again at restore
};

// `plain_fds`: the fds the support policy accepted as files (their fdinfo keys are this
// policy's; other kinds of fd have their own).
AttrVerdict check_attrs(const ProcAttrs& attrs, const std::vector<int>& plain_fds);

// An fd on /proc/OLDPID/... (or /proc/OLDPID/task/OLDPID/...) is reopened for the restored
// process: "/proc/self/..." (or "/proc/thread-self/..."). nullopt when `target` is not under
// /proc/<digits>; an empty string when it names another process's entry (refused).
std::optional<std::string> proc_self_path(const std::string& target, int pid);

}  // namespace prewarm::policy

namespace prewarm::policy {
// "SIGUSR1", "USR1", "usr1" or "10" -> 10; "RTMIN+2" too. 0 when it is not a catchable signal.
int signal_number(std::string_view name);
}  // namespace prewarm::policy
