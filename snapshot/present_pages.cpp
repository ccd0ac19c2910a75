// The choice between PAGEMAP_SCAN and reading pagemap, made once per process.
#include "snapshot/present_pages.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "snapshot/pagemap_fallback.h"

namespace prewarm {

PageFinder page_finder(int pagemap_fd) {
  const char* force = std::getenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  if (force != nullptr && std::strcmp(force, "1") == 0) return PageFinder::kPagemapRead;
  static std::once_flag once;
  static PageFinder found = PageFinder::kPagemapScan;
  std::call_once(once, [&] {
    // Any other error is the real scan's to report.
    if (!pagemap_scan_supported(pagemap_fd)) found = PageFinder::kPagemapRead;
  });
  return found;
}

const char* page_finder_name(PageFinder f) {
  return f == PageFinder::kPagemapScan ? "PAGEMAP_SCAN" : "pagemap";
}

Result<std::vector<PageRegion>> find_present_pages(int pagemap_fd, uint64_t start, uint64_t end) {
  if (page_finder(pagemap_fd) == PageFinder::kPagemapScan)
    return scan_present_pages(pagemap_fd, start, end);
  return read_present_pages(pagemap_fd, start, end, zero_frames());
}

}  // namespace prewarm
