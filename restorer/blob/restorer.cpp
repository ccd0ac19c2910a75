// The restorer blob: freestanding position-independent code that runs after the launcher has
// validated, opened and staged everything. It tears down the launcher's address space, builds the
// snapshot's, and resumes the app through rt_sigreturn. Nothing here can fail back into the
// launcher: the launcher's code is gone, so any error prints a message and ends the process.
#include <asm/fcntl.h>
#include <asm/prctl.h>
#include <linux/errno.h>
#include <linux/eventpoll.h>
#include <linux/fs.h>  // SEEK_SET
#include <linux/futex.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/time_types.h>

#include "plan_abi.h"
#include "syscalls.h"
#include "lazy_server.h"  // the lazy restore's page server (section 3b)

// The plan's copies of kernel structures, checked against the kernel's own.
static_assert(sizeof(PwMmMap) == sizeof(prctl_mm_map) && offsetof(PwMmMap, auxv) == offsetof(prctl_mm_map, auxv) &&
                  offsetof(PwMmMap, exe_fd) == offsetof(prctl_mm_map, exe_fd),
              "PwMmMap is struct prctl_mm_map");

namespace {

// A thread of the app: shares everything a pthread shares; its TLS comes with the clone.
constexpr long kCloneThreadFlags =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;

template <typename T>
T* at(const PwPlan* plan, uint64_t off) {
  return reinterpret_cast<T*>(reinterpret_cast<uint64_t>(plan) + off);
}

unsigned long length(const char* s) {
  unsigned long n = 0;
  while (s[n] != 0) ++n;
  return n;
}

void put_hex(char* out, uint64_t v) {
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = "0123456789abcdef"[v & 15];
}

// The monotonic clock, in decimal, into the readiness message's slot at `off` (0: no message).
void stamp(const PwPlan* plan, uint32_t off) {
  if (plan->notify_fd < 0 || off == 0 || off + PW_STAMP_DIGITS > plan->notify_len) return;
  __kernel_timespec ts{};
  if (pw_sys::clock_gettime(pw_sys::kClockMonotonic, &ts) < 0) return;
  uint64_t v = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  char* out = at<char>(plan, plan->notify_off + off);
  for (int i = PW_STAMP_DIGITS - 1; i >= 0; --i, v /= 10) out[i] = static_cast<char>('0' + v % 10);
}

// "prewarm restorer: <what> failed (errno N) at <addr>; ..." on stderr and, from <what> to the
// ';', to prewarmd (PREWARM_RESTORE_FAILED=, ready_message.h) when the plan can be trusted; then exit.
[[noreturn]] void die(const PwPlan* plan, const char* what, long rc, uint64_t addr) {
  char msg[160];
  unsigned long n = 0;
  const char* head = "prewarm restorer: ";
  for (unsigned long i = 0; head[i]; ++i) msg[n++] = head[i];
  for (unsigned long i = 0; i < length(what) && n < 80; ++i) msg[n++] = what[i];
  const char* mid = " failed (errno ";
  for (unsigned long i = 0; mid[i]; ++i) msg[n++] = mid[i];
  long e = -rc;
  char digits[20];
  int d = 0;
  do digits[d++] = static_cast<char>('0' + e % 10), e /= 10; while (e > 0 && d < 20);
  while (d > 0) msg[n++] = digits[--d];
  const char* tail = ") at 0x";
  for (unsigned long i = 0; tail[i]; ++i) msg[n++] = tail[i];
  put_hex(msg + n, addr);
  n += 16;
  const char* end = "; the process cannot continue after the point of no return\n";
  for (unsigned long i = 0; end[i] && n < sizeof msg; ++i) msg[n++] = end[i];
  pw_sys::write(2, msg, n);
  if (plan && plan->notify_fd >= 0) {
    char note[200];
    unsigned long k = 0;
    const char* field = "PREWARM_RESTORE_FAILED=";
    for (unsigned long i = 0; field[i]; ++i) note[k++] = field[i];
    for (unsigned long i = length(head); i < n && msg[i] != ';' && k < sizeof note - 1; ++i) note[k++] = msg[i];
    note[k++] = '\n';
    (void)pw_sys::write(plan->notify_fd, note, k);
  }
  pw_sys::exit_group(PW_RESTORER_EXIT_CODE);
}

void copy_bytes(char* dst, const char* src, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = src[i];
}

void apply_advice(const PwPlan* plan, const PwVmaOp& op) {
  for (const auto& t : kPwAdviceBits) {
    if (!(op.advice & t.bit)) continue;
    long rc = pw_sys::madvise(op.start, op.len, t.advice);
    if (rc < 0) die(plan, "madvise", rc, op.start);
  }
  if (op.advice & (PW_ADVISE_MLOCK | PW_ADVISE_MLOCK_ONFAULT)) {
    long rc = pw_sys::mlock2(op.start, op.len, op.advice & PW_ADVISE_MLOCK_ONFAULT ? MLOCK_ONFAULT : 0);
    if (rc < 0) die(plan, "mlock2", rc, op.start);
  }
}

// Switch to the app's stack, drop the plan and our stack, wake the other threads at the gate
// and return into the app. One asm block because after the munmap no stack and no plan exist.
// The wake is a private futex, keyed by address alone: it needs no memory there. A thread that
// reaches the gate after the unmap finds no word (EFAULT) and goes on as if woken.
[[noreturn]] void finish(uint64_t final_sp, uint64_t self_start, uint64_t self_len, const uint32_t* gate) {
  asm volatile(
      "mov %0, %%rsp\n\t"
      "mov %1, %%rdi\n\t"
      "mov %2, %%rsi\n\t"
      "mov %[munmap], %%eax\n\t"  // munmap(self_start, self_len); its result cannot be acted on
      "syscall\n\t"
      "mov %3, %%rdi\n\t"
      "mov %[wake], %%esi\n\t"  // futex(gate, FUTEX_WAKE_PRIVATE, INT_MAX)
      "mov $0x7fffffff, %%edx\n\t"
      "mov %[futex], %%eax\n\t"
      "syscall\n\t"
      "mov %[sigreturn], %%eax\n\t"
      "syscall\n\t"
      "hlt\n\t"
      :
      : "r"(final_sp), "r"(self_start), "r"(self_len), "r"(gate), [munmap] "i"(__NR_munmap),
        [wake] "i"(FUTEX_WAKE_PRIVATE), [futex] "i"(__NR_futex), [sigreturn] "i"(__NR_rt_sigreturn)
      : "rax", "rdi", "rsi", "rdx", "rcx", "r11", "memory");
  __builtin_unreachable();
}

// A restored thread's last steps: counted as ready, on its app frame, parked at the gate until
// the main thread has dropped the plan region, then rt_sigreturn. From the count on it touches
// no memory of the plan region (the main thread may unmap it at any moment): everything is in
// registers, and a futex wait on an unmapped gate fails with EFAULT, which means "go".
[[noreturn]] void park(uint32_t* ready, const uint32_t* gate, uint64_t final_sp) {
  asm volatile(
      "lock incl (%0)\n\t"
      "mov %0, %%rdi\n\t"
      "mov %[wake], %%esi\n\t"  // futex(ready, FUTEX_WAKE_PRIVATE, 1)
      "mov $1, %%edx\n\t"
      "mov %[futex], %%eax\n\t"
      "syscall\n\t"
      "mov %2, %%rsp\n\t"
      "1:\n\t"
      "mov %1, %%rdi\n\t"
      "mov %[wait], %%esi\n\t"  // futex(gate, FUTEX_WAIT_PRIVATE, 0, NULL)
      "xor %%edx, %%edx\n\t"
      "xor %%r10d, %%r10d\n\t"
      "mov %[futex], %%eax\n\t"
      "syscall\n\t"
      "cmp %[eintr], %%rax\n\t"  // wait again (a stop signal); anything else is the go
      "je 1b\n\t"
      "mov %[sigreturn], %%eax\n\t"
      "syscall\n\t"
      "hlt\n\t"
      :
      : "r"(ready), "r"(gate), "r"(final_sp), [wake] "i"(FUTEX_WAKE_PRIVATE), [wait] "i"(FUTEX_WAIT_PRIVATE),
        [futex] "i"(__NR_futex), [eintr] "i"(-EINTR), [sigreturn] "i"(__NR_rt_sigreturn)
      : "rax", "rdi", "rsi", "rdx", "r10", "rcx", "r11", "memory");
  __builtin_unreachable();
}

// Per-thread kernel state that lives in the app's memory or the task: rseq, robust futexes,
// the tid cleared at exit (and glibc's cached tid there), the name. The same for every thread;
// returns the thread's (new) tid.
long set_thread_state(const PwPlan* plan, uint64_t rseq_area, uint32_t rseq_size, uint32_t rseq_signature, uint64_t robust_list,
                      uint64_t robust_list_len, uint64_t clear_child_tid, uint32_t tid_cached, const char* comm) {
  long rc;
  if (rseq_size != 0) {
    rc = pw_sys::rseq(rseq_area, rseq_size, 0, rseq_signature);
    if (rc < 0) die(plan, "rseq registration", rc, rseq_area);
  }
  if (robust_list != 0) {
    rc = pw_sys::set_robust_list(robust_list, robust_list_len);
    if (rc < 0) die(plan, "set_robust_list", rc, robust_list);
  }
  long tid = pw_sys::set_tid_address(clear_child_tid);  // cannot fail; returns the caller's tid
  // glibc's struct pthread caches the tid there: pthread_kill, pthread_setaffinity_np and
  // friends must name this thread, not the snapshot's.
  if (tid_cached && clear_child_tid != 0) *reinterpret_cast<volatile int32_t*>(clear_child_tid) = static_cast<int32_t>(tid);
  if (comm[0] != 0) {
    rc = pw_sys::prctl(PR_SET_NAME, reinterpret_cast<long>(comm), 0, 0);
    if (rc < 0) die(plan, "prctl(PR_SET_NAME)", rc, 0);
  }
  return tid;
}

// The held locks that name thread `index` (0: main) get its new tid, before any app code runs.
void write_tid_words(const PwPlan* plan, uint32_t index, long tid) {
  const PwTidWord* words = at<PwTidWord>(plan, plan->tid_words_off);
  for (uint32_t i = 0; i < plan->tid_words_count; ++i) {
    if (words[i].thread != index) continue;
    auto* w = reinterpret_cast<volatile uint32_t*>(words[i].addr);
    *w = (*w & ~words[i].mask) | (static_cast<uint32_t>(tid) & words[i].mask);
  }
}

// Where a cloned thread starts, on its own blob stack.
extern "C" [[noreturn]] __attribute__((used)) void restorer_thread(PwPlan* plan, uint64_t index) {
  const PwThread& t = at<PwThread>(plan, plan->threads_off)[index];
  if (t.gs_base != 0) {
    long rc = pw_sys::arch_prctl(ARCH_SET_GS, t.gs_base);
    if (rc < 0) die(plan, "arch_prctl(ARCH_SET_GS) in a thread", rc, t.gs_base);
  }
  const long tid = set_thread_state(plan, t.rseq_area, t.rseq_size, t.rseq_signature, t.robust_list, t.robust_list_len,
                                    t.clear_child_tid, t.tid_cached, t.comm);
  write_tid_words(plan, static_cast<uint32_t>(index + 1), tid);
  park(&plan->threads_ready, &plan->threads_gate, t.final_sp);
}

// clone() for thread `index`: the child starts in restorer_thread(plan, index) on stack_top,
// the parent gets the new tid (or -errno).
long clone_thread(PwPlan* plan, uint64_t index) {
  const PwThread& t = at<PwThread>(plan, plan->threads_off)[index];
  uint64_t* sp = reinterpret_cast<uint64_t*>(t.stack_top) - 2;
  sp[0] = reinterpret_cast<uint64_t>(plan);
  sp[1] = index;
  long ret;
  register long r10 asm("r10") = 0;          // child_tid: set_tid_address does it
  register long r8 asm("r8") = static_cast<long>(t.fs_base);  // tls
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "mov 0(%%rsp), %%rdi\n\t"  // the child: its arguments are on its new stack
      "mov 8(%%rsp), %%rsi\n\t"
      "call restorer_thread\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(static_cast<long>(__NR_clone)), "D"(kCloneThreadFlags), "S"(sp), "d"(0L), "r"(r10), "r"(r8)
      : "rcx", "r11", "memory");
  return ret;
}

}  // namespace

extern "C" [[noreturn]] __attribute__((section(".text.entry"), used)) void restorer_entry(
    PwPlan* plan) {
  if (plan->magic != PW_PLAN_MAGIC || plan->version != PW_PLAN_VERSION)
    die(nullptr, "plan check", -EINVAL, reinterpret_cast<uint64_t>(plan));

  // 1. The vDSO pair: to the hop slot, then to the snapshot's addresses (libc holds pointers
  //    into it). The hop avoids an overlap between old and new places.
  const PwMove* moves = at<PwMove>(plan, plan->moves_off);
  for (uint32_t i = 0; i < plan->moves_count; ++i) {
    long rc = pw_sys::mremap(moves[i].from, moves[i].len, moves[i].to,
                             MREMAP_MAYMOVE | MREMAP_FIXED);
    if (rc < 0) die(plan, "mremap of the vDSO", rc, moves[i].to);
  }

  // 2. Everything of the launcher outside the hole.
  const PwRange* unmap = at<PwRange>(plan, plan->unmap_off);
  for (uint32_t i = 0; i < plan->unmap_count; ++i) {
    long rc = pw_sys::munmap(unmap[i].start, unmap[i].len);
    if (rc < 0) die(plan, "munmap of the launcher", rc, unmap[i].start);
  }

  // 3. The snapshot's mappings.
  const PwVmaOp* ops = at<PwVmaOp>(plan, plan->ops_off);
  for (uint32_t i = 0; i < plan->ops_count; ++i) {
    const PwVmaOp& op = ops[i];
    long rc;
    if (op.kind == PW_OP_MOVE_STAGED)
      rc = pw_sys::mremap(op.staged, op.len, op.start, MREMAP_MAYMOVE | MREMAP_FIXED);
    else if (op.kind == PW_OP_MAP_FILE)
      rc = pw_sys::mmap(op.start, op.len, static_cast<int>(op.prot),
                        static_cast<int>(op.flags) | MAP_FIXED, op.fd, op.file_offset);
    else
      rc = pw_sys::mmap(op.start, op.len, static_cast<int>(op.prot),
                        static_cast<int>(op.flags) | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
    if (rc < 0) die(plan, "mapping", rc, op.start);
    if (static_cast<uint64_t>(rc) != op.start) die(plan, "mapping placement", -EFAULT, op.start);
    // Staged mappings got their advice in the launcher (it moves with the VMA).
    if (op.kind != PW_OP_MOVE_STAGED) apply_advice(plan, op);
  }

  stamp(plan, plan->notify_mapped_off);

  /* ---- lazy ---- */
  // 3b. Lazy restore: the lazy mappings are in place but empty. Register them and start the page
  //     server before anything touches them (the frames, tids and rseq areas below may be there).
  if (plan->lazy_uffd >= 0) pw_lazy::start(plan);
  /* ---- end lazy ---- */

  // 4. mm fields: brk, arg/env ranges, auxv, exe file.
  long rc = pw_sys::prctl(PR_SET_MM, PR_SET_MM_MAP, reinterpret_cast<long>(&plan->mm),
                          sizeof(PwMmMap));
  if (rc < 0) die(plan, "prctl(PR_SET_MM_MAP)", rc, plan->mm.start_brk);

  // 5. TLS: rt_sigreturn does not restore the segment bases.
  rc = pw_sys::arch_prctl(ARCH_SET_FS, plan->fs_base);
  if (rc < 0) die(plan, "arch_prctl(ARCH_SET_FS)", rc, plan->fs_base);
  if (plan->gs_base != 0) {
    rc = pw_sys::arch_prctl(ARCH_SET_GS, plan->gs_base);
    if (rc < 0) die(plan, "arch_prctl(ARCH_SET_GS)", rc, plan->gs_base);
  }

  // 6. Signal dispositions (the blocked mask comes with the sigframe).
  for (int n = 0; n < PW_NSIG; ++n) {
    int sig = n + 1;
    if (sig == pw_sys::kSigKill || sig == pw_sys::kSigStop || !(plan->sigaction_mask & (1ull << n))) continue;
    rc = pw_sys::rt_sigaction(sig, &plan->sigactions[n]);
    if (rc < 0) die(plan, "rt_sigaction", rc, static_cast<uint64_t>(sig));
  }

  // 7. Per-task kernel state that lives in the app's memory: rseq, robust futexes, the tid
  //    cleared at exit (and cached there), the name. The launcher's rseq registration was
  //    dropped before the handoff.
  const long main_tid =
      set_thread_state(plan, plan->rseq_size ? plan->rseq_area : 0, plan->rseq_size, plan->rseq_signature, plan->robust_list,
                       plan->robust_list_len, plan->clear_child_tid, plan->main_tid_cached, plan->main_comm);
  write_tid_words(plan, 0, main_tid);

  // 8. Descriptors: the app's files to their numbers, then everything else of the launcher
  //    (image, mapped files, exe) closed; 0, 1, 2 stay the launcher's own.
  const PwFdMove* fds = at<PwFdMove>(plan, plan->fd_moves_off);
  for (uint32_t i = 0; i < plan->fd_moves_count; ++i) {
    rc = pw_sys::dup3(fds[i].from, fds[i].to, fds[i].cloexec ? O_CLOEXEC : 0);
    if (rc < 0) die(plan, "dup3 of an app file", rc, static_cast<uint64_t>(fds[i].to));
  }
  // 8b. Epoll registrations, keyed by the targets' final numbers (tried by the launcher).
  const PwEpollAdd* adds = at<PwEpollAdd>(plan, plan->epoll_off);
  for (uint32_t i = 0; i < plan->epoll_count; ++i) {
    epoll_event ev{adds[i].events, adds[i].data};
    rc = pw_sys::epoll_ctl(adds[i].epfd, EPOLL_CTL_ADD, adds[i].fd, &ev);
    if (rc < 0) die(plan, "epoll_ctl of an app epoll", rc, static_cast<uint64_t>(adds[i].fd));
  }
  const PwRange* closes = at<PwRange>(plan, plan->fd_close_off);
  for (uint32_t i = 0; i < plan->fd_close_count; ++i) {
    rc = pw_sys::close_range(static_cast<unsigned>(closes[i].start),
                             static_cast<unsigned>(closes[i].start + closes[i].len - 1));
    if (rc < 0) die(plan, "close_range", rc, closes[i].start);
  }
  // 8c. POSIX locks, which any of those closes would have dropped (tested free by the launcher).
  const PwPosixLock* locks = at<PwPosixLock>(plan, plan->posix_locks_off);
  for (uint32_t i = 0; i < plan->posix_locks_count; ++i) {
    flock fl{};
    fl.l_type = locks[i].write ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = locks[i].start;
    fl.l_len = locks[i].len;
    rc = pw_sys::fcntl(locks[i].fd, F_SETLK, reinterpret_cast<long>(&fl));
    if (rc < 0) die(plan, "fcntl(F_SETLK) of a POSIX lock", rc, static_cast<uint64_t>(locks[i].fd));
  }

  // 9. The frames rt_sigreturn restores registers, FPU/AVX state, signal mask and altstack
  //    from, one per thread, each on its own thread's stack.
  copy_bytes(reinterpret_cast<char*>(plan->frame_dest), at<const char>(plan, plan->frame_off),
             plan->frame_len);
  const PwThread* threads = at<PwThread>(plan, plan->threads_off);
  for (uint32_t i = 0; i < plan->threads_count; ++i)
    copy_bytes(reinterpret_cast<char*>(threads[i].frame_dest), at<const char>(plan, threads[i].frame_off),
               threads[i].frame_len);

  // 10. The other threads, each cloned onto its own blob stack; none runs app code before all
  //     are set up and the main thread has dropped the plan region (the gate in finish()).
  for (uint32_t i = 0; i < plan->threads_count; ++i) {
    rc = clone_thread(plan, i);
    if (rc < 0) die(plan, "clone of a thread", rc, i);
  }
  for (;;) {
    uint32_t n = __atomic_load_n(&plan->threads_ready, __ATOMIC_ACQUIRE);
    if (n == plan->threads_count) break;
    (void)pw_sys::futex(&plan->threads_ready, FUTEX_WAIT_PRIVATE, n);
  }

  // 11. The app is in place: tell whoever waits for readiness (prewarmd, and through it systemd).
  if (plan->notify_fd >= 0) {
    stamp(plan, plan->notify_resumed_off);
    (void)pw_sys::write(plan->notify_fd, at<const char>(plan, plan->notify_off), plan->notify_len);
    (void)pw_sys::close_range(static_cast<unsigned>(plan->notify_fd), static_cast<unsigned>(plan->notify_fd));
  }

  finish(plan->final_sp, plan->self_start, plan->self_len, &plan->threads_gate);
}
