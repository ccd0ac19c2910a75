// Finding the pages of a VMA that hold data, with the PAGEMAP_SCAN ioctl (Linux 6.7+).
#pragma once

#include <cstdint>
#include <vector>

#include "snapshot/result.h"
#include "snapshot/uapi_compat.h"

namespace prewarm {

// Categories reported by PAGEMAP_SCAN (linux/fs.h, or snapshot/uapi_compat.h before 6.7's headers).
enum PageCategory : uint64_t {
  kPageWritten = PAGE_IS_WRITTEN,
  kPageFile = PAGE_IS_FILE,
  kPagePresent = PAGE_IS_PRESENT,
  kPageSwapped = PAGE_IS_SWAPPED,
  kPagePfnZero = PAGE_IS_PFNZERO,
  kPageHuge = PAGE_IS_HUGE,  // not asked for: /proc/PID/pagemap cannot say it, and the dump needs it not
};

struct PageRegion {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t categories = 0;
};

// Returns the present or swapped regions of [start, end) with their categories. Only those
// ranges come back, so a huge sparse reservation costs nothing (never one pagemap entry per page).
Result<std::vector<PageRegion>> scan_present_pages(int pagemap_fd, uint64_t start, uint64_t end);

// False when the kernel has no PAGEMAP_SCAN (an empty scan fails with ENOTTY: before 6.7, or
// EINVAL: an argument layout it does not know); true otherwise, other errors included.
bool pagemap_scan_supported(int pagemap_fd);

}  // namespace prewarm
