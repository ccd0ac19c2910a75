// Timestamps used across prewarm: CLOCK_MONOTONIC for durations (comparable between the launcher
// and prewarmd on one machine), the wall clock in ms for records people read.
#pragma once

#include <time.h>

#include <cstdint>

namespace prewarm {

inline int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000ll + ts.tv_nsec;
}

inline int64_t wall_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1000ll + ts.tv_nsec / 1'000'000;
}

}  // namespace prewarm
