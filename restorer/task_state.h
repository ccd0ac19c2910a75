// Per-task state the launcher applies to itself just before the handoff (cwd, umask, rlimits,
// personality), undone if anything fails before the point of no return.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <utility>

#include "restorer/blob/plan_abi.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

class TaskStateGuard {
 public:
  TaskStateGuard() = default;
  TaskStateGuard(TaskStateGuard&& o) noexcept
      : active_(std::exchange(o.active_, false)),
        old_cwd_(std::move(o.old_cwd_)),
        old_umask_(o.old_umask_),
        old_personality_(o.old_personality_),
        old_limits_(std::move(o.old_limits_)),
        undo_(std::move(o.undo_)) {}
  TaskStateGuard& operator=(TaskStateGuard&&) = delete;
  ~TaskStateGuard();  // reverts unless commit()
  void commit() { active_ = false; }

 private:
  friend Result<TaskStateGuard> apply_task_state(const pb::TaskState& t);
  bool active_ = false;
  UniqueFd old_cwd_;
  uint32_t old_umask_ = 022;
  uint32_t old_personality_ = 0;
  std::vector<std::pair<int, rlimit>> old_limits_;
  std::vector<std::function<void()>> undo_;  // the attributes' own undo steps, run last to first
};

Result<TaskStateGuard> apply_task_state(const pb::TaskState& t);

// The status/stat fields the snapshot had that this launch must share (AttrState.match): a
// launch under another seccomp filter, affinity or scheduling policy is not restored.
Result<void> check_attr_match(const pb::AttrState& a);

// The attributes that cannot be undone or must not fire early (no_new_privs, itimers): applied
// after the launcher has blocked every signal, right before the handoff. Only fails on values
// check_final_attrs refused.
Result<void> check_final_attrs(const pb::AttrState& a);
void apply_final_attrs(const pb::AttrState& a);

// flock and OFD locks taken again on the reopened files (`moves`: launcher fd -> app fd), before
// the point of no return. A lock another process holds now refuses the restore. POSIX locks are
// the process's and go with any close of an fd on their file, which the blob does: they are only
// tested here (F_GETLK) and returned for the blob to take once the launcher's fds are closed.
Result<std::vector<PwPosixLock>> take_app_locks(const pb::AttrState& a, const std::vector<PwFdMove>& moves);

// --on-restore: refuses a signal the app does not catch (its default action would end or stop
// it) and rewrites the resumed registers so the syscall the app was blocked in sees the signal
// as the kernel would show it (EINTR without SA_RESTART, ERESTARTNOHAND always).
Result<void> prepare_on_restore_signal(pb::Snapshot& snap, int sig);

}  // namespace prewarm
