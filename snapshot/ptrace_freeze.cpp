// ptrace-based freezing: the process is stopped in a PTRACE_EVENT_STOP, where its registers and
// memory are stable and every syscall it was blocked in has been interrupted.
#include "snapshot/ptrace_freeze.h"

#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cerrno>
#include <utility>

namespace prewarm {
namespace {

// Kernel-internal restart codes (include/linux/errno.h), visible to ptrace in rax.
constexpr int64_t kErestartSys = 512;
constexpr int64_t kErestartNoIntr = 513;
constexpr int64_t kErestartNoHand = 514;
constexpr int64_t kErestartRestartBlock = 516;
constexpr int kMaxSignalStops = 64;

}  // namespace

SyscallRestart classify_syscall_restart(const user_regs_struct& regs) {
  SyscallRestart r;
  auto orig = static_cast<int64_t>(regs.orig_rax);
  auto rc = static_cast<int64_t>(regs.rax);
  if (orig < 0) return r;
  r.nr = orig;
  r.kernel_rc = rc;
  switch (-rc) {
    case kErestartSys:
    case kErestartNoIntr:
    case kErestartNoHand:
      r.action = SyscallRestart::kRestart;
      break;
    case kErestartRestartBlock:
      r.action = SyscallRestart::kEintr;
      break;
    default:
      // Stopped right at syscall exit or entry with a real result: nothing to redo.
      r.action = SyscallRestart::kNone;
  }
  return r;
}

void apply_syscall_restart(user_regs_struct& regs, const SyscallRestart& r) {
  switch (r.action) {
    case SyscallRestart::kRestart:
      regs.rax = regs.orig_rax;
      regs.rip -= 2;  // `syscall` is 0f 05
      break;
    case SyscallRestart::kEintr:
      regs.rax = static_cast<uint64_t>(-static_cast<int64_t>(EINTR));
      break;
    case SyscallRestart::kNone:
      break;
  }
}

Result<FrozenProcess> FrozenProcess::seize(pid_t pid) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, PTRACE_O_TRACEEXIT) != 0)
    return errno_error("ptrace seize pid " + std::to_string(pid));
  FrozenProcess fp(pid);
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0)
    return errno_error("ptrace interrupt pid " + std::to_string(pid));
  // A signal may be delivered before the interrupt lands: pass it on and wait again, so the
  // process sees exactly what it would have seen without us.
  for (int i = 0; i < kMaxSignalStops; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, __WALL) != pid) return errno_error("waitpid " + std::to_string(pid));
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      fp.pid_ = -1;
      return make_error(ESRCH, "pid " + std::to_string(pid) + " exited while being frozen");
    }
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    if (event == PTRACE_EVENT_STOP) return fp;
    if (event == PTRACE_EVENT_EXIT)
      return make_error(ESRCH, "pid " + std::to_string(pid) + " is exiting");
    int sig = event == 0 ? WSTOPSIG(status) : 0;
    if (::ptrace(PTRACE_CONT, pid, nullptr, sig) != 0)
      return errno_error("ptrace cont pid " + std::to_string(pid));
  }
  return make_error(EAGAIN, "pid " + std::to_string(pid) + " keeps receiving signals");
}

FrozenProcess::FrozenProcess(FrozenProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), deferred_(std::move(o.deferred_)) {}

FrozenProcess::~FrozenProcess() { (void)detach(); }

Result<CpuState> FrozenProcess::read_cpu_state() const {
  CpuState s;
  if (::ptrace(PTRACE_GETREGS, pid_, nullptr, &s.regs) != 0) return errno_error("ptrace getregs");
  s.xsave.resize(64 * 1024);  // larger than any XSAVE area; the kernel trims iov_len
  iovec iov{s.xsave.data(), s.xsave.size()};
  if (::ptrace(PTRACE_GETREGSET, pid_, NT_X86_XSTATE, &iov) != 0)
    return errno_error("ptrace getregset NT_X86_XSTATE");
  s.xsave.resize(iov.iov_len);
  return s;
}

Result<void> FrozenProcess::still_held() {
  if (pid_ < 0) return make_error(ESRCH, "the process is no longer held");
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG | __WALL);
  if (r == 0) return ok();
  if (r < 0) return errno_error("waitpid " + std::to_string(pid_));
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    pid_ = -1;
    return data_error("the process ended during the dump");
  }
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXIT)
    return data_error("the process was killed during the dump");
  return data_error("the process left its stop during the dump");
}

void FrozenProcess::kill() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGKILL);
  // Reap the ptrace-exit event so the pid is not left in a traced stop.
  int status = 0;
  for (int i = 0; i < 4; ++i) {
    if (::waitpid(pid_, &status, __WALL) != pid_) break;
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;
    ::ptrace(PTRACE_CONT, pid_, nullptr, 0);
  }
  pid_ = -1;
}

Result<void> FrozenProcess::detach() {
  if (pid_ < 0) return ok();
  pid_t pid = std::exchange(pid_, -1);
  if (::ptrace(PTRACE_DETACH, pid, nullptr, 0) != 0)
    return errno_error("ptrace detach pid " + std::to_string(pid));
  for (int sig : deferred_) ::kill(pid, sig);
  return ok();
}

}  // namespace prewarm
