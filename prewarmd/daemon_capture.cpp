// Captures: a forked child dumps the ready app (checking first that it is still exactly the
// process that was launched), and the image is admitted to the store only within the budget and
// the user's share, pushing out only that user's own images.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "prewarmd/capture.h"
#include "prewarmd/daemon.h"
#include "prewarmd/log.h"
#include "snapshot/clock.h"
#include "snapshot/inject_syscall.h"

namespace prewarm {
namespace {

using proto::error_reply;
using proto::json;

}  // namespace

std::vector<policy::OwnedImage> Daemon::owned_images() const {
  std::vector<policy::OwnedImage> out;
  for (const auto& [k, e] : store_.entries()) out.push_back({k, e.uid, e.bytes, e.last_used_ms});
  return out;
}

Daemon::Reply Daemon::op_snapshot(const json& req, Connection& c) {
  json err;
  const std::string name = req.at("name").get<std::string>();
  if (!visible_app(name, c.cred, err)) return {err};
  if (captures_.count(name)) return {error_reply("a capture of " + name + " is already running", "busy")};
  Launch* newest = nullptr;
  for (auto& [id, l] : launches_)
    if (l->app == name) newest = l.get();
  if (!newest)
    return {error_reply(name + " is not running: start it with `prewarm run " + name + "` first", "not_running")};
  if (newest->launcher_mm.valid())
    if (auto same = mm_unchanged(newest->launcher_mm.get(), newest->launcher_stack); same && *same)
      return {error_reply(name + " has not been started yet (its launcher has not executed it): try again", "not_running")};
  if (!newest->at_ready) {
    // Not ready yet: the identity now is what the capture must still find.
    if (auto id = read_identity(newest->pid, newest->pidfd.get())) newest->at_ready = std::move(*id);
    if (auto m = open_mm_handle(newest->pid)) newest->mem_at_ready = std::move(*m);
  }
  if (auto r = start_capture(*newest, c.id); !r) return {error_reply("cannot start a capture: " + r.error().describe())};
  return {json{}, {}, true};
}

Result<void> Daemon::start_capture(Launch& l, uint64_t waiter, unsigned delay_ms) {
  if (!l.at_ready) return data_error("the process could not be identified when it became ready; not captured");
  if (!l.launched_in) return data_error("the launcher's namespaces could not be read when it asked; not captured");
  const AppConfig& cfg = registry_.apps.at(l.app).config;
  auto c = std::make_unique<Capture>();
  c->app = l.app;
  c->launch_id = l.id;
  c->uid = l.uid;
  c->pid = l.pid;
  c->incoming = store_.incoming_dir(std::to_string(l.id) + "-" + std::to_string(mono_ns()));
  c->started_ns = mono_ns();
  CaptureRequest req;
  req.pid = l.pid;
  req.pidfd = l.pidfd.get();
  req.mem_fd = l.mem_at_ready.valid() ? l.mem_at_ready.get() : -1;
  req.at_ready = *l.at_ready;
  req.uid = cfg.uid;
  req.gid = cfg.gid;
  req.delay_ms = delay_ms;
  // The most the store could admit for this user: the child stops writing past it, so a user's
  // oversized app never fills the state directory's disk first.
  req.max_image_bytes = policy::room_for(opts_.limits, owned_images(), cfg.uid);
  if (req.max_image_bytes < (1u << 20)) {
    set_status(l.app, {policy::AppEvent::kImageRejected, "the store budget (" +
                                                             std::to_string(opts_.limits.store_budget >> 20) +
                                                             " MiB) is taken by other users' images"});
    return data_error("the store budget is taken by other users' images");
  }
  req.incoming = c->incoming;
  req.ctx = l.ctx;
  req.launch_sockets = l.launch_sockets;
  req.launched_in = l.launched_in;
  req.argv = cfg.argv;
  req.cwd = cfg.cwd;
  req.watch = cfg.watch;
  void* page = ::mmap(nullptr, sizeof(std::atomic<uint32_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return errno_error("map the capture's shared page");
  c->injecting = new (page) std::atomic<uint32_t>(0);
  if (int fd = ::fcntl(l.pidfd.get(), F_DUPFD_CLOEXEC, 0); fd >= 0) c->app_pidfd = UniqueFd(fd);
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork the capture");
  if (child == 0) {
    mark_injections_in(c->injecting);
    // The capture child outlives a daemon that dies: it is the app's tracer, and a tracer that
    // dies in the middle of an injected syscall leaves the app single-stepping into SIGTRAP.
    // Unpublished, its image is removed from incoming/ at the daemon's next start.
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::_exit(run_capture_child(req));
  }
  c->child = child;
  c->waiter = waiter;
  if (int r = sd_event_add_child(event_, &c->source, child, WEXITED, on_capture_exit, this); r < 0)
    return make_error(-r, "watch the capture child");
  // A child stuck in the kernel (reading memory from a hung NFS or FUSE file) would keep the app
  // frozen and its capture "running" for good.
  if (int r = sd_event_add_time_relative(event_, &c->deadline, CLOCK_MONOTONIC,
                                         static_cast<uint64_t>(opts_.capture_timeout_s) * 1'000'000, 100'000,
                                         on_capture_deadline, this);
      r < 0)
    return make_error(-r, "arm the capture's deadline");
  log_event(LOG_INFO, l.app + ": capturing pid " + std::to_string(l.pid), {{"PREWARM_APP", l.app}});
  captures_[l.app] = std::move(c);
  return ok();
}

int Daemon::on_capture_exit(sd_event_source* s, const siginfo_t*, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [app, c] : self->captures_)
    if (c->source == s) {
      self->finish_capture(app);
      break;
    }
  return 0;
}

Daemon::Capture::~Capture() {
  if (injecting) ::munmap(injecting, sizeof(std::atomic<uint32_t>));
}

// The child is ours and not yet reaped (its exit event has not run), so its pid is still its.
// Killed, it lets go of the app as the kernel detaches a dead tracer's tracees, which is safe
// unless it is running a syscall in the app: the thread would run on from the child's syscall
// instruction with the child's registers. Then the call is given kGraceChecks more checks to
// end; one stuck in it past them leaves an app that cannot be given back, killed with the child.
int Daemon::on_capture_deadline(sd_event_source* s, uint64_t, void* userdata) {
  constexpr int kGraceChecks = 20;
  constexpr uint64_t kCheckUs = 500'000;
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [app, c] : self->captures_) {
    if (c->deadline != s) continue;
    const std::string pid = std::to_string(c->pid);
    if (c->injecting && c->injecting->load() != 0 && c->grace_checks < kGraceChecks) {
      if (c->grace_checks++ == 0)
        log_event(LOG_WARNING, app + ": the capture of pid " + pid + " is late and inside a system call it runs in the app; waiting for it to end",
                  {{"PREWARM_APP", app}});
      sd_event_source_set_time_relative(s, kCheckUs);
      sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
      return 0;
    }
    c->timed_out = true;
    const bool stuck_inside = c->injecting && c->injecting->load() != 0;
    ::kill(c->child, SIGKILL);
    if (stuck_inside && c->app_pidfd.valid() && ::syscall(SYS_pidfd_send_signal, c->app_pidfd.get(), SIGKILL, nullptr, 0) == 0) {
      c->app_killed = true;
      log_event(LOG_ERR, app + ": the capture of pid " + pid + " did not end within " +
                             std::to_string(self->opts_.capture_timeout_s) +
                             " s, stuck inside a system call it ran in the app: the app's registers cannot be put back, so it was killed",
                {{"PREWARM_APP", app}});
    } else {
      log_event(LOG_WARNING, app + ": the capture of pid " + pid + " did not end within " +
                                 std::to_string(self->opts_.capture_timeout_s) + " s; stopping it",
                {{"PREWARM_APP", app}});
    }
    break;
  }
  return 0;
}

// `name` by value: the caller's reference is the map key erased below.
void Daemon::finish_capture(std::string name) {
  std::unique_ptr<Capture> c = std::move(captures_.at(name));
  captures_.erase(name);
  sd_event_source_disable_unref(c->source);
  sd_event_source_disable_unref(c->deadline);
  const double ms = static_cast<double>(mono_ns() - c->started_ns) / 1e6;
  CaptureResult r = read_capture_result(c->incoming);
  if (c->timed_out) {
    r = CaptureResult{};
    r.message = "the capture did not end within " + std::to_string(opts_.capture_timeout_s) +
                " s and was stopped (prewarmd --capture-timeout-s); " +
                (c->app_killed ? "the app was killed: it was stuck inside a system call the capture ran in it"
                               : "the app runs on");
  }
  auto app = registry_.apps.find(name);
  if (app == registry_.apps.end() || app->second.config.uid != c->uid)
    r.status = "failed", r.message = "the app was unregistered during the capture";
  // A busy app can be caught with transient state: the socket it sent READY=1 on not yet closed,
  // a file it renamed as soon as it ran on. Such a verdict (an "unsupported" one would keep every
  // later launch cold) is tried again, twice, a second apart, before it stands.
  const bool transient =
      (r.status == "unsupported" && r.message.find("connected to a peer outside the process") != std::string::npos) ||
      (r.status == "failed" && (r.message.rfind("cannot record ", 0) == 0 ||
                                r.message.find(" during the capture") != std::string::npos));
  if (transient && !c->waiter && !c->timed_out && app != registry_.apps.end()) {
    auto l = launches_.find(c->launch_id);
    if (l != launches_.end() && l->second->capture_retries < 2) {
      ++l->second->capture_retries;
      remove_tree(c->incoming);
      log_event(LOG_NOTICE, name + ": capture found " + r.message + "; trying again in 1 s", {{"PREWARM_APP", name}});
      if (start_capture(*l->second, 0, 1000)) return;
    }
  }
  // The store's admission: within the budget and the user's share, evicting only the user's own.
  if (r.status == "ok") {
    policy::Admission a =
        policy::admit_image(opts_.limits, owned_images(), c->uid, store_.incoming_bytes(c->incoming));
    if (!a.refusal.empty()) {
      r.status = "rejected", r.message = a.refusal;
    } else {
      for (const auto& k : a.evict) {
        const std::string owner_app = store_.entries().at(k).app;
        store_.remove(k);
        log_event(LOG_NOTICE, owner_app + ": image evicted (its user's share of the store is full)", {{"PREWARM_APP", owner_app}});
        if (owner_app != name && store_.entries_of(owner_app).empty())
          set_status(owner_app, {policy::AppEvent::kImagesGone, "evicted: its user's share of the image store was full"});
      }
    }
  }
  if (r.status == "ok") {
    StoreEntry e;
    e.key = r.key;
    e.app = name;
    e.uid = app->second.config.uid;
    e.gid = app->second.config.gid;
    e.files = r.files;
    e.capture_ms = ms;
    e.freeze_ms = r.freeze_ms;
    if (auto p = store_.publish(c->incoming, e); !p) r.status = "failed", r.message = p.error().describe();
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", ms);
  json reply;
  if (r.status == "ok") {
    set_status(name, {policy::AppEvent::kCaptured});
    const uint64_t bytes = store_.entries().at(r.key).bytes;
    if (history_) note_history(history_->add_snapshot({0, name, wall_ms(), true, ms, r.freeze_ms, static_cast<int64_t>(bytes), ""}));
    log_event(LOG_INFO, name + ": captured pid " + std::to_string(c->pid) + " in " + buf + " ms (frozen " +
                            std::to_string(static_cast<int>(r.freeze_ms)) + " ms), " + std::to_string(bytes >> 10) +
                            " KiB, pages found with " + r.page_finder,
              {{"PREWARM_APP", name}, {"PREWARM_KEY", r.key}, {"PREWARM_CAPTURE_MS", buf},
               {"PREWARM_IMAGE_BYTES", std::to_string(bytes)}, {"PREWARM_PAGE_FINDER", r.page_finder}});
    reply = {{"ok", true}, {"key", r.key}, {"image_bytes", bytes}, {"capture_ms", ms}, {"freeze_ms", r.freeze_ms}};
  } else {
    remove_tree(c->incoming);
    if (app != registry_.apps.end() && app->second.config.uid == c->uid) {
      using K = policy::AppEvent;
      const K::Kind kind = r.status == "unsupported" ? K::kCaptureUnsupported
                           : r.status == "refused"   ? K::kCaptureRefused
                           : r.status == "rejected"  ? K::kImageRejected
                                                     : K::kCaptureFailed;
      set_status(name, {kind, r.message});
      if (history_) note_history(history_->add_snapshot({0, name, wall_ms(), false, ms, r.freeze_ms, 0, r.message}));
    }
    const char* what = r.status == "unsupported" ? "cannot be snapshotted, will always start cold: "
                       : r.status == "refused"   ? "capture refused: "
                       : r.status == "rejected"  ? "image not kept: "
                                                 : "capture failed: ";
    log_event(r.status == "failed" ? LOG_ERR : LOG_NOTICE, name + ": " + what + r.message, {{"PREWARM_APP", name}});
    reply = error_reply(r.message, r.status == "unsupported" ? "unsupported" : r.status);
  }
  if (c->waiter) send_reply(c->waiter, reply);
  save_soon();
  rebuild_watches();
  update_status();
}

void Daemon::drop_images(const std::string& app, const policy::AppEvent& e) {
  std::vector<std::string> keys;
  for (const auto* en : store_.entries_of(app)) keys.push_back(en->key);
  for (const auto& k : keys) store_.remove(k);
  set_status(app, e);
}

}  // namespace prewarm
