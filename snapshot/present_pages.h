// Which pages of a range hold data: PAGEMAP_SCAN where the kernel has it (6.7+), else
// /proc/PID/pagemap. Both give the same regions; the dump only calls find_present_pages.
#pragma once

#include <sys/types.h>

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

// The pages of a MAP_SHARED|MAP_ANONYMOUS mapping at [start, end) (object offset `offset`) of
// `pid` that may hold data. They live in the mapping's shmem object whether this process maps
// them or not (MADV_DONTNEED drops only its page table entries; a page written through another
// mapping of the object was never faulted here), so its page tables do not tell: the object's
// data ranges (SEEK_DATA/SEEK_HOLE through /proc/PID/map_files, which needs CAP_SYS_ADMIN or
// CAP_CHECKPOINT_RESTORE), else the whole range (reading a hole there allocates a zero page in
// the object), which above 256 MiB is an error instead.
Result<std::vector<PageRegion>> shared_anon_pages(pid_t pid, uint64_t start, uint64_t end, uint64_t offset);

}  // namespace prewarm
