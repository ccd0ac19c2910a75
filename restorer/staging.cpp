// Staging: the launcher does all reading and checking, so the blob only moves mappings.
#include "restorer/staging.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <cerrno>

#include "restorer/blob/plan_abi.h"
#include "snapshot/image.h"

namespace prewarm {
namespace {

constexpr uint64_t kAlign = 2ull << 20;

// A new MAP_SHARED|MAP_ANONYMOUS mapping starts at offset 0 of its object; one that started further
// in (its head unmapped, or split off) is made with that head, which is then dropped, so it keeps
// the offset /proc/PID/maps showed.
void* map_shared_anon(uint64_t slot, uint64_t len, uint64_t offset, int flags) {
  if (offset == 0) return ::mmap(reinterpret_cast<void*>(slot), len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
  void* whole = ::mmap(nullptr, offset + len, PROT_READ | PROT_WRITE, (flags & ~MAP_FIXED) | MAP_ANONYMOUS, -1, 0);
  if (whole == MAP_FAILED) return MAP_FAILED;
  char* tail = static_cast<char*>(whole) + offset;
  void* p = ::mremap(tail, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(slot));
  const int saved = errno;
  ::munmap(whole, p == MAP_FAILED ? offset + len : offset);
  errno = saved;
  return p;
}

}  // namespace

int mmap_flags_for(const pb::Mapping& m) {
  int flags = m.shared() ? MAP_SHARED : MAP_PRIVATE;
  if (m.growsdown()) flags |= MAP_GROWSDOWN;
  if (vm_flags_of(m).has(VmFlag::kNoReserve)) flags |= MAP_NORESERVE;
  return flags;
}

uint32_t advice_for(const pb::Mapping& m, bool app_thp_disabled) {
  uint32_t a = 0;
  const VmFlags f = vm_flags_of(m);
  if (f.has(VmFlag::kNoHugePage))
    a |= PW_ADVISE_NOHUGEPAGE;
  else if (f.has(VmFlag::kHugePage) ||
           (!app_thp_disabled && m.kind() == pb::Mapping::ANON && !m.shared() && m.end() - m.start() >= kAlign))
    a |= PW_ADVISE_HUGEPAGE;
  if (f.has(VmFlag::kDontCopy)) a |= PW_ADVISE_DONTFORK;
  if (f.has(VmFlag::kWipeOnFork)) a |= PW_ADVISE_WIPEONFORK;
  if (f.has(VmFlag::kDontDump)) a |= PW_ADVISE_DONTDUMP;
  if (f.has(VmFlag::kSeqRead)) a |= PW_ADVISE_SEQUENTIAL;
  if (f.has(VmFlag::kRandRead)) a |= PW_ADVISE_RANDOM;
  if (f.has(VmFlag::kMergeable)) a |= PW_ADVISE_MERGEABLE;
  if (f.has(VmFlag::kLocked)) a |= f.has(VmFlag::kLockOnFault) ? PW_ADVISE_MLOCK_ONFAULT : PW_ADVISE_MLOCK;
  return a;
}

Result<void> apply_advice(void* addr, uint64_t len, uint32_t advice) {
  for (const auto& [bit, advice_value] : kPwAdviceBits)
    if ((advice & bit) && ::madvise(addr, len, advice_value) != 0)
      return errno_error("madvise " + std::to_string(advice_value));
  // The syscall itself, as the blob makes it: glibc's mlock2() makes mlock(2) for flags 0.
  if ((advice & (PW_ADVISE_MLOCK | PW_ADVISE_MLOCK_ONFAULT)) &&
      ::syscall(SYS_mlock2, addr, len, advice & PW_ADVISE_MLOCK_ONFAULT ? MLOCK_ONFAULT : 0) != 0)
    return errno_error("mlock2 (the app's mlocked mapping; RLIMIT_MEMLOCK here?)");
  return ok();
}

Result<void> stage_mapping(const pb::Snapshot& snap, const pb::Mapping& m, int first_run,
                           int last_run, uint64_t slot, int pages_fd, int file_fd,
                           StagedRead& stats) {
  const uint64_t len = m.end() - m.start();
  int flags = mmap_flags_for(m) | MAP_FIXED;
  void* p;
  if (m.kind() == pb::Mapping::FILE)
    p = ::mmap(reinterpret_cast<void*>(slot), len, PROT_READ | PROT_WRITE, flags, file_fd,
               static_cast<off_t>(m.file_offset()));
  else if (m.kind() == pb::Mapping::SHARED_ANON)
    p = map_shared_anon(slot, len, m.file_offset(), flags);
  else
    p = ::mmap(reinterpret_cast<void*>(slot), len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS,
               -1, 0);
  if (p == MAP_FAILED) return errno_error("stage mapping " + m.name() + " at " + hex(m.start()));
  // Before the first touch, so the fill below already gets huge pages.
  PW_TRY(apply_advice(p, len, advice_for(m, snap.task().attrs().thp_disable())));
  // Runs of one mapping are contiguous in pages.img: read them one run at a time and check each
  // while it is still in cache.
  for (int i = first_run; i < last_run; ++i) {
    const auto& run = snap.page_runs(i);
    char* dst = reinterpret_cast<char*>(slot + (run.addr() - m.start()));
    // Fault the pages in with one call rather than one trap per page during the copy.
    (void)::madvise(dst, run.len(), MADV_POPULATE_WRITE);
    auto r = pread_all(pages_fd, dst, run.len(), static_cast<off_t>(run.file_offset()));
    if (!r) return make_error(r.error().code, "read pages.img at offset " + std::to_string(run.file_offset()));
    if (xxh3_64(dst, run.len()) != run.xxh3())
      return data_error("pages.img is corrupted: checksum mismatch in the run for " + hex(run.addr()) +
                        " (" + m.name() + ")");
    stats.bytes += run.len();
  }
  if (::mprotect(p, len, static_cast<int>(m.prot())) != 0)
    return errno_error("mprotect staged mapping " + hex(m.start()));
  return ok();
}

}  // namespace prewarm
