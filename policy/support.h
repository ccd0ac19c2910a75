// Which mappings and process shapes prewarm can snapshot faithfully. Plain decisions over parsed
// /proc data: no syscalls here, so every rule is a unit test away.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/proc_maps.h"
#include "snapshot/threads.h"

namespace prewarm::policy {

enum class MappingClass {
  kAnon,        // private anonymous: contents from the image
  kFile,        // regular file: mapped again, private written pages from the image
  kSharedAnon,  // MAP_SHARED|MAP_ANONYMOUS: contents from the image
  kVdso,
  kVvar,
  kVvarVclock,
  kSkip,        // not part of the user address space ([vsyscall])
  kRefuse,
};

struct MappingDecision {
  MappingClass cls = MappingClass::kRefuse;
  std::string reason;  // set for kRefuse
};

// `regular_file` says whether the mapped path is a regular file (the caller stats it).
MappingDecision classify_mapping(const Vma& vma, bool regular_file);

enum class FdClass {
  kStdio,       // 0, 1, 2: replaced by the launching process's own
  kRegular,     // reopened by path with flags and offset
  kDirectory,
  kCharDevice,  // only stateless ones (/dev/null, /dev/urandom, ...)
  // Kernel objects: recreated with their state (snapshot/fd_objects.cpp decides the rest: a
  // pipe or socket whose other end is outside the process, an epoll target that is not its fd).
  kEventfd,
  kEpoll,
  kTimerfd,
  kSignalfd,
  kInotify,
  kPipe,
  kSocket,  // only an AF_UNIX socketpair with both ends inside is carried
  kMemfd,   // an fd on a memfd (its mappings are refused by classify_mapping)
  kDeleted, // a regular file unlinked while open (its mappings are refused by classify_mapping)
  kRefuse,
};

struct FdDecision {
  FdClass cls = FdClass::kRefuse;
  std::string reason;
};

// `mode` is the st_mode of the open file (0 when it could not be stat'ed).
FdDecision classify_fd(int fd, const std::string& target, unsigned mode);

// One thing that makes a process unsnapshottable, printed by `prewarm dump` on exit 3.
struct Offender {
  uint64_t start = 0, end = 0;  // 0, 0 when not a mapping
  std::string name;
  std::string vm_flags;
  std::string reason;
};
std::string format_offender(const Offender& o);

// What of its threads a restore cannot carry, one offender each: more than kMaxThreads, a
// signal pending for the process or for a thread, a thread whose credentials, capabilities or
// seccomp differ from the main thread's (the restore has one set, the launcher's), a robust
// mutex held at the snapshot (its futex word holds the old tid). `threads` starts with the main.
inline constexpr size_t kMaxThreads = 1024;
std::vector<Offender> check_threads(const std::vector<ThreadInfo>& threads, uint64_t shared_pending);

}  // namespace prewarm::policy
