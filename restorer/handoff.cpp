// Handing the process over to the restorer blob.
#include "restorer/handoff.h"

#include <signal.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

extern "C" const char prewarm_restorer_blob[];
extern "C" const char prewarm_restorer_blob_end[];

namespace prewarm {

std::string_view restorer_blob() {
  return {prewarm_restorer_blob,
          static_cast<size_t>(prewarm_restorer_blob_end - prewarm_restorer_blob)};
}

Result<void> drop_own_rseq() {
  if (__rseq_size == 0) return ok();  // glibc did not register (tunable or old kernel)
  void* area = static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset;
  // glibc registers at least the original 32-byte area even when it reports a smaller size.
  for (unsigned len : {__rseq_size, 32u}) {
    if (::syscall(SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0) return ok();
    if (errno != EINVAL) break;
  }
  return errno_error("unregister the launcher's rseq area");
}

Result<void> block_all_signals() {
  uint64_t all = ~0ull;
  if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, sizeof all) != 0)
    return errno_error("block signals");
  return ok();
}

void jump_to_blob(uint64_t entry, uint64_t plan, uint64_t stack_top) {
  // As if called: the blob's entry sees rsp = 8 (mod 16).
  uint64_t sp = (stack_top & ~15ull) - 8;
  asm volatile(
      "mov %0, %%rsp\n\t"
      "xor %%ebp, %%ebp\n\t"
      "jmp *%1\n\t"
      :
      : "r"(sp), "r"(entry), "D"(plan)
      : "memory");
  __builtin_unreachable();
}

}  // namespace prewarm
