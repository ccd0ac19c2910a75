// The restore plan: the PwPlan the blob carries out, checked before the point of no return. Pure
// functions of the image and of facts about this process, so the fuzzer can drive them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "restorer/sigframe.h"
#include "restorer/hole.h"
#include "snapshot/cpu_compat.h"
#include "snapshot/ready_message.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"

namespace prewarm {

struct PlanInputs {
  const pb::Snapshot& snap;
  const HoleLayout& layout;
  uint64_t hole = 0;  // address of the reserved hole
  const SpecialMappings& own;
  const SigframeLayout& frame;
  std::function<int(const std::string&)> file_fd;  // the open fd of a mapped file
  int exe_fd = -1;                                 // -1: leave /proc/PID/exe alone
  int notify_fd = -1;
  std::string message;  // from ready_message::encode(); ignored without notify_fd
  std::vector<PwFdMove> fd_moves;
  std::vector<PwRange> fd_close;
  std::vector<PwEpollAdd> epoll_adds;  // each epfd and fd one of fd_moves' targets (fd: or stdio)
  std::vector<PwPosixLock> posix_locks;  // each fd one of fd_moves' targets
  uint64_t mmap_min_addr = 65536;
  std::vector<SigframeLayout> thread_frames;  // parallel to snap.threads()
  // ---- lazy ---- (restorer/lazy.h): the uffd, the server's region (kept when the launcher is
  // unmapped) and the mappings the blob registers; they must be ones it maps empty.
  int lazy_uffd = -1;
  uint64_t lazy_region = 0, lazy_region_len = 0;
  std::vector<PwRange> lazy_ranges;
};

// Builds the plan (a PwPlan header followed by its arrays), checking everything the blob would
// otherwise find out past the point of no return: every mapping inside [mmap_min_addr,
// TASK_SIZE), the vDSO pair the same size as this process's, the frame on a writable stack,
// the auxiliary vector and signal numbers valid, the mm fields acceptable to PR_SET_MM_MAP,
// fs/gs base, rseq and robust list acceptable to their syscalls, file offsets page aligned.
Result<std::vector<char>> build_plan(const PlanInputs& in);

// The kernel's own checks of PR_SET_MM_MAP (kernel/sys.c) except RLIMIT_DATA; `rlimit_data`
// is the app's limit (RLIM_INFINITY for none), checked once its rlimits are applied.
Result<void> check_mm_map(const PwMmMap& mm, uint64_t mmap_min_addr, uint64_t rlimit_data);

}  // namespace prewarm
