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

void Daemon::publish() {
  if (!dashboard_) return;
  std::erase_if(app_views_, [&](const auto& e) { return !registry_.apps.count(e.first); });
  DashboardView v;
  v.apps.reserve(registry_.apps.size());
  for (const auto& [name, app] : registry_.apps) {
    uint64_t bytes = 0;
    for (const auto* e : store_.entries_of(name)) bytes += e->bytes;
    auto& av = app_views_[name];
    if (!av || av->app.generation != app.generation || av->app.status != app.status || av->image_bytes != bytes)
      av = std::make_shared<const DashboardView::AppView>(DashboardView::AppView{app, bytes});
    v.apps.push_back(av);
  }
  v.store_bytes = store_.total_bytes();
  v.store_budget = opts_.limits.store_budget;
  dashboard_->publish(std::move(v));
}

}  // namespace prewarm
