// When a cold-started app counts as ready (and is snapshotted): `notify` (READY=1 over
// $NOTIFY_SOCKET), `idle[:MS]` (blocked, no CPU time used for MS), `delay:MS` (a plain timer).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace prewarm::policy {

struct ReadyMode {
  enum Kind { kNotify, kIdle, kDelay } kind = kIdle;
  uint32_t ms = 500;  // idle window or delay
};

// nullopt for anything malformed; `idle` alone means idle:500.
std::optional<ReadyMode> parse_ready_mode(std::string_view text);
std::string to_string(const ReadyMode& mode);

// Fed with samples of /proc/PID/stat (state letter, utime+stime in ticks); says when the process
// has been asleep without using CPU for the whole window.
class IdleDetector {
 public:
  explicit IdleDetector(uint32_t window_ms) : window_ms_(window_ms) {}
  // Returns the time (ms, same clock as `now_ms`) idleness began once the window is complete.
  std::optional<double> sample(double now_ms, char state, uint64_t cpu_ticks);

 private:
  uint32_t window_ms_;
  std::optional<double> idle_since_;
  uint64_t last_cpu_ = 0;
  bool have_last_ = false;
};

}  // namespace prewarm::policy
