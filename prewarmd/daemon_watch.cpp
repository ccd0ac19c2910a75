// Invalidation on upgrade: inotify on every recorded file and its directory (package managers
// rename a new file over the old one); any event schedules a re-check of the stat records.
#include <sys/inotify.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "prewarmd/daemon.h"
#include "prewarmd/file_records.h"
#include "prewarmd/log.h"

namespace prewarm {

void Daemon::drop_watches() {
  for (sd_event_source* w : watches_) sd_event_source_disable_unref(w);
  watches_.clear();
}

void Daemon::rebuild_watches() {
  drop_watches();
  std::set<std::string> files, dirs;
  for (const auto& [k, e] : store_.entries())
    for (const auto& f : e.files) {
      files.insert(f.path);
      auto slash = f.path.rfind('/');
      dirs.insert(slash == 0 ? "/" : f.path.substr(0, slash));
    }
  // sd-event shares one inotify descriptor among these sources. A path that is gone has no
  // watch: its record already says it changed, and the launch's own check stats it anyway.
  int failed = 0, first_error = 0;
  auto watch = [&](const std::string& path, uint32_t mask) {
    sd_event_source* w = nullptr;
    const int r = sd_event_add_inotify(event_, &w, path.c_str(), mask, on_inotify, this);
    if (r >= 0) watches_.push_back(w);
    else if (r != -ENOENT && r != -ENOTDIR && !failed++) first_error = -r;
  };
  for (const auto& f : files) watch(f, IN_ATTRIB | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
  for (const auto& d : dirs) watch(d, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR);
  if (failed && failed != watch_failures_)
    log_event(LOG_WARNING, std::to_string(failed) + " of " + std::to_string(files.size() + dirs.size()) +
                               " recorded files and directories are not watched (" + std::strerror(first_error) +
                               "; raise fs.inotify.max_user_watches if that is the cause): their changes are "
                               "seen at the next launch instead");
  watch_failures_ = failed;
}

int Daemon::on_inotify(sd_event_source*, const inotify_event*, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  if (!self->recheck_source_)
    sd_event_add_time_relative(self->event_, &self->recheck_source_, CLOCK_MONOTONIC, 200'000, 10'000, on_recheck, self);
  return 0;
}

int Daemon::on_recheck(sd_event_source*, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  self->recheck_source_ = sd_event_source_disable_unref(self->recheck_source_);
  self->recheck_files();
  return 0;
}

void Daemon::recheck_files() {
  std::vector<std::pair<std::string, std::string>> stale;  // key, change
  for (const auto& [k, e] : store_.entries())
    if (std::string change = first_change(e.files); !change.empty()) stale.emplace_back(k, change);
  for (const auto& [k, change] : stale) {
    const std::string app = store_.entries().at(k).app;
    store_.remove(k);
    set_status(app, {policy::AppEvent::kStale, change});
    log_event(LOG_NOTICE, app + ": snapshot invalidated, " + change, {{"PREWARM_APP", app}, {"PREWARM_KEY", k}});
  }
  if (!stale.empty()) save_soon(), update_status();
  rebuild_watches();
}

}  // namespace prewarm
