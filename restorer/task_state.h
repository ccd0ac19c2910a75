// Per-task state the launcher applies to itself just before the handoff (cwd, umask, rlimits,
// personality), undone if anything fails before the point of no return.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <vector>

#include <utility>

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
        old_limits_(std::move(o.old_limits_)) {}
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
};

Result<TaskStateGuard> apply_task_state(const pb::TaskState& t);

}  // namespace prewarm
