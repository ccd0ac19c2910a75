// Parsed /proc/PID/smaps: one entry per VMA with its VmFlags.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"
#include "snapshot/vm_flags.h"

namespace prewarm {

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;  // PROT_*
  bool shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string name;      // path, [heap], [stack], [vdso], anon_inode:[...], or empty
  ParsedVmFlags vm_flags;  // decoded once here; empty for maps

  uint64_t size() const { return end - start; }
  std::string vm_flags_text() const { return to_text(vm_flags); }
  bool is_deleted() const;
};

// Parses the text of /proc/PID/smaps (or of maps, then vm_flags stay empty).
Result<std::vector<Vma>> parse_smaps(const std::string& text);
Result<std::vector<Vma>> read_smaps(pid_t pid);  // pid 0 = self
Result<std::vector<Vma>> read_maps(pid_t pid);   // cheaper: no VmFlags

}  // namespace prewarm
