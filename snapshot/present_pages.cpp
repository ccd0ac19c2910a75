// The choice between PAGEMAP_SCAN and reading pagemap, made once per process.
#include "snapshot/present_pages.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "snapshot/pagemap_fallback.h"
#include "snapshot/unique_fd.h"

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

Result<std::vector<PageRegion>> shared_anon_pages(pid_t pid, uint64_t start, uint64_t end, uint64_t offset) {
  char path[96];
  std::snprintf(path, sizeof path, "/proc/%d/map_files/%lx-%lx", static_cast<int>(pid),
                static_cast<unsigned long>(start), static_cast<unsigned long>(end));
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno != EPERM && errno != EACCES) return errno_error(std::string("open ") + path);
    // Reading a hole allocates it in the app's object (charged to its memory cgroup): bounded.
    constexpr uint64_t kMaxUnlisted = 256ull << 20;
    if (end - start > kMaxUnlisted)
      return make_error(EPERM, "a shared anonymous mapping of " + std::to_string((end - start) >> 20) +
                                   " MiB whose pages this user cannot list (" + path +
                                   ": needs CAP_CHECKPOINT_RESTORE or root); reading them all would allocate them in "
                                   "the app, so it is not dumped");
    return std::vector<PageRegion>{{start, end, 0}};
  }
  std::vector<PageRegion> out;
  const auto last = static_cast<off_t>(offset + (end - start));
  for (auto at = static_cast<off_t>(offset); at < last;) {
    const off_t data = ::lseek(fd.get(), at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // no data past `at`
    if (data < 0) return errno_error(std::string("lseek SEEK_DATA ") + path);
    if (data >= last) break;
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) return errno_error(std::string("lseek SEEK_HOLE ") + path);
    hole = std::min(hole, last);
    out.push_back({start + static_cast<uint64_t>(data) - offset, start + static_cast<uint64_t>(hole) - offset, 0});
    at = hole;
  }
  return out;
}

}  // namespace prewarm
