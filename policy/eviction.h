// Which images to drop when the store is over its size budget: least recently used first.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace prewarm::policy {

struct StoredImage {
  std::string key;
  uint64_t bytes = 0;
  int64_t last_used = 0;  // any monotone time
};

// Keys to evict, oldest first, until the rest fits in `budget`; `keep` (just captured) is never
// chosen even if it alone exceeds the budget.
std::vector<std::string> choose_evictions(std::vector<StoredImage> images, uint64_t budget,
                                          const std::string& keep);

}  // namespace prewarm::policy
