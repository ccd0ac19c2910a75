// Launches: which image a launch gets (policy::decide_launch), following the launched process by
// its pidfd until it exits, readiness (notify, idle, delay) and fallbacks to a cold start.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "prewarmd/daemon.h"
#include "prewarmd/file_records.h"
#include "prewarmd/log.h"
#include "policy/launch_decision.h"
#include "snapshot/clock.h"
#include "snapshot/fd_objects.h"
#include "snapshot/proc_stat.h"

namespace prewarm {
namespace {

using proto::error_reply;
using proto::json;
using policy::LaunchMode;

policy::LaunchContext launch_context(const App& app, const json& req, const MachineCompat& m) {
  policy::LaunchContext ctx;
  ctx.app = app.config.name;
  ctx.argv = app.config.argv;
  ctx.env = req.value("env", std::vector<std::string>{});
  ctx.cwd = app.config.cwd;
  ctx.uid = app.config.uid;
  ctx.gid = app.config.gid;
  auto stdio = req.value("stdio", std::vector<std::string>{});
  for (size_t i = 0; i < 3; ++i) ctx.stdio[i] = i < stdio.size() ? stdio[i] : "closed";
  ctx.kernel = m.kernel_release;
  ctx.xfeatures = m.xfeatures;
  ctx.xsave_size = m.xsave_size;
  return ctx;
}

}  // namespace

// The app a launch asks for. Root names the owner to run another user's app: a name alone never
// makes root run a program someone else registered.
App* Daemon::launchable_app(const json& req, const proto::PeerCred& cred, json& error) {
  const std::string name = req.at("name").get<std::string>();
  auto it = registry_.apps.find(name);
  const json not_found = error_reply("no app named '" + name + "' is registered (see `prewarm list`)", "not_found");
  if (it == registry_.apps.end()) return error = not_found, nullptr;
  App& app = it->second;
  if (req.contains("owner")) {
    const auto owner = req.at("owner").get<uid_t>();
    if (app.config.uid != owner || (cred.uid != 0 && cred.uid != owner)) return error = not_found, nullptr;
    return &app;
  }
  if (cred.uid == app.config.uid) return &app;
  if (cred.uid == 0) {
    error = error_reply("'" + name + "' belongs to another user (uid " + std::to_string(app.config.uid) +
                            "); root runs another user's app only when it names the owner: `prewarm run USER/" +
                            name + "`",
                        "other_owner");
    return nullptr;
  }
  return error = not_found, nullptr;
}

unsigned Daemon::launches_of(uid_t uid) const {
  unsigned n = 0;
  for (const auto& [id, l] : launches_) n += l->uid == uid;
  return n;
}

Daemon::Reply Daemon::op_launch(const json& req, Connection& c) {
  json err;
  App* app = launchable_app(req, c.cred, err);
  if (!app) return {err};
  const std::string name = app->config.name;
  // 1. Bound to the process that asked, never to its pid number.
  if (!c.pidfd.valid())
    return {error_reply("cannot follow the launching process (" + c.pidfd_error + "); starting cold", "gone")};
  if (!proto::process_alive(c.pidfd.get()))
    return {error_reply("the launching process has exited; nothing to launch", "gone")};
  size_t env_bytes = 0;
  for (const auto& e : req.value("env", json::array())) env_bytes += e.is_string() ? e.get_ref<const std::string&>().size() : 0;
  if (std::string why = policy::check_launch(opts_.limits, launches_of(app->config.uid), env_bytes); !why.empty())
    return {error_reply(why, "limit")};

  auto l = std::make_unique<Launch>();
  l->id = next_launch_++;
  l->app = name;
  l->uid = app->config.uid;
  l->gid = app->config.gid;
  l->pid = c.cred.pid;
  l->pidfd = std::move(c.pidfd);
  l->t0_ns = req.value("t0_ns", mono_ns());
  if (auto id = read_identity(l->pid, l->pidfd.get())) {
    l->launched_in = id->placement;
    if (auto m = open_mm_handle(l->pid)) l->launcher_mm = std::move(*m), l->launcher_stack = id->mm.start_stack;
  }
  l->wall_ms = wall_ms();
  l->ctx = launch_context(*app, req, machine_);
  if (l->launched_in) l->ctx.security = l->launched_in->lsm_label + "\n" + lsm_policy_revision();
  if (const auto it = req.find("listen_inodes"); it != req.end() && it->is_array() && it->size() <= kMaxListenFds)
    for (const auto& v : *it) l->launch_sockets.push_back(v.is_number_unsigned() ? v.get<uint64_t>() : 0);
  // 2. The launch's own readiness socket, connected by the launcher: prewarmd only ever sends where
  //    the client itself could.
  if (req.contains("notify_fd")) {
    const auto i = req.at("notify_fd").get<size_t>();
    if (i < c.received.size()) {
      if (std::string why = accept_notify_socket(c.received[i].get()); why.empty())
        l->notify = std::move(c.received[i]);
      else
        log_event(LOG_WARNING, name + ": not relaying readiness to the launch's NOTIFY_SOCKET: " + why, {{"PREWARM_APP", name}});
    }
  }

  // 3. Which image, if any: files unchanged (cheap stat check), same key, the app user's own.
  std::vector<policy::ImageCandidate> candidates;
  for (const StoreEntry* e : store_.entries_of(name))
    candidates.push_back({e->key, e->uid, first_change(e->files), policy::snapshot_key(l->ctx, e->files) == e->key});
  policy::LaunchDecision d = policy::decide_launch(app->status, captures_.count(name) > 0, app->config.uid, candidates);
  if (!d.stale_image.empty()) {
    std::string change;
    for (const auto& cand : candidates)
      if (cand.key == d.stale_image) change = cand.change;
    log_event(LOG_NOTICE, name + ": snapshot is stale, " + change + "; dropping it",
              {{"PREWARM_APP", name}, {"PREWARM_KEY", d.stale_image}});
    store_.remove(d.stale_image);
    set_status(name, {policy::AppEvent::kStale, change});
    rebuild_watches();
    save_soon();
  }
  json reply = {{"ok", true},
                {"launch", l->id},
                {"argv", app->config.argv},
                {"cwd", app->config.cwd},
                {"uid", app->config.uid},
                {"gid", app->config.gid},
                {"ready", policy::to_string(app->config.ready)},
                {"on_restore", app->config.on_restore},
                {"notify_socket", notify_path_}};
  std::vector<UniqueFd> fds;
  if (!d.image.empty()) {
    // Two read-only descriptors: the launcher never gets a handle on a directory of the store.
    if (auto img = store_.open_image(d.image)) {
      fds.push_back(std::move(img->manifest));
      fds.push_back(std::move(img->pages));
      l->mode = LaunchMode::kRestored;
      l->restored_key = d.image;
      store_.touch(d.image);
      reply["mode"] = "restore";
    } else {
      d.why_cold = "image unreadable: " + img.error().describe();
      d.kind = "unreadable";
    }
  }
  if (l->mode == LaunchMode::kCold) {
    reply["mode"] = "cold";
    reply["reason"] = d.why_cold;
  }
  // 4. Follow the process: its exit ends the launch; readiness per the app's mode.
  if (int r = sd_event_add_io(event_, &l->exit_source, l->pidfd.get(), EPOLLIN, on_launch_exit, this); r < 0)
    return {error_reply("cannot follow the launching process: " + std::string(std::strerror(-r)), "gone")};
  if (l->mode == LaunchMode::kCold) watch_readiness(*l, app->config.ready, l->t0_ns);
  if (history_) {
    LaunchRow row;
    row.app = name;
    row.uid = app->config.uid;
    row.time_ms = l->wall_ms;
    row.pid = l->pid;
    row.mode = std::string(policy::to_string(l->mode));
    if (l->mode == LaunchMode::kCold && !d.kind.empty()) row.fallback_kind = d.kind, row.fallback = d.why_cold;
    auto id = history_->add_launch(row);
    note_history(id);
    if (id) l->history_id = *id;
  }
  log_event(LOG_INFO, name + ": launch " + std::to_string(l->id) + " pid " + std::to_string(l->pid) + " " +
                          std::string(policy::to_string(l->mode)) + (d.why_cold.empty() ? "" : " (" + d.why_cold + ")"),
            {{"PREWARM_APP", name}, {"PREWARM_MODE", std::string(policy::to_string(l->mode))}, {"PREWARM_REASON", d.why_cold}});
  const uint64_t id = l->id;
  launches_[id] = std::move(l);
  publish();
  return {reply, std::move(fds), false, id};
}

// idle and delay readiness are prewarmd's own judgement, on a timer (notify needs none): a delay
// counts from `start_ns`, idleness is sampled every 50 ms.
void Daemon::watch_readiness(Launch& l, const policy::ReadyMode& mode, int64_t start_ns) {
  if (mode.kind == policy::ReadyMode::kNotify) return;
  if (mode.kind == policy::ReadyMode::kIdle) l.idle.emplace(mode.ms);
  const uint64_t first = mode.kind == policy::ReadyMode::kDelay
                             ? static_cast<uint64_t>(start_ns / 1000) + mode.ms * 1000ull
                             : static_cast<uint64_t>(mono_ns() / 1000) + 50'000;
  sd_event_add_time(event_, &l.timer, CLOCK_MONOTONIC, first, 1000, on_launch_timer, this);
}

json Daemon::op_fallback(const json& req, const proto::PeerCred& cred) {
  const uint64_t id = req.at("launch").get<uint64_t>();
  auto it = launches_.find(id);
  // The launch's own process (its pid is unique while its pidfd says it runs) and user.
  if (it == launches_.end() || it->second->pid != cred.pid || it->second->uid != cred.uid ||
      !proto::process_alive(it->second->pidfd.get()))
    return error_reply("no such launch of this process", "not_found");
  Launch& l = *it->second;
  const std::string reason = req.value("reason", "restore failed");
  auto app = registry_.apps.find(l.app);
  if (app != registry_.apps.end()) {
    // The image was refused before the point of no return: keep it aside, never use it again.
    if (!l.restored_key.empty()) store_.quarantine(l.restored_key);
    set_status(l.app, {policy::AppEvent::kRestoreRefused, reason, !store_.entries_of(l.app).empty()});
    if (history_ && l.history_id) note_history(history_->set_fallback(l.history_id, "refused", "restore refused: " + reason));
  }
  l.mode = LaunchMode::kCold;
  l.restored_key.clear();
  log_event(LOG_WARNING, l.app + ": restore refused (" + reason + "); image quarantined, starting cold",
            {{"PREWARM_APP", l.app}, {"PREWARM_MODE", "cold"}, {"PREWARM_FALLBACK", reason}});
  if (app != registry_.apps.end() && !l.timer) watch_readiness(l, app->second.config.ready, mono_ns());
  rebuild_watches();
  save_soon();
  return {{"ok", true}};
}

void Daemon::on_lazy_failure(Launch& l, const std::string& reason) {
  if (l.restored_key.empty()) return;
  store_.quarantine(l.restored_key);
  l.restored_key.clear();
  auto app = registry_.apps.find(l.app);
  if (app != registry_.apps.end())
    set_status(l.app, {policy::AppEvent::kRestoreRefused, "lazy restore: " + reason, !store_.entries_of(l.app).empty()});
  log_event(LOG_ERR, l.app + ": lazy restore killed the app (" + reason + "); image quarantined, the next launch is cold",
            {{"PREWARM_APP", l.app}, {"PREWARM_FALLBACK", reason}});
  rebuild_watches();
  save_soon();
}

void Daemon::on_ready(Launch& l, int64_t ready_ns, const char* how, const std::optional<RestoreReport>& report) {
  if (l.ready) return;
  l.ready = true;
  l.launcher_mm.reset();
  const double ms = static_cast<double>(ready_ns - l.t0_ns) / 1e6;
  if (history_ && l.history_id) {
    std::optional<RestorePhases> phases;
    std::optional<int64_t> bytes;
    if (report) phases = report->phases, bytes = report->bytes_read;
    note_history(history_->set_ready(l.history_id, ms, phases, bytes));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", ms);
  const std::string mode(policy::to_string(l.mode));
  log_event(LOG_INFO, l.app + ": " + mode + " launch ready after " + buf + " ms (" + how + ")",
            {{"PREWARM_APP", l.app}, {"PREWARM_MODE", mode}, {"PREWARM_READY_MS", buf}});
  // Who the process is now; a capture dumps it only if it is still exactly that process.
  if (auto id = read_identity(l.pid, l.pidfd.get())) l.at_ready = std::move(*id);
  if (auto m = open_mm_handle(l.pid)) l.mem_at_ready = std::move(*m);
  auto app = registry_.apps.find(l.app);
  if (app == registry_.apps.end() || l.mode != LaunchMode::kCold) return;
  if (app->second.status.state == policy::AppState::kUnsupported || captures_.count(l.app)) return;
  if (auto r = start_capture(l, 0, std::strcmp(how, "notify") == 0 ? 100 : 0); !r)
    log_event(LOG_ERR, l.app + ": cannot start a capture: " + r.error().describe(), {{"PREWARM_APP", l.app}});
}

int Daemon::on_launch_timer(sd_event_source* s, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [id, lp] : self->launches_) {
    Launch& l = *lp;
    if (l.timer != s) continue;
    auto app = self->registry_.apps.find(l.app);
    if (app == self->registry_.apps.end()) {  // unregistered meanwhile
      self->end_launch(id);
      return 0;
    }
    // Still the launcher: the app has not been executed yet (a short delay:MS can end first).
    if (l.launcher_mm.valid()) {
      if (auto same = mm_unchanged(l.launcher_mm.get(), l.launcher_stack); same && *same) {
        l.waited_for_exec = true;
        sd_event_source_set_time_relative(s, 1'000);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
      }
      l.launcher_mm.reset();
    }
    // An exec seen half done (the new mm in place, its stack not set up yet: stat's startstack
    // reads 0) would give an identity a capture cannot check the process against: a little later.
    if (l.waited_for_exec && l.exec_polls < 1000) {
      auto stat = read_proc_stat(l.pid, 28);
      if (auto stack = stat ? stat->number(28) : Result<uint64_t>(stat.error()); stack && *stack == 0) {
        ++l.exec_polls;
        sd_event_source_set_time_relative(s, 1'000);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
      }
    }
    if (!l.idle) {  // delay:MS
      l.timer = sd_event_source_disable_unref(l.timer);
      self->forward_notify(l, "READY=1");
      const int64_t due = l.t0_ns + static_cast<int64_t>(app->second.config.ready.ms) * 1'000'000;
      self->on_ready(l, l.waited_for_exec ? std::max(due, mono_ns()) : due, "delay");
      return 0;
    }
    // idle[:MS]: asleep, and no CPU time used for the whole window.
    // A line that does not parse is no sample (it is not "no CPU time").
    auto stat = read_proc_stat(l.pid, 15);
    auto utime = stat ? stat->number(14) : Result<uint64_t>(stat.error());
    auto stime = stat ? stat->number(15) : Result<uint64_t>(stat.error());
    if (utime && stime) {
      const double now = static_cast<double>(mono_ns()) / 1e6;
      if (auto since = l.idle->sample(now, stat->state(), *utime + *stime)) {
        l.timer = sd_event_source_disable_unref(l.timer);
        self->forward_notify(l, "READY=1");
        self->on_ready(l, static_cast<int64_t>(*since * 1e6), "idle");
        return 0;
      }
    }
    sd_event_source_set_time_relative(s, 50'000);
    sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    return 0;
  }
  return 0;
}

int Daemon::on_launch_exit(sd_event_source* s, int, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  Launch* l = nullptr;
  for (auto& [id, launch] : self->launches_)
    if (launch->exit_source == s) l = launch.get();
  if (!l) return 0;
  if (l->mode == policy::LaunchMode::kRestored && !l->ready && !l->restored_key.empty()) {
    // The restorer's READY=1 may still be queued behind the exit: read what is there first.
    self->exiting_launch_ = l->id;
    on_notify(nullptr, self->notify_.get(), 0, self);
    self->exiting_launch_ = 0;
    if (!l->ready) self->on_restore_died(*l);
  }
  self->end_launch(l->id);
  return 0;
}

// The launch took an image and never fell back (a refusal before the point of no return is a
// fallback), yet its process is gone before the restorer reported it in place: the restore failed
// past that point (the blob exits 125 naming why on the app's stderr and to prewarmd) or the process was killed
// during it. The image goes, so the next launch is cold, not the same failure again.
void Daemon::on_restore_died(Launch& l) {
  const std::string reason =
      "the restored process " + std::to_string(l.pid) + " exited before the restore reported it in place (past the point of no return" +
      (l.restore_failure.empty() ? std::string(")") : "; the restorer said: " + l.restore_failure + ")");
  store_.quarantine(l.restored_key);
  l.restored_key.clear();
  if (history_ && l.history_id) note_history(history_->set_failed(l.history_id));
  if (registry_.apps.count(l.app))
    set_status(l.app, {policy::AppEvent::kRestoreRefused, reason, !store_.entries_of(l.app).empty()});
  log_event(LOG_ERR, l.app + ": " + reason + "; image quarantined, the next launch is cold",
            {{"PREWARM_APP", l.app}, {"PREWARM_FALLBACK", reason}});
  rebuild_watches();
  save_soon();
}

void Daemon::end_launch(uint64_t id) {
  auto it = launches_.find(id);
  if (it == launches_.end()) return;
  Launch& l = *it->second;
  if (l.notify_dropped)
    log_event(LOG_NOTICE, l.app + ": " + std::to_string(l.notify_dropped) +
                              " notifications could not be relayed to the launch's NOTIFY_SOCKET (full) and were dropped",
              {{"PREWARM_APP", l.app}});
  sd_event_source_disable_unref(l.exit_source);
  sd_event_source_disable_unref(l.timer);
  launches_.erase(it);
}

void Daemon::end_launches_of(const std::string& app) {
  std::vector<uint64_t> ids;
  for (const auto& [id, l] : launches_)
    if (l->app == app) ids.push_back(id);
  for (auto id : ids) end_launch(id);
}

}  // namespace prewarm
