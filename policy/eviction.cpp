#include "policy/eviction.h"

#include <algorithm>

namespace prewarm::policy {

std::vector<std::string> choose_evictions(std::vector<StoredImage> images, uint64_t budget,
                                          const std::string& keep) {
  uint64_t total = 0;
  for (const auto& i : images) total += i.bytes;
  std::sort(images.begin(), images.end(), [](auto& a, auto& b) {
    return a.last_used != b.last_used ? a.last_used < b.last_used : a.key < b.key;
  });
  std::vector<std::string> out;
  for (const auto& i : images) {
    if (total <= budget) break;
    if (i.key == keep) continue;
    out.push_back(i.key);
    total -= i.bytes;
  }
  return out;
}

}  // namespace prewarm::policy
