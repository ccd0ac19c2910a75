#include "prewarmd/queries.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "policy/app_state.h"
#include "policy/readiness.h"
#include "prewarmd/log.h"
#include "prewarmd/protocol.h"
#include "snapshot/clock.h"

namespace prewarm {
namespace {

using proto::error_reply;
using proto::json;

// Rows one request may read in all ("recent" pages of every app and a "history" page).
constexpr size_t kRowsPerRequest = 1000;

bool sees(uid_t viewer, const App& app) { return viewer == 0 || viewer == app.config.uid; }

}  // namespace

QueryServer::QueryServer(std::string history_path, std::shared_ptr<const TotalsBoard> totals)
    : history_path_(std::move(history_path)), totals_(std::move(totals)) {
  // Fault injection for tests: every answer waits that long first, as one over a slow disk would.
  if (const char* v = std::getenv("PREWARM_FAULT_QUERY_STALL_MS"); v && *v) stall_ms_ = std::atoi(v);
}

QueryServer::~QueryServer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<void> QueryServer::start() {
  ready_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ready_.valid()) return errno_error("queries: eventfd");
  thread_ = std::thread([this] { serve(); });
  return ok();
}

void QueryServer::submit(QueryJob job) {
  unqueued_.push_back(std::move(job));
  sync();
}

bool QueryServer::sync() {
  if (unqueued_.empty()) return !untaken_;
  {
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock) return false;
    const int64_t now = mono_ns();
    for (auto& j : unqueued_) {
      j.asked_ns = now;
      jobs_[j.uid].push_back(std::move(j));
    }
    worker_.busy(now);  // under the lock: the thread's idle() cannot pass it unseen
  }
  unqueued_.clear();
  cv_.notify_one();
  return !untaken_;
}

std::vector<QueryAnswer> QueryServer::take() {
  uint64_t n;
  (void)!::read(ready_.get(), &n, sizeof n);  // reset the count; the queue says what is there
  std::unique_lock lock(mu_, std::try_to_lock);
  untaken_ = !lock;
  if (!lock) return {};
  return std::exchange(done_, {});
}

void QueryServer::serve() {
  worker_.start_here("prewarmd-query");
  for (;;) {
    QueryJob job;
    {
      std::unique_lock lock(mu_);
      if (jobs_.empty()) worker_.idle();
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      auto next = last_uid_ ? jobs_.upper_bound(*last_uid_) : jobs_.begin();
      if (next == jobs_.end()) next = jobs_.begin();
      last_uid_ = next->first;
      job = std::move(next->second.front());
      next->second.pop_front();
      if (next->second.empty()) jobs_.erase(next);
      worker_.pending(job.asked_ns, mono_ns());
      if (stall_ms_ > 0 && cv_.wait_for(lock, std::chrono::milliseconds(stall_ms_), [&] { return stopping_; })) return;
    }
    QueryAnswer a{job.conn, proto::MessageWriter(proto::JsonText{answer(job)}, {})};
    if (job.sock.valid()) {  // without one (the loop could not dup it) the loop writes it all
      if (auto sent = a.rest.write_some(job.sock.get()); sent) a.sent = *sent;
      else a.error = sent.error().describe();
      job.sock.reset();
    }
    {
      std::lock_guard lock(mu_);
      done_.push_back(std::move(a));
    }
    const uint64_t one = 1;
    (void)!::write(ready_.get(), &one, sizeof one);  // cannot fail short of a bug (the count cannot overflow)
  }
}

std::string QueryServer::answer(const QueryJob& job) {
  try {
    const std::string op = job.req.value("op", "");
    if (op == "list") return list(job);
    if (op == "stats") return stats(job);
    return proto::json_text(error_reply("unknown query '" + op + "'", "usage"));
  } catch (const json::exception& e) {
    return proto::json_text(error_reply(std::string("malformed request: ") + e.what(), "usage"));
  }
}

std::optional<std::vector<LaunchRow>> QueryServer::page(const std::string& app, int64_t before, size_t limit) {
  if (!totals_) return std::nullopt;
  if (!reader_) {
    auto h = History::open_reader(history_path_);
    if (!h) {
      if (!reader_failed_) log_event(LOG_WARNING, h.error().describe() + "; stats show no launch rows until it opens");
      reader_failed_ = true;
      return std::nullopt;
    }
    reader_ = std::move(*h);
  }
  auto rows = reader_->launch_page(app, before, limit);
  if (!rows) {
    if (!reader_failed_) log_event(LOG_WARNING, rows.error().describe());
    reader_failed_ = true;
    reader_.reset();
    return std::nullopt;
  }
  reader_failed_ = false;
  return std::move(*rows);
}

// Each app's entry is serialized once per change of what it shows (list_text_): a list of every
// app costs about a concatenation per app.
std::string QueryServer::list(const QueryJob& job) {
  std::string text = R"({"ok":true,"apps":[)";
  bool any = false;
  for (const auto& av : job.view->apps) {
    const App& app = av->app;
    if (!sees(job.uid, app)) continue;
    const std::string& name = app.config.name;
    auto totals = totals_ ? totals_->get(name) : nullptr;
    std::string state = job.capturing.count(name) ? std::string("capturing") : std::string(policy::to_string(app.status.state));
    TextCache::Stamp stamp{totals, state, app.status.reason, av->image_bytes, true, av->images, app.generation};
    const std::string& part = list_text_.get(name, std::move(stamp), [&] {
      return proto::json_text(json{{"name", name},
                                   {"uid", app.config.uid},
                                   {"state", state},
                                   {"reason", app.status.reason},
                                   {"images", av->images},
                                   {"image_bytes", av->image_bytes},
                                   {"ready", policy::to_string(app.config.ready)},
                                   {"argv", app.config.argv},
                                   {"cold", totals ? totals->cold.launches : 0},
                                   {"restored", totals ? totals->restored.launches : 0}});
    });
    if (any) text += ',';
    any = true;
    text += part;
  }
  if (job.uid == 0 || list_text_.size() > 2 * job.view->apps.size() + 64) list_text_.sweep();
  text += "],\"launches_in_flight\":" + std::to_string(job.launches_in_flight) +
          ",\"store_bytes\":" + std::to_string(job.view->store_bytes) +
          ",\"store_budget\":" + std::to_string(job.view->store_budget) + "}";
  return text;
}

// Totals come from memory and each app's part is serialized once per change of what it shows
// (stats_text_). The only history rows read are pages: "recent" (oldest first, per app) and
// "history" (one app, newest first, from a cursor), together at most kRowsPerRequest rows.
std::string QueryServer::stats(const QueryJob& job) {
  const json& req = job.req;
  const std::string only = req.value("name", "");
  const size_t recent = static_cast<size_t>(std::clamp<int64_t>(req.value("recent", int64_t{0}), 0, History::kMaxPage));
  const DashboardView::AppView* only_view = nullptr;
  for (const auto& av : job.view->apps)
    if (!only.empty() && av->app.config.name == only && sees(job.uid, av->app)) only_view = av.get();
  json history_page;
  if (req.contains("history")) {
    if (only.empty()) return proto::json_text(error_reply("--history needs an app NAME", "usage"));
    const json& h = req["history"];
    const int64_t before = h.value("before", int64_t{0});
    const size_t limit = static_cast<size_t>(std::clamp<int64_t>(h.value("limit", int64_t{50}), 1, History::kMaxPage));
    json rows_json = json::array();
    json next = nullptr;
    if (only_view)
      if (auto rows = page(only, before, limit)) {
        for (const auto& r : *rows) rows_json.push_back(to_json(r));
        if (rows->size() == limit) next = rows->back().id;
      }
    history_page = {{"launches", rows_json}, {"next_before", next}};
  }
  size_t rows_left = kRowsPerRequest;
  bool truncated = false, any = false;
  std::string text = R"({"ok":true,"apps":[)";
  for (const auto& av : job.view->apps) {
    const App& app = av->app;
    if (!sees(job.uid, app)) continue;
    if (!only.empty() && av.get() != only_view) continue;
    const std::string& name = app.config.name;
    auto totals = totals_ ? totals_->get(name) : nullptr;
    TextCache::Stamp stamp{totals, std::string(policy::to_string(app.status.state)), app.status.reason, av->image_bytes, true};
    const std::string& part = stats_text_.get(name, std::move(stamp), [&] {
      return proto::json_text(app_stats(app, av->image_bytes, totals ? *totals : AppTotals{}));
    });
    if (any) text += ',';
    any = true;
    if (!totals_ || recent == 0) {
      text += part;
      continue;
    }
    json rows_json = json::array();
    const size_t take = std::min(recent, rows_left);
    truncated |= take < recent;
    if (take > 0)
      if (auto rows = page(name, 0, take)) {
        rows_left -= rows->size();
        for (auto it = rows->rbegin(); it != rows->rend(); ++it) rows_json.push_back(to_json(*it));
      }
    // The cached object with one more member: its closing brace moved past "recent".
    text.append(part, 0, part.size() - 1);
    text += R"(,"recent":)" + proto::json_text(rows_json) + "}";
  }
  if (!only.empty() && !any) return proto::json_text(error_reply("no app named '" + only + "' is registered", "not_found"));
  // After a full pass, entries of apps that are gone (or not this user's) go.
  if (only.empty() && (job.uid == 0 || stats_text_.size() > 2 * job.view->apps.size() + 64)) stats_text_.sweep();
  text += "]";
  if (truncated) text += R"(,"recent_truncated":true)";
  if (!history_page.is_null()) text += R"(,"history":)" + proto::json_text(history_page);
  text += "}";
  return text;
}

}  // namespace prewarm
