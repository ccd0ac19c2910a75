// PAGEMAP_SCAN: the kernel walks the page tables and returns only ranges that match.
#include "snapshot/pagemap_scan.h"

#include <sys/ioctl.h>

#include <cerrno>

namespace prewarm {
namespace {

constexpr size_t kRegionsPerCall = 512;

}  // namespace

Result<std::vector<PageRegion>> scan_present_pages(int pagemap_fd, uint64_t start, uint64_t end) {
  std::vector<PageRegion> out;
  page_region vec[kRegionsPerCall];
  uint64_t pos = start;
  while (pos < end) {
    pm_scan_arg arg{};
    arg.size = sizeof arg;
    arg.start = pos;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = kRegionsPerCall;
    arg.category_anyof_mask = kPagePresent | kPageSwapped;
    arg.return_mask = kPageFile | kPagePresent | kPageSwapped | kPagePfnZero;
    int n = ::ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);
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
  pm_scan_arg arg{};
  arg.size = sizeof arg;  // start == end: walks nothing
  if (::ioctl(pagemap_fd, PAGEMAP_SCAN, &arg) == 0) return true;
  return errno != ENOTTY && errno != EINVAL;
}

}  // namespace prewarm
