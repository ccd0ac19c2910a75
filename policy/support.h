// Which mappings and process shapes prewarm can snapshot faithfully. Plain decisions over parsed
// /proc data: no syscalls here, so every rule is a unit test away.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/proc_maps.h"

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

// One thing that makes a process unsnapshottable, printed by `prewarm dump` on exit 3.
struct Offender {
  uint64_t start = 0, end = 0;  // 0, 0 when not a mapping
  std::string name;
  std::string vm_flags;
  std::string reason;
};
std::string format_offender(const Offender& o);

// Threads are not carried yet: a process with more than one is refused.
std::vector<Offender> check_threads(int threads);

}  // namespace prewarm::policy
