// Who a process is, read from /proc and bound to a pidfd: what a capture compares between the
// moment an app became ready and the moment it is frozen, so root never dumps a process that
// changed its credentials, its program or its address space in between.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "snapshot/proc_state.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// Where a process lives: the namespaces it is in, its cgroups and its security label. A restore
// runs in its launcher's, so a dump compares them with its launch's: an app that made or entered
// its own (unshare, setns, a write to cgroup.procs, an AppArmor or SELinux transition at exec or
// a change_profile) would lose what it set up there, or its confinement, and is refused.
struct Placement {
  static constexpr std::array<const char*, 9> kNamespaces{"mnt",  "uts",    "ipc",  "net",             "user",
                                                          "cgroup", "time", "pid_for_children", "time_for_children"};
  // The inode of /proc/PID/ns/NAME; 0: this kernel has no such namespace; kUnavailable: it has,
  // but the process's link names none (a pid namespace unshared for children not yet forked).
  static constexpr uint64_t kUnavailable = ~uint64_t{0};
  std::array<uint64_t, kNamespaces.size()> ns{};
  std::string cgroups;                            // /proc/PID/cgroup as it reads
  std::string lsm_label;                          // /proc/PID/attr/current; "": no LSM keeps one
};

struct ProcessIdentity {
  pid_t pid = 0;
  // /proc/PID/status Uid: and Gid: (real, effective, saved, filesystem), Groups:.
  uid_t ruid = 0, euid = 0, suid = 0, fsuid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0, fsgid = 0;
  std::vector<gid_t> groups;  // sorted, as the kernel lists them
  uint64_t cap_prm = 0, cap_eff = 0;  // CapPrm:, CapEff:
  bool no_new_privs = false;          // NoNewPrivs:
  uint64_t start_time = 0;  // /proc/PID/stat field 22, clock ticks after boot: names this process
  MmLayout mm;              // stat fields 26-28, 45-51: set afresh by every exec (ASLR)
  uint64_t exe_dev = 0, exe_ino = 0;  // stat of /proc/PID/exe
  // Owner of /proc/PID/status: the kernel shows root (uid 0) while the process is not dumpable
  // (after a setuid/setgid/file-capability exec or an exec of an unreadable file, or
  // PR_SET_DUMPABLE 0), else its euid. Not the /proc/PID directory itself: that always shows the
  // euid (seen here: setuid-65534 sleep run by 12345 -> /proc/PID 65534, /proc/PID/status 0).
  uid_t proc_uid = 0;
  gid_t proc_gid = 0;
  Placement placement;
};

// Parsers, separate so malformed text is a unit test away. Each fills only its own fields.
Result<void> parse_identity_status(std::string_view status_text, ProcessIdentity& id);
// Field 22 of /proc/PID/stat, counted from after the last ')' (comm may hold ") " itself).
Result<uint64_t> parse_stat_start_time(std::string_view stat_text);

// Which security policy is loaded: AppArmor's revision (counts every profile load), SELinux's
// policy load count, "" if neither. A profile loaded since a capture may confine a cold exec of
// the app that a restore, under its launcher's label, would skip.
std::string lsm_policy_revision();

// /proc/PID/ns/* and /proc/PID/cgroup; the caller makes sure the pid is the process meant.
Result<Placement> read_placement(pid_t pid);
// The same of one thread (/proc/PID/task/TID/...): unshare, setns and change_hat act per thread.
Result<Placement> read_thread_placement(pid_t pid, pid_t tid);

// Reads /proc/PID, then checks that `pidfd` (bound to the process meant) is still alive, so the
// numbers belong to that process and not to a successor that got the same pid.
Result<ProcessIdentity> read_identity(pid_t pid, int pidfd);

// /proc/PID/mem, O_RDONLY. The kernel binds the fd to the process's mm at open: after an exec
// the old mm is released and reads through it return 0 bytes.
Result<UniqueFd> open_mm_handle(pid_t pid);

// Reads one byte at `addr` through a handle from open_mm_handle. true: the handle still sees a
// live mm (the one it was opened on); false: that mm is gone (the process ran exec or exited).
// An error (EIO: `addr` not mapped in that mm) means it cannot tell. `addr` should be something
// a process never unmaps: ProcessIdentity::mm.start_stack (argc on the initial stack).
Result<bool> mm_unchanged(int mem_fd, uint64_t addr);

}  // namespace prewarm
