// Per-thread state of a frozen process: what each thread's restore needs (registers, mask,
// altstack, rseq, robust list, clear_child_tid, name) and what decides whether it can be
// restored (pending signals, credentials, robust mutexes held).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/proc_identity.h"
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
  std::string scheduling;             // nice, policy, rt priority and CPU affinity: the same
  Placement placement;                // namespaces, cgroups, security label: the main thread's too
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
};

// A 32-bit word of the app's memory that holds a thread's tid: after a restore, the bits in
// `mask` get that thread's new tid.
struct TidWord {
  uint64_t addr = 0;
  uint32_t mask = 0;
  uint32_t thread = 0;  // index into the threads (0: the main thread)
};

// A recursive or error-checking mutex's shape, held by a thread of the process, outside ld.so's
// and libc's data: its tid is not rewritten (look-alikes are too common), so a dump that finds
// one looks again once the process runs on; the bytes as they were dumped.
struct HeldLookalike {
  uint64_t addr = 0;
  std::array<char, 20> bytes{};
};

// glibc's held locks record their holder's tid: a pthread_mutex_t's __owner (and, for PI and
// robust ones, the futex word itself), a pthread_rwlock_t's __cur_writer; the dynamic loader's
// recursive locks are mutexes. Recursive and error-checking mutexes are looked for only in ld.so's
// and libc's data, the others everywhere. A lock is matched by all of its fields (zero padding, no
// robust-list links, a user count no larger than the threads), since memory is full of numbers
// that equal a tid when tids are small (a JVM's, in a pid namespace). Restored with the old tid, the holder could not release its lock
// (EPERM, or an abort for PI) nor see it as its own, and the next taker would wait forever. Fed
// the pages a dump stores, in address order, this finds every such held lock by its layout and
// which thread holds it, so the restore can write the new tids before any app code runs.
class TidWordFinder {
 public:
  TidWordFinder(const std::vector<ThreadInfo>& threads, const std::vector<Vma>& vmas);
  // Bytes at addr; a call that starts where the last one ended continues it (a lock may span).
  // `zeros_until`: the bytes from addr + len up to it read as zero unless the next call continues
  // them (private anonymous memory that is not stored: never touched, or all-zero pages skipped),
  // so a lock whose last fields lie there is found too.
  void scan(uint64_t addr, const char* data, size_t len, uint64_t zeros_until = 0);
  // After the last scan: a tail that zeros follow is looked at against them.
  void finish();
  const std::vector<TidWord>& words() const { return words_; }
  const std::vector<HeldLookalike>& lookalikes() const { return lookalikes_; }

 private:
  void scan_window(uint64_t base, const char* data, size_t starts, size_t len, size_t min_end);
  void scan_tail_against_zeros();
  int thread_of(int32_t tid, uint64_t at) const;
  bool in_glibc_data(uint64_t at) const;
  const std::vector<ThreadInfo>& threads_;
  std::vector<TidWord> words_;
  std::vector<HeldLookalike> lookalikes_;  // at most kMaxLookalikes
  uint32_t min_tid_ = 0, tid_span_ = 0;  // the threads' tids lie in [min, min + span]
  std::vector<std::pair<uint64_t, uint64_t>> glibc_data_;  // ld.so's and libc's writable data and bss
  uint64_t tail_end_ = 0;
  uint64_t zeros_until_ = 0;  // the last call's: zeros from tail_end_ up to it
  std::string tail_;  // the last bytes of the previous call, for a lock across the boundary
};

// The lines of /proc/PID/task/TID/status that are per-thread credentials and must be the same
// in every thread for the launcher's single set to carry them: Uid, Gid, Groups, Cap*,
// NoNewPrivs, Seccomp, Seccomp_filters.
std::string credential_lines(const std::string& status_text);

// What of /proc/PID/task/TID/{stat,status} is per-thread scheduling that the restored thread
// would not have unless it is the main thread's too (the launcher sets one set, for the main
// thread): "nice=N policy=N rtprio=N cpus=LIST".
std::string scheduling_summary(const std::string& stat_text, const std::string& status_text);

// Reads one held thread's state; runs a few injected syscalls in it (its registers are put
// back). `mem_fd` is /proc/PID/mem opened read-write.
Result<ThreadInfo> collect_thread(FrozenProcess& proc, pid_t tid, int mem_fd, const std::vector<Vma>& vmas);

}  // namespace prewarm
