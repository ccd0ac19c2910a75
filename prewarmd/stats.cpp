#include "prewarmd/stats.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "snapshot/ready_message.h"

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

namespace {

// Bucket i holds (g^(i-1), g^i]; its representative 2g^i/(g+1) is within (g-1)/(g+1) of any value in it.
int32_t bucket_of(double ms) {
  ms = std::clamp(ms, ReadySketch::kMinMs, ReadySketch::kMaxMs);
  return static_cast<int32_t>(std::ceil(std::log(ms) / std::log(ReadySketch::kGamma)));
}

double representative(int32_t i) { return 2 * std::pow(ReadySketch::kGamma, i) / (ReadySketch::kGamma + 1); }

}  // namespace

void ReadySketch::add(double ms) {
  if (!std::isfinite(ms)) return;
  const int32_t i = bucket_of(ms);
  auto it = std::lower_bound(buckets_.begin(), buckets_.end(), i, [](const auto& b, int32_t k) { return b.first < k; });
  if (it != buckets_.end() && it->first == i) it->second++;
  else buckets_.insert(it, {i, 1});
  min_ = count_ ? std::min(min_, ms) : ms;
  max_ = count_ ? std::max(max_, ms) : ms;
  count_++;
  sum_ += ms;
}

double ReadySketch::quantile(double q) const {
  if (count_ == 0) return std::nan("");
  q = std::clamp(q, 0.0, 1.0);
  const uint64_t rank = std::clamp<uint64_t>(static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))), 1, count_);
  // The smallest and largest samples are kept exactly; in between, clamping to them only brings
  // the estimate closer.
  if (rank == 1) return min_;
  if (rank == count_) return max_;
  uint64_t seen = 0;
  for (const auto& [i, n] : buckets_) {
    seen += n;
    if (seen >= rank) return std::clamp(representative(i), min_, max_);
  }
  return max_;
}

nlohmann::json ReadySketch::to_json() const {
  nlohmann::json b = nlohmann::json::array();
  for (const auto& [i, n] : buckets_) b.push_back({i, n});
  return {{"n", count_}, {"sum", sum_}, {"min", min_}, {"max", max_}, {"b", b}};
}

std::optional<ReadySketch> ReadySketch::from_json(const nlohmann::json& j) {
  ReadySketch s;
  try {
    s.count_ = j.at("n").get<uint64_t>();
    s.sum_ = j.at("sum").get<double>();
    s.min_ = j.at("min").get<double>();
    s.max_ = j.at("max").get<double>();
    uint64_t total = 0;
    for (const auto& b : j.at("b")) {
      const auto i = b.at(0).get<int32_t>();
      const auto n = b.at(1).get<uint64_t>();
      if ((!s.buckets_.empty() && s.buckets_.back().first >= i) || n == 0) return std::nullopt;
      s.buckets_.push_back({i, n});
      total += n;
    }
    if (total != s.count_) return std::nullopt;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  return s;
}

uint64_t AppTotals::fallback_total() const {
  uint64_t n = 0;
  for (const auto& [k, v] : fallbacks) n += v;
  return n;
}

// The persisted form: the members under their own names (the macros), with "v" beside them. A
// sketch checks its own invariants and the phase sums are an array of four; either, damaged,
// throws BadTotals, so the whole record reads as damaged.
struct BadTotals : std::runtime_error {
  using std::runtime_error::runtime_error;
};
static void to_json(nlohmann::json& j, const ReadySketch& s) { j = s.to_json(); }
static void from_json(const nlohmann::json& j, ReadySketch& s) {
  auto r = ReadySketch::from_json(j);
  if (!r) throw BadTotals("damaged time-to-ready sketch");
  s = std::move(*r);
}
static void to_json(nlohmann::json& j, const RestorePhases& p) { j = {p.validate_ms, p.read_ms, p.map_ms, p.resume_ms}; }
static void from_json(const nlohmann::json& j, RestorePhases& p) {
  if (!j.is_array() || j.size() != 4) throw BadTotals("phase sums are not four numbers");
  p = {j[0].get<double>(), j[1].get<double>(), j[2].get<double>(), j[3].get<double>()};
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AppTotals::Mode, launches, ready, le)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AppTotals, cold, restored, failed, fallbacks, last_fallbacks, phased, phase_sum_ms,
                                   bytes_read_sum, captures, capture_failures, last_image_bytes, image_bytes_sum,
                                   capture_ms_sum, frozen_ms_sum)

nlohmann::json AppTotals::to_json() const {
  nlohmann::json j = *this;
  j["v"] = 1;
  return j;
}

std::optional<AppTotals> AppTotals::from_json(const nlohmann::json& j) {
  try {
    if (j.at("v").get<int>() != 1) return std::nullopt;
    nlohmann::json k = j;
    k.emplace("failed", 0);  // totals written before failed restores were counted
    return k.get<AppTotals>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  } catch (const BadTotals&) {
    return std::nullopt;
  }
}

void count_fallback(AppTotals& t, const std::string& kind, const std::string& reason) {
  t.cold.launches++;
  t.fallbacks[kind]++;
  t.last_fallbacks.push_back(reason);
  if (t.last_fallbacks.size() > AppTotals::kLastFallbacks) t.last_fallbacks.erase(t.last_fallbacks.begin());
}

void count_start(AppTotals& t, std::string_view mode, const std::string& kind, const std::string& reason) {
  if (mode != "cold") return;  // a restore counts once it is ready (or as cold when refused)
  if (!kind.empty()) return count_fallback(t, kind, reason);
  t.cold.launches++;
}

void count_ready(AppTotals& t, std::string_view mode, double ready_ms, const std::optional<RestorePhases>& phases,
                 std::optional<int64_t> bytes_read) {
  const bool restored = mode == "restored";
  AppTotals::Mode& m = restored ? t.restored : t.cold;
  if (restored) m.launches++;
  m.ready.add(ready_ms);
  for (size_t b = 0; b < kReadyBucketsSeconds.size(); ++b) m.le[b] += ready_ms / 1000 <= kReadyBucketsSeconds[b];
  if (phases) {
    t.phased++;
    t.phase_sum_ms.validate_ms += phases->validate_ms;
    t.phase_sum_ms.read_ms += phases->read_ms;
    t.phase_sum_ms.map_ms += phases->map_ms;
    t.phase_sum_ms.resume_ms += phases->resume_ms;
  }
  if (bytes_read) t.bytes_read_sum += *bytes_read;
}

void count_capture(AppTotals& t, bool ok, double duration_ms, double frozen_ms, int64_t image_bytes) {
  if (!ok) {
    t.capture_failures++;
    return;
  }
  t.captures++;
  t.last_image_bytes = image_bytes;
  t.image_bytes_sum += image_bytes;
  t.capture_ms_sum += duration_ms;
  t.frozen_ms_sum += frozen_ms;
}

TotalsBoard::Ptr TotalsBoard::get(const std::string& app) const {
  std::lock_guard lock(mu_);
  auto it = apps_.find(app);
  return it == apps_.end() ? nullptr : it->second;
}

std::map<std::string, TotalsBoard::Ptr> TotalsBoard::all() const {
  std::lock_guard lock(mu_);
  return apps_;
}

TotalsBoard::Ptr TotalsBoard::own(const std::string& app) const {
  auto it = own_.find(app);
  return it == own_.end() ? nullptr : it->second;
}

void TotalsBoard::put(const std::string& app, AppTotals t) {
  auto p = std::make_shared<const AppTotals>(std::move(t));
  own_[app] = p;
  pending_.emplace_back(app, std::move(p));
  sync();
}

void TotalsBoard::erase(const std::string& app) {
  own_.erase(app);
  pending_.emplace_back(app, nullptr);
  sync();
}

bool TotalsBoard::sync() {
  if (pending_.empty()) return true;
  std::vector<Ptr> old;  // freed after the lock (the last reference may be here)
  {
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock) return false;
    for (auto& [app, p] : pending_) {
      auto it = apps_.find(app);
      if (it != apps_.end()) old.push_back(std::move(it->second));
      if (p) apps_.insert_or_assign(it, app, std::move(p));
      else if (it != apps_.end()) apps_.erase(it);
    }
  }
  pending_.clear();
  return true;
}

size_t TotalsBoard::size() const {
  std::lock_guard lock(mu_);
  return apps_.size();
}

nlohmann::json app_stats(const App& app, uint64_t image_bytes, const AppTotals& t) {
  const double c50 = t.cold.ready.quantile(0.5), r50 = t.restored.ready.quantile(0.5);
  const uint64_t total = t.cold.launches + t.restored.launches;
  nlohmann::json phases = nullptr;
  if (t.phased) {
    const double n = static_cast<double>(t.phased);
    const auto& p = t.phase_sum_ms;
    phases = {{"validate_ms", p.validate_ms / n}, {"read_ms", p.read_ms / n}, {"map_ms", p.map_ms / n},
              {"resume_ms", p.resume_ms / n}, {"n", t.phased}};
  }
  auto mean = [](double sum, uint64_t n) { return n ? nlohmann::json(sum / static_cast<double>(n)) : nlohmann::json(nullptr); };
  return {{"name", app.config.name},
          {"state", std::string(policy::to_string(app.status.state))},
          {"reason", app.status.reason},
          {"launches",
           {{"cold", t.cold.launches}, {"restored", t.restored.launches}, {"fallbacks", t.fallback_total()},
            {"failed", t.failed}}},
          {"fallbacks_by_kind", t.fallbacks},
          {"cold_ready_ms", {{"p50", num(c50)}, {"p95", num(t.cold.ready.quantile(0.95))}, {"n", t.cold.ready.count()}}},
          {"restored_ready_ms", {{"p50", num(r50)}, {"p95", num(t.restored.ready.quantile(0.95))}, {"n", t.restored.ready.count()}}},
          {"speedup", num(c50 / r50)},
          {"hit_rate", total ? nlohmann::json(static_cast<double>(t.restored.launches) / static_cast<double>(total)) : nlohmann::json(nullptr)},
          {"restore_phases_mean_ms", phases},
          {"image_bytes", image_bytes},
          {"captures", t.captures},
          {"capture_failures", t.capture_failures},
          {"captured_image_bytes_last", t.last_image_bytes},
          {"capture_ms_mean", mean(t.capture_ms_sum, t.captures)},
          {"last_fallbacks", t.last_fallbacks}};
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

std::optional<RestoreReport> parse_restore_report(std::string_view message, int64_t t0_ns, int64_t now_ns) {
  auto s = ready_message::parse(message);
  // Stamps from before the launch or after now are a forged or damaged message.
  if (!s || s->validated_ns < t0_ns || s->resumed_ns > now_ns) return std::nullopt;
  auto ms = [](int64_t a, int64_t b) { return static_cast<double>(b - a) / 1e6; };
  return RestoreReport{s->resumed_ns,
                       {ms(t0_ns, s->validated_ns), ms(s->validated_ns, s->read_ns), ms(s->read_ns, s->mapped_ns),
                        ms(s->mapped_ns, s->resumed_ns)},
                       s->bytes_read};
}

}  // namespace prewarm
