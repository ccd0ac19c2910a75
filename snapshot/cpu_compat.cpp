// Machine facts for image compatibility checks.
#include "snapshot/cpu_compat.h"

#include <cpuid.h>
#include <sys/utsname.h>
#include <xxhash.h>

#include "snapshot/proc_maps.h"

namespace prewarm {

MachineCompat machine_compat() {
  MachineCompat c;
  utsname u{};
  if (::uname(&u) == 0) c.kernel_release = u.release;
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (__get_cpuid_count(0xd, 0, &a, &b, &cx, &d)) c.xsave_size = b;
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  c.xfeatures = (static_cast<uint64_t>(hi) << 32) | lo;
  return c;
}

Result<SpecialMappings> own_special_mappings() {
  PW_ASSIGN(auto vmas, read_maps(0));
  return special_mappings_of(vmas);
}

Result<SpecialMappings> special_mappings_of(const std::vector<Vma>& vmas) {
  SpecialMappings s;
  for (const auto& v : vmas) {
    if (v.name == "[vvar]") s.vvar_start = v.start, s.vvar_end = v.end;
    if (v.name == "[vvar_vclock]") s.vvar_vclock_start = v.start, s.vvar_vclock_end = v.end;
    if (v.name == "[vdso]") s.vdso_start = v.start, s.vdso_end = v.end;
  }
  if (s.vdso_start == 0) return data_error("this process has no [vdso] mapping");
  return s;
}

std::string hash128(const void* data, size_t len) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
  return std::string(reinterpret_cast<const char*>(c.digest), sizeof c.digest);
}

}  // namespace prewarm
