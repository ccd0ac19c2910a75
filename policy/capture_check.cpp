// The capture's identity check, as plain comparisons (the reads are in snapshot/proc_identity).
#include "policy/capture_check.h"

#include <array>
#include <map>
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
    "its cgroup root", "its clock offsets", "the pid namespace its children would be in",
    "the time namespace its children would be in"};

// "ID:CONTROLLERS" -> path, one entry per hierarchy line of /proc/PID/cgroup.
std::map<std::string, std::string> cgroup_paths(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(i, nl - i);
    const size_t second = line.find(':', line.find(':') + 1);
    if (second != std::string::npos) out[line.substr(0, second)] = line.substr(second + 1);
    i = nl + 1;
  }
  return out;
}

// Whether `path` is a cgroup below `base` (one the app made there and moved itself into).
bool below(const std::string& path, const std::string& base) {
  if (path == base) return false;
  return base == "/" ? path.starts_with("/") : path.starts_with(base + "/");
}

}  // namespace

std::vector<Offender> placement_offenders(const Placement& launch, const Placement& now) {
  std::vector<Offender> out;
  for (size_t i = 0; i < Placement::kNamespaces.size(); ++i) {
    if (launch.ns[i] == 0 || now.ns[i] == 0 || launch.ns[i] == now.ns[i]) continue;
    const std::string kind = Placement::kNamespaces[i];
    auto id = [](uint64_t n) { return n == Placement::kUnavailable ? std::string("none yet") : std::to_string(n); };
    out.push_back({0, 0, kind + ":[" + id(now.ns[i]) + "]", {},
                   "a " + kind + " namespace other than its launch's (" + kind + ":[" + id(launch.ns[i]) +
                       "]), made or entered by the app (unshare, setns); a restore runs in its launcher's "
                       "namespaces, without " + kNamespaceHolds[i]});
  }
  if (now.lsm_label != launch.lsm_label)
    out.push_back({0, 0, "security label " + now.lsm_label, {},
                   "not its launch's (" + (launch.lsm_label.empty() ? std::string("none") : launch.lsm_label) +
                       "): an AppArmor or SELinux transition (at exec, or a change of profile); a restore runs "
                       "under its launcher's label, so it would lose that confinement"});
  // A cgroup below the launch's is one the app made and moved itself into. One elsewhere is as a
  // rule its launcher's doing (a desktop moves a process it started into a scope of its own
  // after the start), which a restore's launcher gets as well.
  if (launch.cgroups.empty()) return out;
  const auto then = cgroup_paths(launch.cgroups);
  for (const auto& [hierarchy, path] : cgroup_paths(now.cgroups)) {
    auto it = then.find(hierarchy);
    if (it == then.end() || !below(path, it->second)) continue;
    out.push_back({0, 0, "cgroup " + hierarchy + ":" + path, {},
                   "below its launch's cgroup (" + it->second +
                       "): the app made it and moved itself there; a restore stays in its launcher's"});
  }
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
