// Invalidation on upgrade: inotify on every recorded file and its directory (package managers
// rename a new file over the old one); any event schedules a re-check of the stat records.
#include <sys/inotify.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "prewarmd/daemon.h"
#include "prewarmd/file_records.h"
#include "prewarmd/log.h"

namespace prewarm {

void Daemon::rebuild_watches() {
  sd_event_source_disable_unref(inotify_source_);
  inotify_source_ = nullptr;
  inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify_.valid()) {
    log_event(LOG_WARNING, std::string("inotify unavailable, files are checked only at launch: ") + std::strerror(errno));
    return;
  }
  std::set<std::string> files, dirs;
  for (const auto& [k, e] : store_.entries())
    for (const auto& f : e.files) {
      files.insert(f.path);
      auto slash = f.path.rfind('/');
      dirs.insert(slash == 0 ? "/" : f.path.substr(0, slash));
    }
  for (const auto& f : files)
    ::inotify_add_watch(inotify_.get(), f.c_str(), IN_ATTRIB | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
  for (const auto& d : dirs)
    ::inotify_add_watch(inotify_.get(), d.c_str(), IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR);
  sd_event_add_io(event_, &inotify_source_, inotify_.get(), EPOLLIN, on_inotify, this);
}

int Daemon::on_inotify(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  alignas(inotify_event) char buf[16384];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
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
  if (!stale.empty()) save(), update_status();
  rebuild_watches();
}

}  // namespace prewarm
