// Per-thread state of a frozen process: what each thread's restore needs (registers, mask,
// altstack, rseq, robust list, clear_child_tid, name) and what decides whether it can be
// restored (pending signals, credentials, robust mutexes held).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/proc_maps.h"
#include "snapshot/ptrace_freeze.h"
#include "snapshot/result.h"

namespace prewarm {

struct ThreadInfo {
  pid_t tid = -1;
  std::string comm;
  CpuState cpu;
  uint64_t blocked = 0, pending = 0;  // SigBlk, SigPnd (this thread's own queue)
  std::string credentials;            // status lines that must equal the main thread's
  uint64_t altstack_sp = 0, altstack_size = 0;
  int altstack_flags = 0;
  uint64_t rseq_area = 0;
  uint32_t rseq_size = 0, rseq_signature = 0;
  uint64_t robust_list = 0, robust_list_len = 0;
  uint64_t clear_child_tid = 0;
  bool tid_cached = false;            // the 32-bit word at clear_child_tid held tid
  std::vector<uint64_t> robust_held;  // robust mutexes this thread holds (list entries)
  bool robust_op_pending = false;     // caught between taking or releasing one
  std::string rseq_unreadable;        // why its rseq registration could not be read ("" if read)
  std::vector<uint64_t> owned_locks;  // glibc locks in ld.so's or libc's data that name its tid
};

// glibc's locks of pthread_mutex_t layout record their owner's tid (__owner, at +8; __lock at 0
// is non-zero while held), the dynamic loader's recursive dl_load_lock and dl_load_write_lock
// among them. One held at the snapshot names the old tid: the restored thread, which has a new
// tid, could neither release it nor take it again, and would wait on itself forever. Marks each
// thread's such locks in the writable data of ld.so and libc (and the bss right after).
Result<void> find_owned_locks(int mem_fd, const std::vector<Vma>& vmas, std::vector<ThreadInfo>& threads);

// The lines of /proc/PID/task/TID/status that are per-thread credentials and must be the same
// in every thread for the launcher's single set to carry them: Uid, Gid, Groups, Cap*,
// NoNewPrivs, Seccomp, Seccomp_filters.
std::string credential_lines(const std::string& status_text);

// Reads one held thread's state; runs a few injected syscalls in it (its registers are put
// back). `mem_fd` is /proc/PID/mem opened read-write.
Result<ThreadInfo> collect_thread(FrozenProcess& proc, pid_t tid, int mem_fd, const std::vector<Vma>& vmas);

}  // namespace prewarm
