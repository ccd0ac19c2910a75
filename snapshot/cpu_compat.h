// Facts about this machine that a restored register state depends on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

struct MachineCompat {
  std::string kernel_release;
  uint64_t xfeatures = 0;   // XCR0
  uint32_t xsave_size = 0;  // CPUID(0xD,0).EBX: XSAVE area size for the enabled features
};

MachineCompat machine_compat();

struct SpecialMappings {
  uint64_t vvar_start = 0, vvar_end = 0;
  uint64_t vvar_vclock_start = 0, vvar_vclock_end = 0;
  uint64_t vdso_start = 0, vdso_end = 0;
};

// The vDSO pair of this process, and a hash of the vDSO text (which must match across a restore:
// libc keeps pointers into it). [vvar_vclock] exists from Linux 6.13 only: before (Debian 12's
// 6.1) its fields stay 0, and [vvar] is the whole data area in front of [vdso].
Result<SpecialMappings> own_special_mappings();
struct Vma;
Result<SpecialMappings> special_mappings_of(const std::vector<Vma>& vmas);
std::string hash128(const void* data, size_t len);  // XXH3-128, 16 bytes big-endian

}  // namespace prewarm
