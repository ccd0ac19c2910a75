// Raw x86-64 syscalls for the freestanding restorer: each returns the kernel's result
// (negative errno on failure), nothing else.
#pragma once

#include <stdint.h>

namespace pw_sys {

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

constexpr long kWrite = 1, kMmap = 9, kMunmap = 11, kRtSigaction = 13, kMremap = 25, kMadvise = 28,
               kPrctl = 157, kArchPrctl = 158, kSetTidAddress = 218, kClockGettime = 228, kExitGroup = 231,
               kSetRobustList = 273, kEpollCtl = 233, kDup3 = 292, kRseq = 334, kCloseRange = 436, kFutex = 202,
               kFcntl = 72;

inline long write(int fd, const void* buf, unsigned long n) {
  return syscall6(kWrite, fd, reinterpret_cast<long>(buf), static_cast<long>(n), 0, 0, 0);
}
inline long mmap(uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t off) {
  return syscall6(kMmap, static_cast<long>(addr), static_cast<long>(len), prot, flags, fd,
                  static_cast<long>(off));
}
inline long munmap(uint64_t addr, uint64_t len) {
  return syscall6(kMunmap, static_cast<long>(addr), static_cast<long>(len), 0, 0, 0, 0);
}
inline long mremap(uint64_t from, uint64_t len, uint64_t to, int flags) {
  return syscall6(kMremap, static_cast<long>(from), static_cast<long>(len), static_cast<long>(len),
                  flags, static_cast<long>(to), 0);
}
inline long madvise(uint64_t addr, uint64_t len, int advice) {
  return syscall6(kMadvise, static_cast<long>(addr), static_cast<long>(len), advice, 0, 0, 0);
}
inline long rt_sigaction(int sig, const void* act) {
  return syscall6(kRtSigaction, sig, reinterpret_cast<long>(act), 0, 8, 0, 0);
}
inline long prctl(int op, long a, long b, long c) { return syscall6(kPrctl, op, a, b, c, 0, 0); }
inline long arch_prctl(int code, uint64_t addr) {
  return syscall6(kArchPrctl, code, static_cast<long>(addr), 0, 0, 0, 0);
}
inline long close_range(unsigned first, unsigned last) {
  return syscall6(kCloseRange, first, last, 0, 0, 0, 0);
}
inline long clock_gettime(int clock, void* ts) {
  return syscall6(kClockGettime, clock, reinterpret_cast<long>(ts), 0, 0, 0, 0);
}
inline long epoll_ctl(int epfd, int op, int fd, const void* event) {
  return syscall6(kEpollCtl, epfd, op, fd, reinterpret_cast<long>(event), 0, 0);
}
inline long dup3(int from, int to, int flags) { return syscall6(kDup3, from, to, flags, 0, 0, 0); }
inline long fcntl(int fd, int cmd, long arg) { return syscall6(kFcntl, fd, cmd, arg, 0, 0, 0); }
inline long set_robust_list(uint64_t head, uint64_t len) {
  return syscall6(kSetRobustList, static_cast<long>(head), static_cast<long>(len), 0, 0, 0, 0);
}
inline long set_tid_address(uint64_t addr) {
  return syscall6(kSetTidAddress, static_cast<long>(addr), 0, 0, 0, 0, 0);
}
inline long rseq(uint64_t area, uint32_t len, int flags, uint32_t sig) {
  return syscall6(kRseq, static_cast<long>(area), len, flags, sig, 0, 0);
}
inline long futex(const uint32_t* addr, int op, uint32_t val) {
  return syscall6(kFutex, reinterpret_cast<long>(addr), op, val, 0, 0, 0);
}
[[noreturn]] inline void exit_group(int code) {
  syscall6(kExitGroup, code, 0, 0, 0, 0, 0);
  __builtin_unreachable();
}

}  // namespace pw_sys
