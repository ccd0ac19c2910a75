// ptrace-based freezing: the process is stopped in a PTRACE_EVENT_STOP, where its registers and
// memory are stable and every syscall it was blocked in has been interrupted.
#include "snapshot/ptrace_freeze.h"

#include <elf.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "snapshot/dir_entries.h"
#include "snapshot/proc_stat.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

// Kernel-internal restart codes (include/linux/errno.h), visible to ptrace in rax.
constexpr int64_t kErestartSys = 512;
constexpr int64_t kErestartNoIntr = 513;
constexpr int64_t kErestartNoHand = 514;
constexpr int64_t kErestartRestartBlock = 516;
constexpr int kMaxSignalStops = 64;
constexpr int kMaxThreadPasses = 64;
constexpr long kDefaultStopTimeoutMs = 10'000;

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

namespace {

enum class Stopped { kHeld, kGone };
using Clock = std::chrono::steady_clock;

// A thread in an uninterruptible sleep (a vfork parent, a read from a hung NFS or FUSE server)
// reaches its stop only when the sleep ends, and the threads already held wait with it: a freeze
// gives up after this long. PREWARM_FREEZE_TIMEOUT_MS overrides it (tests).
long stop_timeout_ms() {
  if (const char* v = std::getenv("PREWARM_FREEZE_TIMEOUT_MS"); v && *v) {
    char* end = nullptr;
    const long ms = std::strtol(v, &end, 10);
    if (*end == '\0' && ms > 0 && ms <= 3'600'000) return ms;
  }
  return kDefaultStopTimeoutMs;
}

// waitpid(tid) until `deadline`; 0 if nothing came by then. The stop usually comes within
// microseconds, so the first looks only yield.
pid_t wait_until(pid_t tid, int* status, Clock::time_point deadline) {
  for (int look = 0;; ++look) {
    const pid_t r = ::waitpid(tid, status, __WALL | WNOHANG);
    if (r != 0 || Clock::now() >= deadline) return r;
    if (look < 100)
      ::sched_yield();
    else
      ::usleep(look < 1000 ? 50 : 1000);
  }
}

// "state D, wchan X": what the thread is doing instead of stopping.
std::string whereabouts(pid_t tid) {
  std::string out = "state ?";
  if (auto stat = read_proc_stat(tid)) out = std::string("state ") + stat->state();
  if (auto wchan = read_file("/proc/" + std::to_string(tid) + "/wchan"); wchan && !wchan->empty() && *wchan != "0") out += ", wchan " + *wchan;
  return out;
}

// Seizes one thread and waits for its interrupt stop. A signal may be delivered before the
// interrupt lands: it is passed on and we wait again, so the thread sees exactly what it would
// have seen without us. A thread that exits (or is exiting) before it stops is kGone; it is
// let go, so its exit completes.
Result<Stopped> seize_thread(pid_t tid) {
  const std::string name = "thread " + std::to_string(tid);
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, PTRACE_O_TRACEEXIT) != 0) {
    if (errno == ESRCH) return Stopped::kGone;
    return errno_error("ptrace seize " + name);
  }
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH)
    return errno_error("ptrace interrupt " + name);
  const long timeout_ms = stop_timeout_ms();
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int i = 0; i < kMaxSignalStops; ++i) {
    int status = 0;
    const pid_t got = wait_until(tid, &status, deadline);
    // Still seized, it is let go when this process exits, and its pending stop with it.
    if (got == 0)
      return make_error(ETIMEDOUT, name + " did not stop within " + std::to_string(timeout_ms) + " ms (" +
                                       whereabouts(tid) + "): a thread in an uninterruptible sleep cannot be frozen");
    if (got != tid) return errno_error("waitpid " + name);
    if (WIFEXITED(status) || WIFSIGNALED(status)) return Stopped::kGone;
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    if (event == PTRACE_EVENT_STOP) return Stopped::kHeld;
    if (event == PTRACE_EVENT_EXIT) {
      // Let the exit finish and reap it, so the tid is not left traced.
      ::ptrace(PTRACE_DETACH, tid, nullptr, 0);
      return Stopped::kGone;
    }
    int sig = event == 0 ? WSTOPSIG(status) : 0;
    if (::ptrace(PTRACE_CONT, tid, nullptr, sig) != 0) {
      if (errno == ESRCH) return Stopped::kGone;
      return errno_error("ptrace cont " + name);
    }
  }
  return make_error(EAGAIN, name + " keeps receiving signals");
}

Result<std::vector<pid_t>> list_tasks(pid_t pid) {
  PW_ASSIGN(std::vector<int> tids, dir_numbers("/proc/" + std::to_string(pid) + "/task"));
  return std::vector<pid_t>(tids.begin(), tids.end());
}

}  // namespace

Result<FrozenProcess> FrozenProcess::seize(pid_t pid) {
  FrozenProcess fp(-1);
  PW_ASSIGN(Stopped main, seize_thread(pid));
  if (main == Stopped::kGone)
    return make_error(ESRCH, "pid " + std::to_string(pid) + " exited while being frozen");
  fp.pid_ = pid;
  fp.tids_.push_back(pid);
  // Every thread already listed is stopped before the next pass, so a pass that finds nothing
  // new means no running thread is left that could create one.
  for (int pass = 0; pass < kMaxThreadPasses; ++pass) {
    PW_ASSIGN(std::vector<pid_t> tasks, list_tasks(pid));
    bool found = false;
    for (pid_t tid : tasks) {
      if (std::find(fp.tids_.begin(), fp.tids_.end(), tid) != fp.tids_.end()) continue;
      found = true;
      PW_ASSIGN(Stopped st, seize_thread(tid));
      if (st == Stopped::kHeld) fp.tids_.push_back(tid);
    }
    if (!found) return fp;
  }
  return make_error(EAGAIN, "pid " + std::to_string(pid) + " keeps creating threads");
}

FrozenProcess::FrozenProcess(FrozenProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), tids_(std::move(o.tids_)), deferred_(std::move(o.deferred_)) {}

FrozenProcess::~FrozenProcess() { (void)detach(); }

Result<CpuState> FrozenProcess::read_cpu_state(pid_t tid) const {
  CpuState s;
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &s.regs) != 0) return errno_error("ptrace getregs");
  s.xsave.resize(64 * 1024);  // larger than any XSAVE area; the kernel trims iov_len
  iovec iov{s.xsave.data(), s.xsave.size()};
  if (::ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) != 0)
    return errno_error("ptrace getregset NT_X86_XSTATE");
  s.xsave.resize(iov.iov_len);
  return s;
}

Result<void> FrozenProcess::still_held() {
  if (pid_ < 0) return make_error(ESRCH, "the process is no longer held");
  for (pid_t tid : tids_) {
    int status = 0;
    pid_t r = ::waitpid(tid, &status, WNOHANG | __WALL);
    if (r == 0) continue;
    if (r < 0) return errno_error("waitpid " + std::to_string(tid));
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      if (tid != pid_) return data_error("thread " + std::to_string(tid) + " ended during the dump");
      pid_ = -1;
      tids_.clear();
      return data_error("the process ended during the dump");
    }
    if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXIT)
      return data_error("the process was killed during the dump");
    return data_error("the process left its stop during the dump");
  }
  return ok();
}

void FrozenProcess::kill() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGKILL);
  // Reap every thread's ptrace-exit event so no tid is left in a traced stop. The main thread
  // last: its exit is reported only once every other thread is gone, and those wait for us.
  for (auto it = tids_.rbegin(); it != tids_.rend(); ++it) {
    const pid_t tid = *it;
    int status = 0;
    for (int i = 0; i < 4; ++i) {
      if (::waitpid(tid, &status, __WALL) != tid) break;
      if (WIFEXITED(status) || WIFSIGNALED(status)) break;
      ::ptrace(PTRACE_CONT, tid, nullptr, 0);
    }
  }
  pid_ = -1;
  tids_.clear();
}

Result<void> FrozenProcess::detach() {
  if (pid_ < 0) return ok();
  pid_t pid = std::exchange(pid_, -1);
  Result<void> result = ok();
  // The other threads first: the main thread's detach is the one whose failure is reported.
  for (auto it = tids_.rbegin(); it != tids_.rend(); ++it)
    if (::ptrace(PTRACE_DETACH, *it, nullptr, 0) != 0 && *it == pid)
      result = errno_error("ptrace detach pid " + std::to_string(pid));
  tids_.clear();
  for (const auto& d : deferred_) ::syscall(SYS_tgkill, pid, d.tid, d.sig);
  return result;
}

}  // namespace prewarm
