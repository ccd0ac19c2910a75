// Running single syscalls inside a frozen process, for state only the process itself can report
// (signal actions, sigaltstack, clear_child_tid). No code is written into the target: an existing
// `syscall` instruction is single-stepped with the registers set up, then the registers are put
// back, so a syscall the process was blocked in still restarts when it resumes.
#pragma once

#include <sys/user.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/proc_maps.h"
#include "snapshot/ptrace_freeze.h"
#include "snapshot/result.h"

namespace prewarm {

// While a call runs, the thread's registers are the injected call's: a tracer that died then
// would leave the thread to run on from the injected instruction with them. `*word` is 1 exactly
// while one runs (a word the tracer shares with whoever may kill it: not at such a moment).
void mark_injections_in(std::atomic<uint32_t>* word);

class SyscallInjector {
 public:
  // `vmas` are the process's mappings (used to find a `syscall` instruction). The syscalls run
  // in thread `tid` (default: the main thread).
  static Result<SyscallInjector> attach(FrozenProcess& proc, int mem_fd, const std::vector<Vma>& vmas,
                                        pid_t tid = -1);
  ~SyscallInjector();  // puts the scratch buffer's bytes back (the registers are after each call)
  SyscallInjector(SyscallInjector&&) noexcept;
  SyscallInjector& operator=(SyscallInjector&&) = delete;

  Result<long> call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                    uint64_t a5 = 0, uint64_t a6 = 0);
  // A scratch buffer in the target (below its stack's red zone); its old bytes are restored.
  uint64_t scratch() const { return scratch_; }
  Result<std::string> read(uint64_t addr, size_t len) const;

 private:
  SyscallInjector(FrozenProcess& p, int mem_fd, pid_t tid) : proc_(&p), mem_fd_(mem_fd), tid_(tid) {}
  Result<long> run(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6);
  FrozenProcess* proc_;
  int mem_fd_;
  pid_t tid_;
  user_regs_struct saved_{};
  uint64_t syscall_insn_ = 0;
  uint64_t scratch_ = 0;
  std::string scratch_saved_;
  bool active_ = false;
};

}  // namespace prewarm
