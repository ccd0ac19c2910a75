// Which pages of a range hold data: PAGEMAP_SCAN where the kernel has it (6.7+), else
// /proc/PID/pagemap. Both give the same regions; the dump only calls find_present_pages.
#pragma once

#include <cstdint>
#include <vector>

#include "snapshot/pagemap_scan.h"
#include "snapshot/result.h"

namespace prewarm {

enum class PageFinder { kPagemapScan, kPagemapRead };

// PREWARM_FORCE_PAGEMAP_FALLBACK=1 in the environment forces the pagemap read (tests, and a way
// out should the ioctl misbehave); otherwise PAGEMAP_SCAN unless the kernel answers the probe
// (once per process) with ENOTTY or EINVAL.
PageFinder page_finder(int pagemap_fd);
const char* page_finder_name(PageFinder f);  // "PAGEMAP_SCAN" or "pagemap"

Result<std::vector<PageRegion>> find_present_pages(int pagemap_fd, uint64_t start, uint64_t end);

}  // namespace prewarm
