// Single-stepping a `syscall` instruction in the target with chosen registers.
#include "snapshot/inject_syscall.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr size_t kScratch = 256;
constexpr uint64_t kRedZone = 128;
constexpr int kMaxSteps = 16;

std::atomic<uint32_t>* g_injecting = nullptr;

// Fault injection for tests: PREWARM_FAULT_INJECTED_CALL_STALL_MS holds the first injected call
// that long with its registers in place, as a thread stuck in the call would.
void stall_once_for_tests() {
  static bool done = false;
  if (done) return;
  done = true;
  if (const char* v = std::getenv("PREWARM_FAULT_INJECTED_CALL_STALL_MS"); v && *v)
    ::usleep(static_cast<useconds_t>(std::strtoul(v, nullptr, 10)) * 1000);
}

// Marks the word for the life of one call.
struct Marked {
  Marked() {
    if (g_injecting) g_injecting->store(1);
  }
  ~Marked() {
    if (g_injecting) g_injecting->store(0);
  }
  Marked(const Marked&) = delete;
  Marked& operator=(const Marked&) = delete;
};

// Finds `0f 05` in executable code: right before rip when the process sits in a syscall
// (the usual case), else in the vDSO or any other executable mapping.
Result<uint64_t> find_syscall_insn(int mem_fd, const user_regs_struct& regs,
                                   const std::vector<Vma>& vmas) {
  unsigned char two[2];
  if (regs.rip >= 2 && ::pread(mem_fd, two, 2, static_cast<off_t>(regs.rip - 2)) == 2 &&
      two[0] == 0x0f && two[1] == 0x05)
    return regs.rip - 2;
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& v : vmas) {
      if (!(v.prot & PROT_EXEC) || (pass == 0) != (v.name == "[vdso]") || v.name == "[vsyscall]")
        continue;
      std::string text(std::min<uint64_t>(v.size(), 1 << 20), '\0');
      ssize_t n = ::pread(mem_fd, text.data(), text.size(), static_cast<off_t>(v.start));
      for (ssize_t i = 0; i + 1 < n; ++i)
        if (static_cast<unsigned char>(text[i]) == 0x0f && static_cast<unsigned char>(text[i + 1]) == 0x05)
          return v.start + static_cast<uint64_t>(i);
    }
  }
  return data_error("no syscall instruction found in the process");
}

}  // namespace

void mark_injections_in(std::atomic<uint32_t>* word) { g_injecting = word; }

Result<SyscallInjector> SyscallInjector::attach(FrozenProcess& proc, int mem_fd,
                                                const std::vector<Vma>& vmas, pid_t tid) {
  SyscallInjector inj(proc, mem_fd, tid < 0 ? proc.pid() : tid);
  if (::ptrace(PTRACE_GETREGS, inj.tid_, nullptr, &inj.saved_) != 0)
    return errno_error("ptrace getregs");
  PW_ASSIGN(inj.syscall_insn_, find_syscall_insn(mem_fd, inj.saved_, vmas));
  inj.scratch_ = (inj.saved_.rsp - kRedZone - kScratch) & ~uint64_t{15};
  PW_ASSIGN(inj.scratch_saved_, inj.read(inj.scratch_, kScratch));
  inj.active_ = true;
  return inj;
}

SyscallInjector::SyscallInjector(SyscallInjector&& o) noexcept
    : proc_(o.proc_),
      mem_fd_(o.mem_fd_),
      tid_(o.tid_),
      saved_(o.saved_),
      syscall_insn_(o.syscall_insn_),
      scratch_(o.scratch_),
      scratch_saved_(std::move(o.scratch_saved_)),
      active_(std::exchange(o.active_, false)) {}

SyscallInjector::~SyscallInjector() {
  if (!active_) return;
  // Below the stack's red zone: bytes no code of the thread relies on, put back all the same.
  ::pwrite(mem_fd_, scratch_saved_.data(), scratch_saved_.size(), static_cast<off_t>(scratch_));
}

Result<std::string> SyscallInjector::read(uint64_t addr, size_t len) const {
  std::string out(len, '\0');
  auto r = pread_all(mem_fd_, out.data(), len, static_cast<off_t>(addr));
  if (!r) return r.error();
  return out;
}

Result<long> SyscallInjector::call(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                   uint64_t a6) {
  Marked marked;
  Result<long> r = run(nr, a1, a2, a3, a4, a5, a6);
  // With orig_rax and rax as they were, the kernel applies its syscall-restart rules when the
  // thread resumes, exactly as if nothing had run; put back at once, so that between calls the
  // thread's registers are its own.
  if (::ptrace(PTRACE_SETREGS, tid_, nullptr, &saved_) != 0 && r) return errno_error("ptrace setregs");
  return r;
}

Result<long> SyscallInjector::run(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                  uint64_t a6) {
  const pid_t pid = tid_;
  user_regs_struct r = saved_;
  r.rip = syscall_insn_;
  r.rax = static_cast<uint64_t>(nr);
  r.orig_rax = static_cast<uint64_t>(-1);  // no restart fix-up for the injected call
  r.rdi = a1;
  r.rsi = a2;
  r.rdx = a3;
  r.r10 = a4;
  r.r8 = a5;
  r.r9 = a6;
  if (::ptrace(PTRACE_SETREGS, pid, nullptr, &r) != 0) return errno_error("ptrace setregs");
  for (int step = 0; step < kMaxSteps; ++step) {
    if (::ptrace(PTRACE_SINGLESTEP, pid, nullptr, 0) != 0) return errno_error("ptrace singlestep");
    int status = 0;
    if (::waitpid(pid, &status, __WALL) != pid) return errno_error("waitpid");
    if (!WIFSTOPPED(status)) return make_error(ESRCH, "process exited during an injected syscall");
    user_regs_struct after{};
    if (::ptrace(PTRACE_GETREGS, pid, nullptr, &after) != 0) return errno_error("ptrace getregs");
    if (after.rip == syscall_insn_ + 2) {
      stall_once_for_tests();
      return static_cast<long>(after.rax);
    }
    // A signal arrived before the instruction ran. Stepping on with 0 discards it, so it is
    // handed back to the process when it is let go.
    int sig = WSTOPSIG(status);
    if ((status >> 16) == 0 && sig != SIGTRAP) proc_->defer_signal(tid_, sig);
  }
  return make_error(EAGAIN, "injected syscall did not complete");
}

}  // namespace prewarm
