// Raw x86-64 syscalls for the freestanding restorer: each returns the kernel's result
// (negative errno on failure), nothing else.
#pragma once

// Syscall numbers and flag values come from the kernel's UAPI headers: macros and plain types,
// usable without a libc (the no-undefined-symbols check in check_blob.cmake holds either way).
#include <asm/unistd.h>
#include <stdint.h>

namespace pw_sys {

// <linux/time.h> and <asm/signal.h> define struct timeval and sigset_t, which clash with the glibc
// declarations <xxhash.h> brings in; these few values are the kernel's ABI and never change.
constexpr int kClockMonotonic = 1;  // CLOCK_MONOTONIC
constexpr int kSigKill = 9, kSigStop = 19;

inline long syscall6(long nr, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

inline long read(int fd, void* buf, unsigned long n) {
  return syscall6(__NR_read, fd, reinterpret_cast<long>(buf), static_cast<long>(n), 0, 0, 0);
}
inline long pread(int fd, void* buf, unsigned long n, uint64_t off) {
  return syscall6(__NR_pread64, fd, reinterpret_cast<long>(buf), static_cast<long>(n), static_cast<long>(off), 0, 0);
}
inline long write(int fd, const void* buf, unsigned long n) {
  return syscall6(__NR_write, fd, reinterpret_cast<long>(buf), static_cast<long>(n), 0, 0, 0);
}
inline long mmap(uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t off) {
  return syscall6(__NR_mmap, static_cast<long>(addr), static_cast<long>(len), prot, flags, fd,
                  static_cast<long>(off));
}
inline long munmap(uint64_t addr, uint64_t len) {
  return syscall6(__NR_munmap, static_cast<long>(addr), static_cast<long>(len), 0, 0, 0, 0);
}
inline long mremap(uint64_t from, uint64_t len, uint64_t to, int flags) {
  return syscall6(__NR_mremap, static_cast<long>(from), static_cast<long>(len), static_cast<long>(len),
                  flags, static_cast<long>(to), 0);
}
inline long madvise(uint64_t addr, uint64_t len, int advice) {
  return syscall6(__NR_madvise, static_cast<long>(addr), static_cast<long>(len), advice, 0, 0, 0);
}
inline long mlock2(uint64_t addr, uint64_t len, int flags) {
  return syscall6(__NR_mlock2, static_cast<long>(addr), static_cast<long>(len), flags, 0, 0, 0);
}
inline long rt_sigaction(int sig, const void* act) {
  return syscall6(__NR_rt_sigaction, sig, reinterpret_cast<long>(act), 0, 8 /* the kernel sigset_t */, 0, 0);
}
inline long ioctl(int fd, unsigned long req, void* arg) {
  return syscall6(__NR_ioctl, fd, static_cast<long>(req), reinterpret_cast<long>(arg), 0, 0, 0);
}
inline long poll(void* fds, unsigned long n, int timeout_ms) {
  return syscall6(__NR_poll, reinterpret_cast<long>(fds), static_cast<long>(n), timeout_ms, 0, 0, 0);
}
inline long close(int fd) { return syscall6(__NR_close, fd, 0, 0, 0, 0, 0); }
inline long nanosleep(const void* ts) { return syscall6(__NR_nanosleep, reinterpret_cast<long>(ts), 0, 0, 0, 0, 0); }
inline long prctl(int op, long a, long b, long c) { return syscall6(__NR_prctl, op, a, b, c, 0, 0); }
inline long arch_prctl(int code, uint64_t addr) {
  return syscall6(__NR_arch_prctl, code, static_cast<long>(addr), 0, 0, 0, 0);
}
inline long close_range(unsigned first, unsigned last) {
  return syscall6(__NR_close_range, first, last, 0, 0, 0, 0);
}
inline long clock_gettime(int clock, void* ts) {
  return syscall6(__NR_clock_gettime, clock, reinterpret_cast<long>(ts), 0, 0, 0, 0);
}
inline long epoll_ctl(int epfd, int op, int fd, const void* event) {
  return syscall6(__NR_epoll_ctl, epfd, op, fd, reinterpret_cast<long>(event), 0, 0);
}
inline long dup3(int from, int to, int flags) { return syscall6(__NR_dup3, from, to, flags, 0, 0, 0); }
inline long fcntl(int fd, int cmd, long arg) { return syscall6(__NR_fcntl, fd, cmd, arg, 0, 0, 0); }
inline long set_robust_list(uint64_t head, uint64_t len) {
  return syscall6(__NR_set_robust_list, static_cast<long>(head), static_cast<long>(len), 0, 0, 0, 0);
}
inline long set_tid_address(uint64_t addr) {
  return syscall6(__NR_set_tid_address, static_cast<long>(addr), 0, 0, 0, 0, 0);
}
inline long rseq(uint64_t area, uint32_t len, int flags, uint32_t sig) {
  return syscall6(__NR_rseq, static_cast<long>(area), len, flags, sig, 0, 0);
}
inline long futex(const uint32_t* addr, int op, uint32_t val) {
  return syscall6(__NR_futex, reinterpret_cast<long>(addr), op, val, 0, 0, 0);
}
[[noreturn]] inline void exit_group(int code) {
  syscall6(__NR_exit_group, code, 0, 0, 0, 0, 0);
  __builtin_unreachable();
}

}  // namespace pw_sys
