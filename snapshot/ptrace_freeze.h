// Freezing a process with ptrace (SEIZE + INTERRUPT) and reading its CPU state.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

// What an interrupted syscall needs at restore (see classify_syscall_restart).
struct SyscallRestart {
  enum Action { kNone, kRestart, kEintr } action = kNone;
  int64_t nr = -1;
  int64_t kernel_rc = 0;
};

// The kernel leaves -ERESTART* in rax when a signal (or a ptrace stop) interrupts a syscall and
// would have fixed it up on the way back to user space. A restored process resumes through
// rt_sigreturn, which does no such fix-up, so the dump applies it to the saved registers:
// restart -> rip back to the `syscall` instruction with rax = the syscall number; a restart that
// needs the kernel's restart block (nanosleep and friends) cannot be carried, so it returns -EINTR.
SyscallRestart classify_syscall_restart(const user_regs_struct& regs);
void apply_syscall_restart(user_regs_struct& regs, const SyscallRestart& r);

struct CpuState {
  user_regs_struct regs{};  // as the kernel reported them (not yet adjusted)
  std::string xsave;        // NT_X86_XSTATE
};

// A process stopped under ptrace, every thread of it. Detaches (the process runs on) when
// destroyed, unless kill().
class FrozenProcess {
 public:
  // Seizes and interrupts the main thread, then every thread in /proc/PID/task, listing again
  // until a pass finds none new (a thread that was running may have created one); a thread
  // that exits meanwhile is left out. A thread that does not stop within 10 s (in an
  // uninterruptible sleep) fails it with ETIMEDOUT, and the held ones are let go.
  static Result<FrozenProcess> seize(pid_t pid);
  FrozenProcess(FrozenProcess&& o) noexcept;
  FrozenProcess& operator=(FrozenProcess&&) = delete;
  FrozenProcess(const FrozenProcess&) = delete;
  ~FrozenProcess();

  pid_t pid() const { return pid_; }
  // Every thread held, the main thread (tid == pid) first.
  const std::vector<pid_t>& tids() const { return tids_; }
  Result<CpuState> read_cpu_state() const { return read_cpu_state(pid_); }
  Result<CpuState> read_cpu_state(pid_t tid) const;
  // ok while the process still sits in the stop we put it in. A SIGKILL wakes it even there
  // and it stops again at its exit (PTRACE_O_TRACEEXIT): its memory is still readable, but what
  // was read may no longer be one moment of it, and it is going away.
  Result<void> still_held();
  void kill();  // SIGKILL while still stopped: nothing of the app runs after the dump
  Result<void> detach();
  // A signal that arrived at thread `tid` while we held it; it is sent again at detach.
  void defer_signal(pid_t tid, int sig) { deferred_.push_back({tid, sig}); }

 private:
  explicit FrozenProcess(pid_t pid) : pid_(pid) {}
  struct Deferred {
    pid_t tid;
    int sig;
  };
  pid_t pid_ = -1;
  std::vector<pid_t> tids_;
  std::vector<Deferred> deferred_;
};

}  // namespace prewarm
