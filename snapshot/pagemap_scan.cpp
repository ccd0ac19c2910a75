// PAGEMAP_SCAN: the kernel walks the page tables and returns only ranges that match.
#include "snapshot/pagemap_scan.h"

#include <sys/ioctl.h>

#include <cerrno>

namespace prewarm {
namespace {

struct PmPageRegion {
  uint64_t start, end, categories;
};

struct PmScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
static_assert(sizeof(PmScanArg) == 96, "struct pm_scan_arg layout");

constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr size_t kRegionsPerCall = 512;

}  // namespace

Result<std::vector<PageRegion>> scan_present_pages(int pagemap_fd, uint64_t start, uint64_t end) {
  std::vector<PageRegion> out;
  PmPageRegion vec[kRegionsPerCall];
  uint64_t pos = start;
  while (pos < end) {
    PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = pos;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = kRegionsPerCall;
    arg.category_anyof_mask = kPagePresent | kPageSwapped;
    arg.return_mask = kPageFile | kPagePresent | kPageSwapped | kPagePfnZero;
    int n = ::ioctl(pagemap_fd, kPagemapScan, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("PAGEMAP_SCAN");
    }
    for (int i = 0; i < n; ++i) {
      PageRegion r{vec[i].start, vec[i].end, vec[i].categories};
      // Adjacent regions with equal categories are merged across calls.
      if (!out.empty() && out.back().end == r.start && out.back().categories == r.categories)
        out.back().end = r.end;
      else
        out.push_back(r);
    }
    if (arg.walk_end <= pos) return make_error(EIO, "PAGEMAP_SCAN made no progress");
    pos = arg.walk_end;
  }
  return out;
}

bool pagemap_scan_supported(int pagemap_fd) {
  PmScanArg arg{};
  arg.size = sizeof arg;  // start == end: walks nothing
  if (::ioctl(pagemap_fd, kPagemapScan, &arg) == 0) return true;
  return errno != ENOTTY && errno != EINVAL;
}

}  // namespace prewarm
