#include "policy/readiness.h"

#include <charconv>

namespace prewarm::policy {
namespace {

std::optional<uint32_t> parse_ms(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 600'000) return std::nullopt;
  return v;
}

}  // namespace

std::optional<ReadyMode> parse_ready_mode(std::string_view text) {
  if (text == "notify") return ReadyMode{ReadyMode::kNotify, 0};
  if (text == "idle") return ReadyMode{ReadyMode::kIdle, 500};
  auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ms = parse_ms(text.substr(colon + 1));
  if (!ms) return std::nullopt;
  if (text.substr(0, colon) == "idle") return ReadyMode{ReadyMode::kIdle, *ms};
  if (text.substr(0, colon) == "delay") return ReadyMode{ReadyMode::kDelay, *ms};
  return std::nullopt;
}

std::string to_string(const ReadyMode& mode) {
  switch (mode.kind) {
    case ReadyMode::kNotify: return "notify";
    case ReadyMode::kIdle: return "idle:" + std::to_string(mode.ms);
    case ReadyMode::kDelay: return "delay:" + std::to_string(mode.ms);
  }
  return "idle";
}

std::optional<double> IdleDetector::sample(double now_ms, char state, uint64_t cpu_ticks) {
  // Asleep (S: interruptible, I: idle kernel wait) and no CPU time since the previous sample.
  const bool quiet = (state == 'S' || state == 'I') && have_last_ && cpu_ticks == last_cpu_;
  last_cpu_ = cpu_ticks;
  have_last_ = true;
  if (!quiet) {
    idle_since_.reset();
    return std::nullopt;
  }
  if (!idle_since_) idle_since_ = now_ms;
  if (now_ms - *idle_since_ >= window_ms_) return idle_since_;
  return std::nullopt;
}

}  // namespace prewarm::policy
