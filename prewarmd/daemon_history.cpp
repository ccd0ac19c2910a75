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
  const auto t = history_->totals()->get(app);
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
  log_event(LOG_INFO, "dashboard on " + *url, {{"PREWARM_DASHBOARD", *url}});
}

void Daemon::start_queries() {
  queries_ = std::make_unique<QueryServer>(opts_.state_dir + "/history.db",
                                           history_ ? history_->totals() : nullptr);
  if (auto s = queries_->start(); !s) {
    log_event(LOG_WARNING, s.error().describe() + "; list and stats are answered on the loop");
    return;
  }
  sd_event_add_io(event_, &queries_source_, queries_->ready_fd(), EPOLLIN, on_query_done, this);
}

// O(apps) in one walk of the registry, the store's usage and the last view, all in name order: it
// runs for every list and stats. An app's entry is reused while the app, its status and images
// stand, and a view with no entry changed is not published again (no reference counts touched:
// the threads reading the view would contend for them).
void Daemon::publish() {
  const auto usage = store_.usage_by_app();
  const uint64_t store_bytes = store_.total_bytes();
  const auto& before = view_->apps;
  std::vector<std::shared_ptr<const DashboardView::AppView>> fresh;  // non-null: app i changed
  fresh.resize(registry_.apps.size());
  bool changed = before.size() != registry_.apps.size() || view_->store_bytes != store_bytes ||
                 view_->store_budget != opts_.limits.store_budget;
  auto use = usage.begin();
  size_t i = 0;
  for (const auto& [name, app] : registry_.apps) {
    while (use != usage.end() && use->first < name) ++use;
    const auto u = use != usage.end() && use->first == name ? use->second : ImageStore::Usage{};
    const DashboardView::AppView* prev = i < before.size() ? before[i].get() : nullptr;
    if (!prev || prev->app.config.name != name || prev->app.generation != app.generation ||
        prev->app.status != app.status || prev->image_bytes != u.bytes || prev->images != u.images) {
      fresh[i] = std::make_shared<const DashboardView::AppView>(DashboardView::AppView{app, u.bytes, true, u.images});
      changed = true;
    }
    ++i;
  }
  if (!changed) return;
  // Where apps were added or removed the positions shift and the entries after are rebuilt: a
  // registration's cost, not a query's.
  for (size_t j = 0; j < fresh.size(); ++j)
    if (!fresh[j]) fresh[j] = before[j];
  DashboardView v;
  v.apps = std::move(fresh);
  v.store_bytes = store_bytes;
  v.store_budget = opts_.limits.store_budget;
  view_ = std::make_shared<const DashboardView>(std::move(v));
  if (dashboard_) dashboard_->publish(view_);
}

}  // namespace prewarm
