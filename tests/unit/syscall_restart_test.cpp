// Tests the syscall-restart fix-up of dumped registers: on hand-made registers for every -ERESTART*
// code, and on real children frozen with ptrace in read, pause and clock_nanosleep, which must
// carry on correctly when resumed with the fixed-up registers.
#include "snapshot/ptrace_freeze.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kRip = 0x401002;  // just after a `syscall` at 0x401000

user_regs_struct regs_after_syscall(int64_t nr, int64_t rax) {
  user_regs_struct regs{};
  regs.orig_rax = static_cast<uint64_t>(nr);
  regs.rax = static_cast<uint64_t>(rax);
  regs.rip = kRip;
  regs.rsp = 0x7ffc12345678;
  regs.rdi = 3;
  regs.rsi = 0x7ffc12340000;
  regs.rdx = 1;
  regs.eflags = 0x246;
  return regs;
}

// Everything but rip and rax must survive the fix-up.
void expect_only_rip_rax_changed(const user_regs_struct& before, const user_regs_struct& after) {
  user_regs_struct a = before, b = after;
  a.rip = b.rip = 0;
  a.rax = b.rax = 0;
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
}

TEST(ClassifySyscallRestart, RestartCodesMoveBackToTheSyscallInstruction) {
  for (int64_t code : {512, 513, 514}) {  // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
    SCOPED_TRACE(code);
    const auto before = regs_after_syscall(SYS_read, -code);
    const auto r = classify_syscall_restart(before);
    EXPECT_EQ(r.action, SyscallRestart::kRestart);
    EXPECT_EQ(r.nr, SYS_read);
    EXPECT_EQ(r.kernel_rc, -code);
    auto regs = before;
    apply_syscall_restart(regs, r);
    EXPECT_EQ(regs.rip, kRip - 2);
    EXPECT_EQ(regs.rax, static_cast<uint64_t>(SYS_read));
    expect_only_rip_rax_changed(before, regs);
  }
}

TEST(ClassifySyscallRestart, RestartOfSyscallZeroPutsZeroInRax) {
  const auto before = regs_after_syscall(0, -512);
  const auto r = classify_syscall_restart(before);
  EXPECT_EQ(r.action, SyscallRestart::kRestart);
  auto regs = before;
  apply_syscall_restart(regs, r);
  EXPECT_EQ(regs.rax, 0u);
  EXPECT_EQ(regs.rip, kRip - 2);
}

TEST(ClassifySyscallRestart, RestartBlockBecomesEintr) {
  const auto before = regs_after_syscall(SYS_clock_nanosleep, -516);  // ERESTART_RESTARTBLOCK
  const auto r = classify_syscall_restart(before);
  EXPECT_EQ(r.action, SyscallRestart::kEintr);
  EXPECT_EQ(r.nr, SYS_clock_nanosleep);
  EXPECT_EQ(r.kernel_rc, -516);
  auto regs = before;
  apply_syscall_restart(regs, r);
  EXPECT_EQ(static_cast<int64_t>(regs.rax), -EINTR);
  EXPECT_EQ(regs.rip, kRip);
  expect_only_rip_rax_changed(before, regs);
}

TEST(ClassifySyscallRestart, OrdinaryResultsAndNeighbouringCodesAreLeftAlone) {
  // 511 and 515 (ENOIOCTLCMD) and 517 are not restart codes; the others are plain results.
  for (int64_t rax : {-511, -515, -517, -EINTR, -EAGAIN, 0, 1, 512}) {
    SCOPED_TRACE(rax);
    const auto before = regs_after_syscall(SYS_read, rax);
    const auto r = classify_syscall_restart(before);
    EXPECT_EQ(r.action, SyscallRestart::kNone);
    auto regs = before;
    apply_syscall_restart(regs, r);
    EXPECT_EQ(std::memcmp(&regs, &before, sizeof regs), 0);
  }
}

TEST(ClassifySyscallRestart, NotInASyscallIsLeftAlone) {
  // orig_rax is -1 outside a syscall; rax then holds whatever the program had there.
  const auto before = regs_after_syscall(-1, -512);
  const auto r = classify_syscall_restart(before);
  EXPECT_EQ(r.action, SyscallRestart::kNone);
  EXPECT_EQ(r.nr, -1);
  auto regs = before;
  apply_syscall_restart(regs, r);
  EXPECT_EQ(std::memcmp(&regs, &before, sizeof regs), 0);
}

// A forked child running `body`; killed and reaped if the test ends early.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    pid_ = ::fork();
    if (pid_ == 0) ::_exit(body());
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, __WALL);
    }
  }
  pid_t pid() const { return pid_; }
  // The exit code, or -signal if it was killed; -1000 if still running after `timeout`.
  int wait(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (pid_t rc; (rc = ::waitpid(pid_, &status, WNOHANG)) != pid_;) {
      if (rc < 0 || std::chrono::steady_clock::now() >= deadline) return -1000;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

// Waits until the child is blocked in syscall `nr` (first field of /proc/PID/syscall).
bool wait_blocked_in(pid_t pid, long nr) {
  const std::string path = "/proc/" + std::to_string(pid) + "/syscall";
  // A deadline, not a count of polls: a loaded machine can take seconds to schedule the child.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    auto text = read_file(path);
    if (text.ok() && text->rfind(std::to_string(nr) + " ", 0) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

bool is_syscall_instruction(pid_t pid, uint64_t addr) {
  auto mem = open_fd("/proc/" + std::to_string(pid) + "/mem", O_RDONLY);
  if (!mem.ok()) return false;
  unsigned char insn[2] = {};
  if (!pread_all(mem->get(), insn, 2, static_cast<off_t>(addr)).ok()) return false;
  return insn[0] == 0x0f && insn[1] == 0x05;
}

// Freezes the child, checks the classification, applies the fix-up the way the dump does and
// resumes the child with those registers (orig_rax = -1, as rt_sigreturn leaves it at restore).
void freeze_fix_and_resume(pid_t pid, long nr, SyscallRestart::Action want, int64_t want_rc) {
  auto fp = FrozenProcess::seize(pid);
  if (!fp.ok() && fp.error().code == EPERM) {
    GTEST_SKIP() << "ptrace not permitted: " << fp.error().describe();
  }
  ASSERT_TRUE(fp.ok()) << fp.error().describe();
  auto cpu = fp->read_cpu_state();
  ASSERT_TRUE(cpu.ok()) << cpu.error().describe();
  EXPECT_GE(cpu->xsave.size(), 576u);

  const auto r = classify_syscall_restart(cpu->regs);
  EXPECT_EQ(r.action, want);
  EXPECT_EQ(r.nr, nr);
  EXPECT_EQ(r.kernel_rc, want_rc);

  user_regs_struct regs = cpu->regs;
  apply_syscall_restart(regs, r);
  if (want == SyscallRestart::kRestart) {
    EXPECT_TRUE(is_syscall_instruction(pid, regs.rip));
  }
  regs.orig_rax = static_cast<uint64_t>(-1);
  ASSERT_EQ(::ptrace(PTRACE_SETREGS, pid, nullptr, &regs), 0) << std::strerror(errno);
  auto d = fp->detach();
  ASSERT_TRUE(d.ok()) << d.error().describe();
}

TEST(SyscallRestartOnRealProcess, InterruptedReadIsRestartedAndGetsItsData) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  Child child([&] {
    char c = 0;
    long n = ::syscall(SYS_read, rd.get(), &c, 1);
    return n == 1 && c == 'x' ? 0 : 1;
  });
  ASSERT_GT(child.pid(), 0);
  rd.reset();
  ASSERT_TRUE(wait_blocked_in(child.pid(), SYS_read));
  freeze_fix_and_resume(child.pid(), SYS_read, SyscallRestart::kRestart, -512);
  if (IsSkipped() || HasFatalFailure()) return;
  // Back in read: only now does the byte arrive.
  ASSERT_TRUE(wait_blocked_in(child.pid(), SYS_read));
  ASSERT_EQ(::write(wr.get(), "x", 1), 1);
  EXPECT_EQ(child.wait(), 0);
}

volatile sig_atomic_t g_got_usr1 = 0;

TEST(SyscallRestartOnRealProcess, InterruptedPauseIsRestartedAndStillWaits) {
  Child child([] {
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_got_usr1 = 1; };
    ::sigaction(SIGUSR1, &sa, nullptr);
    long n = ::syscall(SYS_pause);
    return n == -1 && errno == EINTR && g_got_usr1 ? 0 : 1;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_blocked_in(child.pid(), SYS_pause));
  freeze_fix_and_resume(child.pid(), SYS_pause, SyscallRestart::kRestart, -514);
  if (IsSkipped() || HasFatalFailure()) return;
  ASSERT_TRUE(wait_blocked_in(child.pid(), SYS_pause));
  ASSERT_EQ(::kill(child.pid(), SIGUSR1), 0);
  EXPECT_EQ(child.wait(), 0);
}

TEST(SyscallRestartOnRealProcess, InterruptedSleepReturnsEintr) {
  Child child([] {
    // An hour: a restart instead of EINTR shows as a child still asleep at wait's deadline,
    // with no bound on how fast this machine freezes and resumes it.
    timespec ts{3600, 0};
    long n = ::syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, nullptr);
    return n == -1 && errno == EINTR ? 0 : 1;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(wait_blocked_in(child.pid(), SYS_clock_nanosleep));
  freeze_fix_and_resume(child.pid(), SYS_clock_nanosleep, SyscallRestart::kEintr, -516);
  if (IsSkipped() || HasFatalFailure()) return;
  const int code = child.wait();
  EXPECT_NE(code, -1000) << "still asleep: the sleep was restarted instead of returning EINTR";
  EXPECT_EQ(code, 0);
}

TEST(SyscallRestartOnRealProcess, ProcessOutsideASyscallNeedsNothing) {
  // The child counts in shared memory once it is in its loop: frozen earlier (a fixed sleep is
  // not enough on a loaded machine), it would still be returning from fork, inside a syscall.
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  UniqueMapping shared(p, 4096);
  auto* spins = static_cast<volatile uint64_t*>(p);
  Child child([spins] {
    for (;;) *spins = *spins + 1;
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (*spins == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_NE(*spins, 0u) << "the child never reached its loop";
  auto fp = FrozenProcess::seize(child.pid());
  if (!fp.ok() && fp.error().code == EPERM) {
    GTEST_SKIP() << "ptrace not permitted: " << fp.error().describe();
  }
  ASSERT_TRUE(fp.ok()) << fp.error().describe();
  auto cpu = fp->read_cpu_state();
  ASSERT_TRUE(cpu.ok()) << cpu.error().describe();
  const auto r = classify_syscall_restart(cpu->regs);
  EXPECT_EQ(r.action, SyscallRestart::kNone);
  EXPECT_EQ(r.nr, -1);
}

}  // namespace
}  // namespace prewarm
