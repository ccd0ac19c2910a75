#include "prewarmd/stats.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace prewarm {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  q = std::clamp(q, 0.0, 1.0);
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

namespace {
nlohmann::json num(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }
template <typename T>
nlohmann::json opt(const std::optional<T>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }
nlohmann::json text_or_null(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }
}  // namespace

nlohmann::json app_stats(const App& app, uint64_t image_bytes, const AppSummary& s) {
  const double c50 = quantile(s.cold_ready_ms, 0.5), r50 = quantile(s.restored_ready_ms, 0.5);
  const uint64_t total = s.cold + s.restored;
  return {{"name", app.config.name},
          {"state", std::string(policy::to_string(app.status.state))},
          {"reason", app.status.reason},
          {"launches", {{"cold", s.cold}, {"restored", s.restored}, {"fallbacks", s.fallbacks}}},
          {"cold_ready_ms", {{"p50", num(c50)}, {"p95", num(quantile(s.cold_ready_ms, 0.95))}, {"n", s.cold_ready_ms.size()}}},
          {"restored_ready_ms", {{"p50", num(r50)}, {"p95", num(quantile(s.restored_ready_ms, 0.95))}, {"n", s.restored_ready_ms.size()}}},
          {"speedup", num(c50 / r50)},
          {"hit_rate", total ? nlohmann::json(static_cast<double>(s.restored) / static_cast<double>(total)) : nlohmann::json(nullptr)},
          {"image_bytes", image_bytes},
          {"captures", s.captures},
          {"capture_failures", s.capture_failures},
          {"last_fallbacks", s.last_fallbacks}};
}

nlohmann::json to_json(const LaunchRow& r) {
  nlohmann::json phases = nullptr;
  if (r.phases)
    phases = {{"validate_ms", r.phases->validate_ms}, {"read_ms", r.phases->read_ms},
              {"map_ms", r.phases->map_ms}, {"resume_ms", r.phases->resume_ms}};
  return {{"id", r.id}, {"time_ms", r.time_ms}, {"mode", r.mode}, {"fallback", text_or_null(r.fallback)},
          {"fallback_kind", text_or_null(r.fallback_kind)}, {"ready_ms", opt(r.ready_ms)}, {"phases", phases},
          {"bytes_read", opt(r.bytes_read)}, {"pid", r.pid}};
}

nlohmann::json to_json(const SnapshotRow& r) {
  return {{"id", r.id}, {"time_ms", r.time_ms}, {"ok", r.ok}, {"duration_ms", r.duration_ms},
          {"frozen_ms", r.frozen_ms}, {"image_bytes", r.image_bytes}, {"error", text_or_null(r.error)}};
}

namespace {

struct Line {
  std::string_view text;  // without its '\n'
  bool terminated;        // a '\n' followed it
};

// The lines of a notify message (newline-separated assignments).
std::vector<Line> lines_of(std::string_view message) {
  std::vector<Line> out;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find('\n', pos);
    if (end == std::string_view::npos) end = message.size();
    out.push_back({message.substr(pos, end - pos), end < message.size()});
    pos = end + 1;
  }
  return out;
}

// The value of KEY=<decimal> on its own line of `message`, if there is exactly such a line.
std::optional<int64_t> field(std::string_view message, std::string_view key) {
  for (const Line& l : lines_of(message)) {
    std::string_view line = l.text;
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == '=') {
      std::string_view v = line.substr(key.size() + 1);
      int64_t out = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
      return out;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<RestoreReport> parse_restore_report(std::string_view message, int64_t t0_ns, int64_t now_ns) {
  auto validated = field(message, "PREWARM_VALIDATED_NS"), read = field(message, "PREWARM_READ_NS");
  auto mapped = field(message, "PREWARM_MAPPED_NS"), resumed = field(message, "PREWARM_RESUMED_NS");
  auto bytes = field(message, "PREWARM_BYTES_READ");
  if (!validated || !read || !mapped || !resumed || !bytes || *bytes < 0) return std::nullopt;
  // One clock, read in this order: anything else is a forged or damaged message.
  if (!(t0_ns <= *validated && *validated <= *read && *read <= *mapped && *mapped <= *resumed && *resumed <= now_ns))
    return std::nullopt;
  auto ms = [](int64_t a, int64_t b) { return static_cast<double>(b - a) / 1e6; };
  return RestoreReport{*resumed, {ms(t0_ns, *validated), ms(*validated, *read), ms(*read, *mapped), ms(*mapped, *resumed)}, *bytes};
}

std::string without_prewarm_fields(std::string_view message) {
  std::string out;
  for (const Line& l : lines_of(message))
    if (l.text.substr(0, 8) != "PREWARM_") out.append(l.text).append(l.terminated ? "\n" : "");
  return out;
}

}  // namespace prewarm
