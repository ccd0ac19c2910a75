// Times finding a stopped process's pages both ways, side by side in one run: PAGEMAP_SCAN and
// the /proc/PID/pagemap fallback, over the mappings a dump scans. Checks both find the same
// pages. Usage: bench_page_scan PID [ROUNDS]; prints one JSON object. Run by bench/scan.py.
#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "snapshot/pagemap_fallback.h"
#include "snapshot/pagemap_scan.h"
#include "snapshot/proc_maps.h"
#include "snapshot/unique_fd.h"

using namespace prewarm;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Pages in the answer, and the answer itself flattened for the comparison.
uint64_t pages_of(const std::vector<PageRegion>& r) {
  uint64_t n = 0;
  for (const auto& x : r) n += (x.end - x.start) / 4096;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PID [ROUNDS]\n", argv[0]);
    return 2;
  }
  const std::string pid = argv[1];
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 21;
  auto pm = open_fd("/proc/" + pid + "/pagemap", O_RDONLY);
  auto vmas = read_maps(std::atoi(pid.c_str()));
  if (!pm || !vmas) {
    std::fprintf(stderr, "cannot read pid %s\n", pid.c_str());
    return 1;
  }
  // As the dump: not the kernel's own mappings, not shared file mappings (the file is the image).
  std::vector<Vma> scanned;
  uint64_t span = 0;
  for (const auto& v : *vmas) {
    if (v.name.starts_with("[v")) continue;
    if (v.shared && v.inode != 0) continue;
    scanned.push_back(v);
    span += v.size();
  }
  const auto p0 = Clock::now();
  const ZeroFrames zero = zero_frames();
  const double probe_ms = std::chrono::duration<double, std::milli>(Clock::now() - p0).count();

  std::vector<double> scan_ms, read_ms;
  uint64_t pages = 0, regions = 0;
  bool same = true;
  for (int i = 0; i < rounds; ++i) {
    std::vector<std::vector<PageRegion>> a, b;
    // Alternate which goes first, so neither always finds the other's page tables warm.
    for (int k = 0; k < 2; ++k) {
      const bool scan = (i + k) % 2 == 0;
      auto& out = scan ? a : b;
      const auto t0 = Clock::now();
      for (const auto& v : scanned) {
        auto r = scan ? scan_present_pages(pm->get(), v.start, v.end)
                      : read_present_pages(pm->get(), v.start, v.end, zero);
        if (!r) {
          std::fprintf(stderr, "%s: %s\n", v.name.c_str(), r.error().describe().c_str());
          return 1;
        }
        out.push_back(std::move(*r));
      }
      (scan ? scan_ms : read_ms).push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    pages = 0, regions = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      pages += pages_of(a[j]);
      regions += a[j].size();
      if (a[j].size() != b[j].size()) same = false;
      for (size_t x = 0; same && x < a[j].size(); ++x)
        same = a[j][x].start == b[j][x].start && a[j][x].end == b[j][x].end &&
               a[j][x].categories == b[j][x].categories;
    }
  }
  std::printf(
      "{\"mappings\": %zu, \"span_mib\": %.1f, \"pages\": %lu, \"regions\": %lu, \"same\": %s, "
      "\"zero_pfn_known\": %s, \"rounds\": %d, \"scan_ms\": %.3f, \"pagemap_ms\": %.3f, \"zero_probe_ms\": %.3f}\n",
      scanned.size(), span / 1048576.0, static_cast<unsigned long>(pages), static_cast<unsigned long>(regions),
      same ? "true" : "false", zero.zero_pfn ? "true" : "false", rounds, median(scan_ms), median(read_ms), probe_ms);
  return same ? 0 : 1;
}
