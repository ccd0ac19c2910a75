// The launch history and the dashboard's view of the apps. The history is for people and
// dashboards: a database that fails never fails a launch.
#include <unistd.h>

#include "prewarmd/daemon.h"
#include "prewarmd/log.h"
#include "snapshot/clock.h"

namespace prewarm {

void Daemon::open_history() {
  const std::string path = opts_.state_dir + "/history.db";
  auto h = History::open(path);
  if (!h) {
    // Unreadable or from a newer prewarm: kept aside for whoever wants it, and a fresh one begun.
    const std::string aside = path + ".broken-" + std::to_string(wall_ms());
    log_event(LOG_ERR, "history database unusable (" + h.error().describe() + "); moved to " + aside);
    for (const char* sfx : {"", "-wal", "-shm"}) ::rename((path + sfx).c_str(), (aside + sfx).c_str());
    h = History::open(path);
  }
  if (!h) {
    log_event(LOG_ERR, "running without a launch history: " + h.error().describe());
    return;
  }
  history_ = std::move(*h);
}

AppTotals Daemon::totals_of(const std::string& app) const {
  if (!history_) return {};
  const auto t = history_->totals()->own(app);
  return t ? *t : AppTotals{};
}

void Daemon::start_dashboard() {
  if (opts_.http == "off" || !history_) return;
  DashboardOptions o;
  o.others = opts_.dashboard_shows_timings ? OthersSee::kTimings : OthersSee::kNothing;
  dashboard_ = std::make_unique<Dashboard>(opts_.state_dir + "/history.db", history_->totals(), o);
  publish();
  dashboard_->publish(view_);  // the view as it stands (publish() passes on only changes)
  auto url = dashboard_->start(opts_.http);
  const std::string url_file = opts_.runtime_dir + "/dashboard";
  if (!url) {
    log_event(LOG_ERR, url.error().describe() + "; running without the dashboard (set --http)");
    dashboard_.reset();
    ::unlink(url_file.c_str());
    return;
  }
  (void)write_file_atomic(url_file, *url + "\n", 0644);
  sd_event_add_io(
      event_, &dashboard_busy_source_, dashboard_->busy_fd(), EPOLLIN,
      [](sd_event_source*, int fd, uint32_t, void* userdata) {
        uint64_t n;
        (void)!::read(fd, &n, sizeof n);
        static_cast<Daemon*>(userdata)->hurry_soon(IdleThread::kLateNs);
        return 0;
      },
      this);
  log_event(LOG_INFO, "dashboard on " + *url, {{"PREWARM_DASHBOARD", *url}});
}

void Daemon::start_queries() {
  queries_ = std::make_unique<QueryServer>(opts_.state_dir + "/history.db",
                                           history_ ? history_->totals() : nullptr);
  if (auto s = queries_->start(); !s) {
    log_event(LOG_WARNING, s.error().describe() + "; list and stats are answered on the loop");
    return;
  }
  if (int r = sd_event_add_io(event_, &queries_source_, queries_->ready_fd(), EPOLLIN, on_query_done, this); r < 0)
    log_event(LOG_WARNING, make_error(-r, "watch the query thread's eventfd").describe() +
                               "; list and stats are answered on the loop");
  sd_event_add_post(event_, &post_source_, on_post, this);
}

void Daemon::hurry_soon(int64_t ns) {
  if (hurry_source_ || ns <= 0) return;
  sd_event_add_time_relative(event_, &hurry_source_, CLOCK_MONOTONIC, static_cast<uint64_t>(ns / 1000), 10'000,
                             on_hurry, this);
}

int Daemon::on_hurry(sd_event_source*, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  self->hurry_source_ = sd_event_source_disable_unref(self->hurry_source_);
  const int64_t now = mono_ns();
  int64_t next = 0;
  for (IdleThread* w : {self->queries_ ? &self->queries_->worker() : nullptr,
                        self->dashboard_ ? &self->dashboard_->worker() : nullptr})
    if (const int64_t d = w ? w->hurry_if_late(now) : 0; d > 0) next = next ? std::min(next, d) : d;
  self->hurry_soon(next);
  return 0;
}

// After each round of the loop: anything it could not hand to the SCHED_IDLE threads (their lock
// was held) is tried again in a millisecond, never waited for.
int Daemon::on_post(sd_event_source*, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  bool waiting = self->history_ && !self->history_->sync_totals();
  waiting |= self->dashboard_ && !self->dashboard_->sync();
  waiting |= self->queries_ && !self->queries_->sync();
  if (waiting && !self->sync_source_)
    sd_event_add_time_relative(self->event_, &self->sync_source_, CLOCK_MONOTONIC, 1000, 500, on_sync, self);
  return 0;
}

int Daemon::on_sync(sd_event_source*, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  self->sync_source_ = sd_event_source_disable_unref(self->sync_source_);
  if (self->history_) self->history_->sync_totals();
  if (self->queries_ && self->queries_source_) self->deliver_answers(self->queries_->take());
  return 0;  // on_post, after this round, arms it again if something still waits
}

// O(apps) in one walk of the registry, the store's usage and the last view, all in name order: it
// runs for every list and stats. An app's entry is reused while the app, its status and images
// stand, and a view with no entry changed is not published again (no reference counts touched:
// the threads reading the view would contend for them).
void Daemon::publish() {
  const auto usage = store_.usage_by_app();
  const uint64_t store_bytes = store_.total_bytes();
  const auto& before = view_->apps;
  std::vector<std::shared_ptr<const DashboardView::AppView>> apps(registry_.apps.size());  // null: unchanged
  bool changed = before.size() != registry_.apps.size() || view_->store_bytes != store_bytes ||
                 view_->store_budget != opts_.limits.store_budget;
  auto use = usage.begin();
  size_t at = 0, i = 0;
  for (const auto& [name, app] : registry_.apps) {
    while (use != usage.end() && use->first < name) ++use;
    const auto u = use != usage.end() && use->first == name ? use->second : ImageStore::Usage{};
    while (at < before.size() && before[at]->app.config.name < name) ++at;
    const DashboardView::AppView* prev = at < before.size() ? before[at].get() : nullptr;
    if (!prev || prev->app.config.name != name || prev->app.generation != app.generation ||
        prev->app.status != app.status || prev->image_bytes != u.bytes || prev->images != u.images) {
      apps[i] = std::make_shared<const DashboardView::AppView>(DashboardView::AppView{app, u.bytes, true, u.images});
      changed = true;
    }
    ++i;
  }
  if (!changed) return;
  at = 0, i = 0;
  for (const auto& [name, app] : registry_.apps) {
    while (at < before.size() && before[at]->app.config.name < name) ++at;
    if (!apps[i]) apps[i] = before[at];  // unchanged: found by name above
    ++i;
  }
  DashboardView v;
  v.apps = std::move(apps);
  v.store_bytes = store_bytes;
  v.store_budget = opts_.limits.store_budget;
  view_ = std::make_shared<const DashboardView>(std::move(v));
  if (dashboard_) dashboard_->publish(view_);
}

}  // namespace prewarm
