// /proc/PID/pagemap: one 64-bit entry per page (Documentation/admin-guide/mm/pagemap.rst).
#include "snapshot/pagemap_fallback.h"

#include <fcntl.h>
#include <linux/kernel-page-flags.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwap = 1ull << 62;
constexpr uint64_t kPmFile = 1ull << 61;  // file page or shared anonymous (shmem)
constexpr uint64_t kPfnMask = (1ull << 55) - 1;
constexpr uint64_t kHugePages = 512;  // a PMD of 4 KiB pages
// 64 Ki entries (512 KiB) per pread: 256 MiB of address space, few syscalls for a 50 MiB app
// and a bounded buffer for a 1 TiB reservation.
constexpr uint64_t kEntriesPerRead = 64 * 1024;

uint64_t pagemap_entry(int pagemap_fd, const void* addr) {
  uint64_t entry = 0;
  const auto off = static_cast<off_t>(reinterpret_cast<uint64_t>(addr) / kPage * sizeof entry);
  return pread_all(pagemap_fd, &entry, sizeof entry, off).ok() ? entry : 0;
}

// 1 if the frame is one of the kernel's zero pages, 0 if not, -1 when kpageflags is
// unreadable (it is root's).
int kpage_is_zero(uint64_t pfn) {
  auto kf = open_fd("/proc/kpageflags", O_RDONLY);
  uint64_t flags = 0;
  if (!kf.ok() || !pread_all(kf->get(), &flags, sizeof flags, static_cast<off_t>(pfn * sizeof flags)).ok())
    return -1;
  return static_cast<int>((flags >> KPF_ZERO_PAGE) & 1);
}

// Maps the zero page at addr on purpose: true if UFFDIO_ZEROPAGE did it.
bool uffd_zeropage(void* addr) {
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd.valid()) return false;
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) return false;
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(addr), kPage};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0) return false;
  uffdio_zeropage zp{};
  zp.range = {reinterpret_cast<uint64_t>(addr), kPage};
  return ::ioctl(uffd.get(), UFFDIO_ZEROPAGE, &zp) == 0;
}

uint64_t probe_zero_pfn(int self_pagemap) {
  auto m = map_anonymous(kPage, PROT_READ | PROT_WRITE);
  if (!m.ok()) return 0;
  (void)::madvise(m->get(), kPage, MADV_NOHUGEPAGE);
  const bool mapped_zero = uffd_zeropage(m->get());
  // Without a userfaultfd a read fault may map it (on some machines it gets a page of its own).
  if (!mapped_zero) (void)*static_cast<const volatile char*>(m->get());
  const uint64_t entry = pagemap_entry(self_pagemap, m->get());
  const uint64_t pfn = entry & kPfnMask;
  if (!(entry & kPmPresent) || pfn == 0) return 0;  // frames hidden: no CAP_SYS_ADMIN
  const int zero = kpage_is_zero(pfn);
  if (zero == 1 || (zero == -1 && mapped_zero)) return pfn;
  return 0;
}

uint64_t probe_huge_zero_pfn(int self_pagemap) {
  constexpr uint64_t kHuge = kHugePages * kPage;
  // Deliberately never unmapped: this mm's reference keeps the huge zero page (and its frames) alive.
  void* p = ::mmap(nullptr, 2 * kHuge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  char* aligned = reinterpret_cast<char*>((reinterpret_cast<uint64_t>(p) + kHuge - 1) & ~(kHuge - 1));
  uint64_t pfn = 0;
  if (::madvise(aligned, kHuge, MADV_HUGEPAGE) == 0) {
    (void)*static_cast<const volatile char*>(aligned);
    const uint64_t entry = pagemap_entry(self_pagemap, aligned);
    // Only the kernel's word counts (kpageflags): a read fault may as well get a THP of its own.
    if ((entry & kPmPresent) && (entry & kPfnMask) != 0 && kpage_is_zero(entry & kPfnMask) == 1)
      pfn = entry & kPfnMask;
  }
  if (pfn == 0) ::munmap(p, 2 * kHuge);
  return pfn;
}

ZeroFrames probe_zero_frames() {
  auto pm = open_fd("/proc/self/pagemap", O_RDONLY);
  if (!pm.ok()) return {};
  ZeroFrames z;
  z.zero_pfn = probe_zero_pfn(pm->get());
  if (z.zero_pfn != 0) z.huge_zero_pfn = probe_huge_zero_pfn(pm->get());
  return z;
}

uint64_t categories_of(uint64_t entry, const ZeroFrames& zero) {
  if (entry & kPmPresent) {
    const uint64_t pfn = entry & kPfnMask;
    // The huge zero page is not an anonymous page, so pagemap marks it "file"; PAGEMAP_SCAN
    // reports both zero pages as PFNZERO and neither as file.
    if (pfn != 0 && (pfn == zero.zero_pfn ||
                     (zero.huge_zero_pfn != 0 && pfn - zero.huge_zero_pfn < kHugePages)))
      return kPagePresent | kPagePfnZero;
    return kPagePresent | ((entry & kPmFile) ? uint64_t{kPageFile} : 0);
  }
  if (entry & kPmSwap) return kPageSwapped | ((entry & kPmFile) ? uint64_t{kPageFile} : 0);
  return 0;
}

}  // namespace

const ZeroFrames& zero_frames() {
  static const ZeroFrames z = probe_zero_frames();
  return z;
}

Result<std::vector<PageRegion>> read_present_pages(int pagemap_fd, uint64_t start, uint64_t end,
                                                   const ZeroFrames& zero) {
  if (start % kPage != 0 || end % kPage != 0 || end < start)
    return make_error(EINVAL, "pagemap: unaligned range");
  std::vector<PageRegion> out;
  std::vector<uint64_t> buf(static_cast<size_t>(std::min(kEntriesPerRead, (end - start) / kPage)));
  uint64_t addr = start;
  while (addr < end) {
    const uint64_t want = std::min<uint64_t>(buf.size(), (end - addr) / kPage);
    const ssize_t n = ::pread(pagemap_fd, buf.data(), want * sizeof(uint64_t),
                              static_cast<off_t>(addr / kPage * sizeof(uint64_t)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("pagemap read");
    }
    if (n == 0 || n % sizeof(uint64_t) != 0)
      return make_error(EIO, "pagemap read ended early (the process exited?)");
    const auto got = static_cast<uint64_t>(n) / sizeof(uint64_t);
    for (uint64_t i = 0; i < got; ++i, addr += kPage) {
      const uint64_t cat = categories_of(buf[i], zero);
      if (cat == 0) continue;
      if (!out.empty() && out.back().end == addr && out.back().categories == cat)
        out.back().end = addr + kPage;
      else
        out.push_back({addr, addr + kPage, cat});
    }
  }
  return out;
}

}  // namespace prewarm
