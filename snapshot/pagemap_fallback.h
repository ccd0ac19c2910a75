// Finding the pages of a range that hold data by reading /proc/PID/pagemap, for kernels without
// the PAGEMAP_SCAN ioctl (before 6.7: Debian 12's 6.1). Same answer as scan_present_pages.
#pragma once

#include <cstdint>
#include <vector>

#include "snapshot/pagemap_scan.h"
#include "snapshot/result.h"

namespace prewarm {

// The frames of the kernel's zero pages as this process sees them in a pagemap, 0 when unknown.
// pagemap shows frame numbers only to an opener with CAP_SYS_ADMIN; without it the zero page
// cannot be told from a page of data.
struct ZeroFrames {
  uint64_t zero_pfn = 0;       // the 4 KiB zero page
  uint64_t huge_zero_pfn = 0;  // first of the 512 frames of the huge (THP) zero page
  bool operator==(const ZeroFrames&) const = default;
};

// Probed once per process in this process's own address space (UFFDIO_ZEROPAGE or a read fault,
// checked in /proc/kpageflags). The 4 KiB zero page never moves; the huge one is held by this
// process's mm from the probe's fault until it exits, so its frames cannot be reused meanwhile.
const ZeroFrames& zero_frames();

// The present or swapped regions of [start, end) with the categories PAGEMAP_SCAN would report
// (kPageFile, kPagePresent, kPageSwapped, kPagePfnZero), adjacent equal regions merged. pagemap
// is read in bounded chunks, never a whole range at once. A zero page whose frame is not in
// `zero` (no CAP_SYS_ADMIN, or not probed) is reported as a present page of data: the dump then
// reads it and stores it as zero by content, so the image is the same, only the dump slower.
Result<std::vector<PageRegion>> read_present_pages(int pagemap_fd, uint64_t start, uint64_t end,
                                                   const ZeroFrames& zero);

}  // namespace prewarm
