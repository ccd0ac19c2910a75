// The capture's identity check, as plain comparisons (the reads are in snapshot/proc_identity).
#include "policy/capture_check.h"

#include <array>
#include <type_traits>
#include <utility>

namespace prewarm::policy {
namespace {

struct IdField {
  const char* name;
  unsigned ProcessIdentity::*field;
};

// uid_t and gid_t are both unsigned int here; one table serves both.
static_assert(std::is_same_v<uid_t, unsigned> && std::is_same_v<gid_t, unsigned>);  // NOLINT(misc-redundant-expression)
constexpr std::array<IdField, 4> kUids{{{"real uid", &ProcessIdentity::ruid},
                                        {"effective uid", &ProcessIdentity::euid},
                                        {"saved uid", &ProcessIdentity::suid},
                                        {"filesystem uid", &ProcessIdentity::fsuid}}};
constexpr std::array<IdField, 4> kGids{{{"real gid", &ProcessIdentity::rgid},
                                        {"effective gid", &ProcessIdentity::egid},
                                        {"saved gid", &ProcessIdentity::sgid},
                                        {"filesystem gid", &ProcessIdentity::fsgid}}};

bool same_mm_layout(const MmLayout& a, const MmLayout& b) {
  return a.start_code == b.start_code && a.end_code == b.end_code && a.start_data == b.start_data &&
         a.end_data == b.end_data && a.start_brk == b.start_brk && a.start_stack == b.start_stack &&
         a.arg_start == b.arg_start && a.arg_end == b.arg_end && a.env_start == b.env_start &&
         a.env_end == b.env_end;
}

// The first of the four ids that is not the app's, as a reason; "" if all are.
std::string id_mismatch(const std::string& who, const ProcessIdentity& at_ready, const ProcessIdentity& frozen,
                        const std::array<IdField, 4>& fields, unsigned want, const char* what) {
  for (const auto& f : fields) {
    const unsigned then = at_ready.*f.field, now = frozen.*f.field;
    if (then != want)
      return who + " did not run as the app's " + what + " when it became ready (its " + f.name + " was " +
             std::to_string(then) + ", the app's is " + std::to_string(want) + ")";
    if (now != then)
      return who + " changed its " + f.name + " from " + std::to_string(then) + " to " + std::to_string(now) +
             " since it was launched";
  }
  return "";
}

// What a process sets up in each namespace of Placement::kNamespaces, which a restore outside it loses.
constexpr std::array<const char*, Placement::kNamespaces.size()> kNamespaceHolds{
    "its mounts", "its host and domain names", "its System V IPC objects and POSIX message queues",
    "its network devices, addresses and routes", "its uid and gid mappings and the capabilities they give",
    "its cgroup root", "its clock offsets"};

// The first line of `a` that `b` does not have, for naming a cgroup.
std::string first_line_not_in(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size()) {
    size_t nl = a.find('\n', i);
    if (nl == std::string::npos) nl = a.size();
    std::string line = a.substr(i, nl - i);
    if (!line.empty() && ("\n" + b + "\n").find("\n" + line + "\n") == std::string::npos) return line;
    i = nl + 1;
  }
  return a.substr(0, a.find('\n'));
}

}  // namespace

std::vector<Offender> placement_offenders(const Placement& launch, const Placement& now) {
  std::vector<Offender> out;
  for (size_t i = 0; i < Placement::kNamespaces.size(); ++i) {
    if (launch.ns[i] == 0 || now.ns[i] == 0 || launch.ns[i] == now.ns[i]) continue;
    const std::string kind = Placement::kNamespaces[i];
    out.push_back({0, 0, kind + ":[" + std::to_string(now.ns[i]) + "]", {},
                   "a " + kind + " namespace other than its launch's (" + kind + ":[" + std::to_string(launch.ns[i]) +
                       "]), made or entered by the app (unshare, setns); a restore runs in its launcher's "
                       "namespaces, without " + kNamespaceHolds[i]});
  }
  if (now.lsm_label != launch.lsm_label)
    out.push_back({0, 0, "security label " + now.lsm_label, {},
                   "not its launch's (" + (launch.lsm_label.empty() ? std::string("none") : launch.lsm_label) +
                       "): an AppArmor or SELinux transition (at exec, or a change of profile); a restore runs "
                       "under its launcher's label, so it would lose that confinement"});
  if (!launch.cgroups.empty() && now.cgroups != launch.cgroups)
    out.push_back({0, 0, "cgroup " + first_line_not_in(now.cgroups, launch.cgroups), {},
                   "not its launch's cgroup (" + first_line_not_in(launch.cgroups, now.cgroups) +
                       "): the app moved itself; a restore stays in its launcher's"});
  return out;
}

std::string capture_refusal(const ProcessIdentity& at_ready, const ProcessIdentity& frozen, bool mm_same,
                            uid_t app_uid, gid_t app_gid) {
  const std::string who = "pid " + std::to_string(frozen.pid);
  // 1. The same process: a pid is reused only after its process is gone.
  if (frozen.pid != at_ready.pid || frozen.start_time != at_ready.start_time)
    return who + " is no longer the launched process (start time differs)";
  // 2. Credentials: every id the app's own, and unchanged, so nothing privileged is dumped.
  if (auto r = id_mismatch(who, at_ready, frozen, kUids, app_uid, "user"); !r.empty()) return r;
  if (auto r = id_mismatch(who, at_ready, frozen, kGids, app_gid, "group"); !r.empty()) return r;
  if (frozen.groups != at_ready.groups) return who + " changed its supplementary groups since it was launched";
  if (frozen.cap_prm != at_ready.cap_prm || frozen.cap_eff != at_ready.cap_eff)
    return who + " changed its capabilities since it was launched";
  // 3. Dumpable: for a non-root app the kernel hands /proc/PID/* to root when it is not; the
  // kernel's own verdict covers setuid, setgid, file capabilities and unreadable programs.
  if (app_uid != 0 && (frozen.proc_uid != app_uid || at_ready.proc_uid != app_uid))
    return who + " is not dumpable (it ran a setuid or unreadable program)";
  // 4. The same program in the same address space.
  if (!mm_same) return who + " ran exec after it became ready";
  if (frozen.exe_dev != at_ready.exe_dev || frozen.exe_ino != at_ready.exe_ino)
    return who + " runs another executable than when it became ready (exe differs)";
  if (!same_mm_layout(frozen.mm, at_ready.mm))
    return who + " ran exec after it became ready (its memory layout was replaced)";
  return "";
}

}  // namespace prewarm::policy
