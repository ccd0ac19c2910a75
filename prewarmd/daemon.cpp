// prewarmd's event loop and request handlers.
#include "prewarmd/daemon.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <set>

#include "prewarmd/capture.h"
#include "prewarmd/file_records.h"
#include "prewarmd/log.h"
#include "prewarmd/stats.h"
#include "snapshot/clock.h"
#include "snapshot/cpu_compat.h"

namespace prewarm {
namespace {

using proto::json;

json error_reply(const std::string& message, const std::string& code = "error") {
  return {{"ok", false}, {"code", code}, {"error", message}};
}

// Binds a Unix socket at `path` for everyone to connect to (callers are told apart by their
// credentials, not by file permissions).
Result<UniqueFd> bind_unix(const std::string& path, int type) {
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return errno_error("socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return data_error("socket path too long: " + path);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return errno_error("bind " + path);
  if (::chmod(path.c_str(), 0666) != 0) return errno_error("chmod " + path);
  if (type == SOCK_STREAM && ::listen(fd.get(), 128) != 0) return errno_error("listen " + path);
  return fd;
}

std::string socket_path(int fd) {
  sockaddr_un sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || len <= offsetof(sockaddr_un, sun_path))
    return "";
  return sa.sun_path;
}

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

// Kernel release and XSAVE layout cannot change while prewarmd runs: read them once.
Daemon::Daemon(DaemonOptions opts)
    : opts_(std::move(opts)), machine_(machine_compat()), store_(opts_.state_dir) {}

Daemon::~Daemon() {
  for (auto& [id, l] : launches_) {
    sd_event_source_disable_unref(l->exit_source);
    sd_event_source_disable_unref(l->timer);
  }
  for (auto& [app, c] : captures_) sd_event_source_disable_unref(c->source);
  sd_event_source_disable_unref(inotify_source_);
  sd_event_source_disable_unref(recheck_source_);
  sd_event_unref(event_);
}

Result<void> Daemon::start() {
  // 1. State: images first (interrupted captures are cleaned up), then the registry.
  ::umask(077);
  PW_TRY(store_.open());
  PW_TRY(registry_.load(opts_.state_dir + "/registry.json"));
  for (auto& [name, app] : registry_.apps) {
    if (app.status.state == "capturing") app.status.state = "none", app.status.reason = "a capture was interrupted";
    if (app.status.state == "valid" && store_.entries_of(name).empty())
      app.status.state = "none", app.status.reason = "its images are gone";
  }
  open_history();
  // Images of apps that are no longer registered are of no use to anyone.
  std::vector<std::string> orphans;
  for (const auto& [key, e] : store_.entries())
    if (!registry_.apps.count(e.app)) orphans.push_back(key);
  for (const auto& k : orphans) store_.remove(k);

  // 2. Sockets: from systemd (prewarmd.socket) or our own in the runtime directory.
  int n = sd_listen_fds(1);
  for (int i = 0; i < std::max(n, 0); ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0) control_.reset(fd);
    else if (sd_is_socket_unix(fd, SOCK_DGRAM, -1, nullptr, 0) > 0) notify_.reset(fd);
    else ::close(fd);
  }
  if (!control_.valid() || !notify_.valid()) {
    if (::mkdir(opts_.runtime_dir.c_str(), 0755) != 0 && errno != EEXIST)
      return errno_error("create " + opts_.runtime_dir);
    ::chmod(opts_.runtime_dir.c_str(), 0755);
  }
  if (!control_.valid()) {
    PW_ASSIGN(control_, bind_unix(proto::control_socket_path(opts_.runtime_dir), SOCK_STREAM));
  }
  if (!notify_.valid()) {
    PW_ASSIGN(notify_, bind_unix(proto::notify_socket_path(opts_.runtime_dir), SOCK_DGRAM));
  }
  notify_path_ = socket_path(notify_.get());
  int one = 1;
  if (::setsockopt(notify_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    return errno_error("SO_PASSCRED on the notify socket");
  ::fcntl(control_.get(), F_SETFL, ::fcntl(control_.get(), F_GETFL) | O_NONBLOCK);
  ::fcntl(notify_.get(), F_SETFL, ::fcntl(notify_.get(), F_GETFL) | O_NONBLOCK);

  // 3. The loop. SIGCHLD is blocked so sd-event can reap capture children.
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&mask, s);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return errno_error("block signals");
  if (int r = sd_event_default(&event_); r < 0) return make_error(-r, "sd_event_default");
  sd_event_add_signal(event_, nullptr, SIGTERM, nullptr, nullptr);
  sd_event_add_signal(event_, nullptr, SIGINT, nullptr, nullptr);
  if (int r = sd_event_add_io(event_, nullptr, control_.get(), EPOLLIN, on_control, this); r < 0)
    return make_error(-r, "watch the control socket");
  if (int r = sd_event_add_io(event_, nullptr, notify_.get(), EPOLLIN, on_notify, this); r < 0)
    return make_error(-r, "watch the notify socket");
  rebuild_watches();
  save();
  start_dashboard();
  update_status();
  sd_notify(0, "READY=1");
  log_event(LOG_INFO, "ready: " + std::to_string(registry_.apps.size()) + " apps, " +
                          std::to_string(store_.entries().size()) + " images; control socket " +
                          socket_path(control_.get()));
  return ok();
}

int Daemon::run() {
  int r = sd_event_loop(event_);
  sd_notify(0, "STOPPING=1");
  // Let captures in flight finish (their apps are frozen under them); they are not published.
  for (int waited_ms = 0; !captures_.empty() && waited_ms < 20'000; waited_ms += 20) {
    for (auto it = captures_.begin(); it != captures_.end();) {
      if (::waitpid(it->second->child, nullptr, WNOHANG) != 0) {
        remove_tree(it->second->incoming);
        it = captures_.erase(it);
      } else {
        ++it;
      }
    }
    if (!captures_.empty()) ::usleep(20'000);
  }
  save();
  return r < 0 ? 1 : 0;
}

// The history is for people and dashboards: a database that fails never fails a launch.
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

template <typename T>
void Daemon::note_history(const Result<T>& r) {
  if (!r) log_event(LOG_WARNING, r.error().describe());
}

AppSummary Daemon::summary_of(const std::string& app) {
  if (!history_) return {};
  auto s = history_->summary(app);
  note_history(s);
  return s ? *s : AppSummary{};
}

void Daemon::start_dashboard() {
  if (opts_.http == "off" || !history_) return;
  dashboard_ = std::make_unique<Dashboard>(opts_.state_dir + "/history.db");
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
  DashboardView v;
  for (const auto& [name, app] : registry_.apps) {
    DashboardView::AppView av{app, 0};
    if (captures_.count(name)) av.app.status.state = "capturing";
    for (const auto* e : store_.entries_of(name)) av.image_bytes += e->bytes;
    v.apps.push_back(std::move(av));
  }
  v.store_bytes = store_.total_bytes();
  v.store_budget = opts_.store_budget;
  dashboard_->publish(std::move(v));
}

void Daemon::save() {
  publish();
  if (auto r = registry_.save(opts_.state_dir + "/registry.json"); !r)
    log_event(LOG_ERR, "cannot save the registry: " + r.error().describe());
}

void Daemon::update_status() {
  size_t valid = 0;
  for (const auto& [n, a] : registry_.apps) valid += a.status.state == "valid";
  std::string s = "STATUS=" + std::to_string(registry_.apps.size()) + " apps, " +
                  std::to_string(valid) + " with a valid snapshot, " +
                  std::to_string(store_.total_bytes() >> 20) + " MiB of images";
  sd_notify(0, s.c_str());
}

// ---- control socket --------------------------------------------------------------------------

int Daemon::on_control(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  UniqueFd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return 0;
  // A client that stalls must not stall the daemon.
  timeval tv{2, 0};
  ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto cred = proto::peer_credentials(conn.get());
  auto req = proto::recv_message(conn.get());
  if (!cred || !req) {
    (void)proto::send_message(conn.get(), error_reply(!cred ? cred.error().describe() : req.error().describe()));
    return 0;
  }
  std::vector<UniqueFd> fds;
  bool deferred = false;
  json reply;
  try {
    reply = self->handle(req->msg, *cred, conn.get(), fds, deferred);
  } catch (const json::exception& e) {
    reply = error_reply(std::string("malformed request: ") + e.what(), "usage");
  }
  if (deferred) {
    (void)conn.release();  // the capture owns it now and answers when done
    return 0;
  }
  std::vector<int> raw;
  for (auto& f : fds) raw.push_back(f.get());
  (void)proto::send_message(conn.get(), reply, raw);
  return 0;
}

json Daemon::handle(const json& req, const proto::PeerCred& cred, int conn, std::vector<UniqueFd>& fds,
                    bool& deferred) {
  const std::string op = req.value("op", "");
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "register") return op_register(req, cred);
  if (op == "unregister") return op_unregister(req, cred);
  if (op == "list") return op_list(cred);
  if (op == "launch") return op_launch(req, cred, fds);
  if (op == "fallback") return op_fallback(req, cred);
  if (op == "invalidate") return op_invalidate(req, cred);
  if (op == "stats") return op_stats(req, cred);
  if (op == "snapshot") return op_snapshot(req, cred, conn, deferred);
  return error_reply("unknown request '" + op + "'", "usage");
}

App* Daemon::visible_app(const std::string& name, const proto::PeerCred& cred, json& error) {
  auto it = registry_.apps.find(name);
  // Another user's app is reported exactly like a missing one: names are not disclosed.
  if (it == registry_.apps.end() || (cred.uid != 0 && cred.uid != it->second.config.uid)) {
    error = error_reply("no app named '" + name + "' is registered (see `prewarm list`)", "not_found");
    return nullptr;
  }
  return &it->second;
}

json Daemon::op_register(const json& req, const proto::PeerCred& cred) {
  AppConfig c;
  c.name = req.at("name").get<std::string>();
  c.argv = req.at("argv").get<std::vector<std::string>>();
  c.cwd = req.at("cwd").get<std::string>();
  c.watch = req.value("watch", std::vector<std::string>{});
  c.uid = cred.uid;
  c.gid = cred.gid;
  auto mode = policy::parse_ready_mode(req.value("ready", "idle"));
  if (!valid_app_name(c.name))
    return error_reply("invalid app name '" + c.name + "': use letters, digits, '-', '_' and '.' (at most 64)", "usage");
  if (!mode) return error_reply("invalid --ready mode (use notify, idle[:MS] or delay:MS)", "usage");
  if (c.argv.empty() || c.argv[0].empty() || c.argv[0][0] != '/')
    return error_reply("the command must start with an absolute path", "usage");
  if (c.cwd.empty() || c.cwd[0] != '/') return error_reply("the working directory must be absolute", "usage");
  for (const auto& w : c.watch)
    if (w.empty() || w[0] != '/') return error_reply("--watch paths must be absolute: " + w, "usage");
  c.ready = *mode;
  auto it = registry_.apps.find(c.name);
  if (it != registry_.apps.end() && it->second.config.uid != cred.uid)
    return error_reply("the name '" + c.name + "' is taken by another user; choose another", "exists");
  const bool replaced = it != registry_.apps.end();
  if (replaced) drop_images(c.name, "none", "registered again with a new configuration");
  App& app = registry_.apps[c.name];
  app.config = c;
  app.status.state = "none";
  app.status.reason = "";
  save();
  rebuild_watches();
  update_status();
  log_event(LOG_INFO, std::string(replaced ? "re-registered " : "registered ") + c.name,
            {{"PREWARM_APP", c.name}, {"PREWARM_UID", std::to_string(c.uid)}});
  return {{"ok", true}, {"app", to_json(c)}, {"replaced", replaced}};
}

json Daemon::op_unregister(const json& req, const proto::PeerCred& cred) {
  json err;
  const std::string name = req.at("name").get<std::string>();
  if (!visible_app(name, cred, err)) return err;
  drop_images(name, "none", "unregistered");
  registry_.apps.erase(name);
  if (history_) note_history(history_->forget(name));
  save();
  rebuild_watches();
  update_status();
  log_event(LOG_INFO, "unregistered " + name, {{"PREWARM_APP", name}});
  return {{"ok", true}};
}

json Daemon::op_list(const proto::PeerCred& cred) {
  json apps = json::array();
  for (const auto& [name, app] : registry_.apps) {
    if (cred.uid != 0 && cred.uid != app.config.uid) continue;
    uint64_t bytes = 0;
    auto entries = store_.entries_of(name);
    for (const auto* e : entries) bytes += e->bytes;
    const AppSummary summary = summary_of(name);
    apps.push_back({{"name", name},
                    {"uid", app.config.uid},
                    {"state", captures_.count(name) ? "capturing" : app.status.state},
                    {"reason", app.status.reason},
                    {"images", entries.size()},
                    {"image_bytes", bytes},
                    {"ready", policy::to_string(app.config.ready)},
                    {"argv", app.config.argv},
                    {"cold", summary.cold},
                    {"restored", summary.restored}});
  }
  return {{"ok", true}, {"apps", apps}, {"store_bytes", store_.total_bytes()}, {"store_budget", opts_.store_budget}};
}

json Daemon::op_stats(const json& req, const proto::PeerCred& cred) {
  const std::string only = req.value("name", "");
  json apps = json::array();
  for (const auto& [name, app] : registry_.apps) {
    if (cred.uid != 0 && cred.uid != app.config.uid) continue;
    if (!only.empty() && name != only) continue;
    uint64_t bytes = 0;
    for (const auto* e : store_.entries_of(name)) bytes += e->bytes;
    json a = app_stats(app, bytes, summary_of(name));
    if (history_ && req.value("recent", 0) > 0) {
      json recent = json::array();
      if (auto rows = history_->launches(name, std::min(req.value("recent", 0), 1000)); rows)
        for (const auto& r : *rows) recent.push_back(to_json(r));
      a["recent"] = recent;
    }
    apps.push_back(a);
  }
  if (!only.empty() && apps.empty()) return error_reply("no app named '" + only + "' is registered", "not_found");
  return {{"ok", true}, {"apps", apps}};
}

json Daemon::op_invalidate(const json& req, const proto::PeerCred& cred) {
  std::vector<std::string> names;
  if (req.value("all", false)) {
    for (const auto& [name, app] : registry_.apps)
      if (cred.uid == 0 || cred.uid == app.config.uid) names.push_back(name);
  } else {
    json err;
    const std::string name = req.at("name").get<std::string>();
    if (!visible_app(name, cred, err)) return err;
    names.push_back(name);
  }
  for (const auto& n : names) {
    drop_images(n, "none", "invalidated by uid " + std::to_string(cred.uid));
    log_event(LOG_INFO, "invalidated " + n, {{"PREWARM_APP", n}});
  }
  save();
  rebuild_watches();
  update_status();
  return {{"ok", true}, {"invalidated", names}};
}

// ---- launches --------------------------------------------------------------------------------

json Daemon::op_launch(const json& req, const proto::PeerCred& cred, std::vector<UniqueFd>& fds) {
  json err;
  const std::string name = req.at("name").get<std::string>();
  App* app = visible_app(name, cred, err);
  if (!app) return err;
  auto l = std::make_unique<Launch>();
  l->id = next_launch_++;
  l->app = name;
  l->pid = cred.pid;
  l->t0_ns = req.value("t0_ns", mono_ns());
  l->wall_ms = wall_ms();
  l->systemd_notify = req.value("notify_socket", "");
  l->ctx = launch_context(*app, req, machine_);

  // Find a snapshot for exactly this launch: files unchanged (cheap stat check), same key.
  std::string why_cold, kind;
  std::string key;
  if (captures_.count(name)) why_cold = "a snapshot is being captured", kind = "capturing";
  else if (app->status.state == "unsupported") why_cold = "unsupported: " + app->status.reason, kind = "unsupported";
  for (const StoreEntry* e : store_.entries_of(name)) {
    if (!why_cold.empty()) break;
    if (std::string change = first_change(e->files); !change.empty()) {
      log_event(LOG_NOTICE, name + ": snapshot is stale, " + change + "; dropping it",
                {{"PREWARM_APP", name}, {"PREWARM_KEY", e->key}});
      std::string k = e->key;
      store_.remove(k);
      app->status.state = "stale";
      app->status.reason = change;
      why_cold = "stale: " + change;
      kind = "stale";
      rebuild_watches();
      save();
      break;
    }
    if (e->uid != app->config.uid) continue;
    if (policy::snapshot_key(l->ctx, e->files) == e->key) key = e->key;
  }
  if (key.empty() && why_cold.empty()) {
    if (store_.entries_of(name).empty()) why_cold = "no snapshot yet";
    else why_cold = "no snapshot for this launch context (environment, stdio kind or command differ)", kind = "context";
  }

  json reply = {{"ok", true},
                {"launch", l->id},
                {"argv", app->config.argv},
                {"cwd", app->config.cwd},
                {"uid", app->config.uid},
                {"gid", app->config.gid},
                {"ready", policy::to_string(app->config.ready)},
                {"notify_socket", notify_path_}};
  if (!key.empty()) {
    auto dir = open_fd(store_.image_dir(key), O_PATH | O_DIRECTORY);
    if (dir) {
      fds.push_back(std::move(*dir));
      l->mode = "restored";
      l->restored_key = key;
      store_.touch(key);
      reply["mode"] = "restore";
    } else {
      why_cold = "image unreadable: " + dir.error().describe();
      kind = "unreadable";
    }
  }
  if (l->mode.empty()) {
    l->mode = "cold";
    reply["mode"] = "cold";
    reply["reason"] = why_cold;
  }
  // Follow the process: its exit ends the launch; readiness per the app's mode.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, l->pid, 0));
  if (pidfd >= 0) {
    l->pidfd.reset(pidfd);
    sd_event_add_io(event_, &l->exit_source, pidfd, EPOLLIN, on_launch_exit, this);
  }
  if (l->mode == "cold") watch_readiness(*l, app->config.ready, l->t0_ns);
  if (history_) {
    LaunchRow row;
    row.app = name;
    row.uid = app->config.uid;
    row.time_ms = l->wall_ms;
    row.pid = l->pid;
    row.mode = l->mode;
    if (l->mode == "cold" && !kind.empty()) row.fallback_kind = kind, row.fallback = why_cold;
    auto id = history_->add_launch(row);
    note_history(id);
    if (id) l->history_id = *id;
  }
  log_event(LOG_INFO, name + ": launch " + std::to_string(l->id) + " pid " + std::to_string(l->pid) + " " + l->mode +
                          (why_cold.empty() ? "" : " (" + why_cold + ")"),
            {{"PREWARM_APP", name}, {"PREWARM_MODE", l->mode}, {"PREWARM_REASON", why_cold}});
  launches_[l->id] = std::move(l);
  publish();
  return reply;
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
  if (it == launches_.end() || it->second->pid != cred.pid)
    return error_reply("no such launch of this process", "not_found");
  Launch& l = *it->second;
  const std::string reason = req.value("reason", "restore failed");
  auto app = registry_.apps.find(l.app);
  if (app != registry_.apps.end()) {
    // The image was refused before the point of no return: keep it aside, never use it again.
    if (!l.restored_key.empty()) store_.quarantine(l.restored_key);
    app->second.status.state = store_.entries_of(l.app).empty() ? "none" : app->second.status.state;
    app->second.status.reason = "restore refused: " + reason;
    if (history_ && l.history_id) note_history(history_->set_fallback(l.history_id, "refused", "restore refused: " + reason));
  }
  l.mode = "cold";
  l.restored_key.clear();
  log_event(LOG_WARNING, l.app + ": restore refused (" + reason + "); image quarantined, starting cold",
            {{"PREWARM_APP", l.app}, {"PREWARM_MODE", "cold"}, {"PREWARM_FALLBACK", reason}});
  if (app != registry_.apps.end() && !l.timer) watch_readiness(l, app->second.config.ready, mono_ns());
  rebuild_watches();
  save();
  return {{"ok", true}};
}

void Daemon::on_ready(Launch& l, int64_t ready_ns, const char* how, const std::optional<RestoreReport>& report) {
  if (l.ready) return;
  l.ready = true;
  const double ms = static_cast<double>(ready_ns - l.t0_ns) / 1e6;
  if (history_ && l.history_id) {
    std::optional<RestorePhases> phases;
    std::optional<int64_t> bytes;
    if (report) phases = report->phases, bytes = report->bytes_read;
    note_history(history_->set_ready(l.history_id, ms, phases, bytes));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", ms);
  log_event(LOG_INFO, l.app + ": " + l.mode + " launch ready after " + buf + " ms (" + how + ")",
            {{"PREWARM_APP", l.app}, {"PREWARM_MODE", l.mode}, {"PREWARM_READY_MS", buf}});
  auto app = registry_.apps.find(l.app);
  if (app == registry_.apps.end() || l.mode != "cold") return;
  if (app->second.status.state == "unsupported" || captures_.count(l.app)) return;
  if (auto r = start_capture(l, -1, std::strcmp(how, "notify") == 0 ? 100 : 0); !r)
    log_event(LOG_ERR, l.app + ": cannot start a capture: " + r.error().describe(), {{"PREWARM_APP", l.app}});
}

int Daemon::on_launch_timer(sd_event_source* s, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [id, lp] : self->launches_) {
    Launch& l = *lp;
    if (l.timer != s) continue;
    if (!l.idle) {  // delay:MS
      l.timer = sd_event_source_disable_unref(l.timer);
      self->forward_notify(l, "READY=1");
      self->on_ready(l, l.t0_ns + static_cast<int64_t>(self->registry_.apps[l.app].config.ready.ms) * 1'000'000, "delay");
      return 0;
    }
    // idle[:MS]: asleep, and no CPU time used for the whole window.
    auto stat = read_file("/proc/" + std::to_string(l.pid) + "/stat");
    if (stat) {
      auto close = stat->rfind(')');
      char state = close != std::string::npos && close + 2 < stat->size() ? (*stat)[close + 2] : '?';
      unsigned long long fields[15]{};
      std::sscanf(stat->c_str() + close + 4, "%*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &fields[0], &fields[1]);
      const double now = static_cast<double>(mono_ns()) / 1e6;
      if (auto since = l.idle->sample(now, state, fields[0] + fields[1])) {
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
  for (auto& [id, l] : self->launches_)
    if (l->exit_source == s) {
      self->end_launch(id);
      break;
    }
  return 0;
}

void Daemon::end_launch(uint64_t id) {
  auto it = launches_.find(id);
  if (it == launches_.end()) return;
  Launch& l = *it->second;
  sd_event_source_disable_unref(l.exit_source);
  sd_event_source_disable_unref(l.timer);
  launches_.erase(it);
}

// ---- readiness notifications -----------------------------------------------------------------

int Daemon::on_notify(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (;;) {
    char buf[4096];
    iovec iov{buf, sizeof buf - 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return 0;
    const ucred* uc = nullptr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) uc = reinterpret_cast<const ucred*>(CMSG_DATA(c));
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {  // fd store: not supported
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) ::close(reinterpret_cast<int*>(CMSG_DATA(c))[i]);
      }
    }
    if (!uc) continue;
    const std::string message(buf, static_cast<size_t>(n));
    for (auto& [id, l] : self->launches_) {
      if (l->pid != uc->pid) continue;
      self->forward_notify(*l, without_prewarm_fields(message));
      bool ready = ("\n" + message + "\n").find("\nREADY=1\n") != std::string::npos;
      if (!ready) break;
      // A restored app's READY=1 comes from the restorer, with the restore's phase times.
      const int64_t now = mono_ns();
      auto report = l->mode == "restored" ? parse_restore_report(message, l->t0_ns, now) : std::nullopt;
      self->on_ready(*l, report ? report->resumed_ns : now, "notify", report);
      break;
    }
  }
}

// Passes a notification on to the launch's own $NOTIFY_SOCKET (systemd's), in the app's name:
// systemd accepts it only from the unit's main pid, which the app is.
void Daemon::forward_notify(const Launch& l, const std::string& message) {
  if (l.systemd_notify.empty()) return;
  auto sock = proto::connect_unix(l.systemd_notify, SOCK_DGRAM);
  if (!sock) {
    log_event(LOG_WARNING, l.app + ": cannot reach the launch's NOTIFY_SOCKET: " + sock.error().describe());
    return;
  }
  iovec iov{const_cast<char*>(message.data()), message.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))]{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(ucred));
  ucred uc{l.pid, ::geteuid(), ::getegid()};
  std::memcpy(CMSG_DATA(c), &uc, sizeof uc);
  if (::sendmsg(sock->get(), &mh, MSG_NOSIGNAL) < 0) {
    // Without CAP_SYS_ADMIN the kernel refuses another pid; send as ourselves instead.
    mh.msg_control = nullptr;
    mh.msg_controllen = 0;
    if (::sendmsg(sock->get(), &mh, MSG_NOSIGNAL) < 0)
      log_event(LOG_WARNING, l.app + ": cannot forward to NOTIFY_SOCKET " + l.systemd_notify + ": " + std::strerror(errno));
  }
}

// ---- captures --------------------------------------------------------------------------------

json Daemon::op_snapshot(const json& req, const proto::PeerCred& cred, int conn, bool& deferred) {
  json err;
  const std::string name = req.at("name").get<std::string>();
  if (!visible_app(name, cred, err)) return err;
  if (captures_.count(name)) return error_reply("a capture of " + name + " is already running", "busy");
  Launch* newest = nullptr;
  for (auto& [id, l] : launches_)
    if (l->app == name) newest = l.get();
  if (!newest)
    return error_reply(name + " is not running: start it with `prewarm run " + name + "` first", "not_running");
  if (auto r = start_capture(*newest, conn); !r) return error_reply("cannot start a capture: " + r.error().describe());
  deferred = true;
  return {};
}

Result<void> Daemon::start_capture(Launch& l, int waiter_fd, unsigned delay_ms) {
  auto c = std::make_unique<Capture>();
  c->app = l.app;
  c->launch_id = l.id;
  c->pid = l.pid;
  c->ctx = l.ctx;
  c->incoming = store_.incoming_dir(std::to_string(l.id) + "-" + std::to_string(mono_ns()));
  c->started_ns = mono_ns();
  const AppConfig& cfg = registry_.apps.at(l.app).config;
  pid_t child = ::fork();
  if (child < 0) return errno_error("fork the capture");
  if (child == 0) {
    // The capture child outlives a daemon that dies: it is the app's tracer, and a tracer that
    // dies in the middle of an injected syscall leaves the app single-stepping into SIGTRAP.
    // Unpublished, its image is removed from incoming/ at the daemon's next start.
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int code = run_capture_child(c->pid, delay_ms, c->incoming, c->ctx, cfg.argv, cfg.cwd, cfg.watch);
    ::_exit(code);
  }
  c->child = child;
  if (waiter_fd >= 0) c->waiter.reset(waiter_fd);
  if (int r = sd_event_add_child(event_, &c->source, child, WEXITED, on_capture_exit, this); r < 0)
    return make_error(-r, "watch the capture child");
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

// `name` by value: the caller's reference is the map key erased below.
void Daemon::finish_capture(std::string name) {
  std::unique_ptr<Capture> c = std::move(captures_.at(name));
  captures_.erase(name);
  sd_event_source_disable_unref(c->source);
  const double ms = static_cast<double>(mono_ns() - c->started_ns) / 1e6;
  CaptureResult r = read_capture_result(c->incoming);
  json reply;
  auto app = registry_.apps.find(name);
  if (app == registry_.apps.end()) {
    r.status = "failed", r.message = "the app was unregistered during the capture";
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
  if (r.status == "ok") {
    auto& st = app->second.status;
    st.state = "valid";
    st.reason.clear();
    const uint64_t bytes = store_.entries().at(r.key).bytes;
    if (history_) note_history(history_->add_snapshot({0, name, wall_ms(), true, ms, r.freeze_ms, static_cast<int64_t>(bytes), ""}));
    log_event(LOG_INFO, name + ": captured pid " + std::to_string(c->pid) + " in " + buf + " ms (frozen " +
                            std::to_string(static_cast<int>(r.freeze_ms)) + " ms), " + std::to_string(bytes >> 10) + " KiB",
              {{"PREWARM_APP", name}, {"PREWARM_KEY", r.key}, {"PREWARM_CAPTURE_MS", buf},
               {"PREWARM_IMAGE_BYTES", std::to_string(bytes)}});
    for (const auto& gone : store_.evict(opts_.store_budget, r.key)) {
      log_event(LOG_NOTICE, gone.app + ": image evicted (store over its budget)", {{"PREWARM_APP", gone.app}});
      auto ga = registry_.apps.find(gone.app);
      if (ga != registry_.apps.end() && store_.entries_of(gone.app).empty())
        ga->second.status.state = "none", ga->second.status.reason = "evicted: the image store was over its size budget";
    }
    reply = {{"ok", true}, {"key", r.key}, {"image_bytes", bytes}, {"capture_ms", ms}, {"freeze_ms", r.freeze_ms}};
  } else {
    remove_tree(c->incoming);
    if (app != registry_.apps.end()) {
      auto& st = app->second.status;
      if (r.status == "unsupported") {
        st.state = "unsupported";
        st.reason = r.message;
      } else {
        st.reason = "capture failed: " + r.message;
      }
      if (history_) note_history(history_->add_snapshot({0, name, wall_ms(), false, ms, r.freeze_ms, 0, r.message}));
    }
    log_event(r.status == "unsupported" ? LOG_NOTICE : LOG_ERR,
              name + ": " + (r.status == "unsupported" ? "cannot be snapshotted, will always start cold: " : "capture failed: ") + r.message,
              {{"PREWARM_APP", name}});
    reply = error_reply(r.message, r.status);
  }
  if (c->waiter.valid()) (void)proto::send_message(c->waiter.get(), reply);
  save();
  rebuild_watches();
  update_status();
}

void Daemon::drop_images(const std::string& app, const std::string& state, const std::string& reason) {
  std::vector<std::string> keys;
  for (const auto* e : store_.entries_of(app)) keys.push_back(e->key);
  for (const auto& k : keys) store_.remove(k);
  auto it = registry_.apps.find(app);
  if (it != registry_.apps.end()) it->second.status.state = state, it->second.status.reason = reason;
}

// ---- invalidation on upgrade -----------------------------------------------------------------

// Watches every recorded file and its directory (package managers rename a new file over the
// old one); any event schedules a re-check of the stat records shortly after.
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
    auto it = registry_.apps.find(app);
    if (it != registry_.apps.end()) it->second.status.state = "stale", it->second.status.reason = change;
    log_event(LOG_NOTICE, app + ": snapshot invalidated, " + change, {{"PREWARM_APP", app}, {"PREWARM_KEY", k}});
  }
  if (!stale.empty()) save(), update_status();
  rebuild_watches();
}

}  // namespace prewarm
