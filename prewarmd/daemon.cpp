// prewarmd's lifecycle: state loaded (and repaired), sockets taken or made, the loop, saving.
#include "prewarmd/daemon.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "prewarmd/log.h"
#include "snapshot/clock.h"

namespace prewarm {
namespace {

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

// STATE itself is entered by users (0711) to read their own app copies in STATE/apps/UID (each
// user's own 0500 directory); everything else below STATE stays 0700 and root's.
Result<UniqueFd> open_apps_dir(const std::string& state_dir) {
  if (::chmod(state_dir.c_str(), 0711) != 0) return errno_error("chmod 0711 " + state_dir);
  PW_ASSIGN(UniqueFd root, open_fd(state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  if (::mkdirat(root.get(), "apps", 0711) != 0 && errno != EEXIST) return errno_error("create " + state_dir + "/apps");
  int raw = ::openat(root.get(), "apps", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) return errno_error(state_dir + "/apps is not a directory");
  UniqueFd dir(raw);
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return errno_error("stat " + state_dir + "/apps");
  if (st.st_uid != ::geteuid()) return data_error(state_dir + "/apps is not owned by prewarmd's user");
  if ((st.st_mode & 07777) != 0711 && ::fchmod(dir.get(), 0711) != 0) return errno_error("chmod " + state_dir + "/apps");
  return dir;
}

}  // namespace

// Kernel release and XSAVE layout cannot change while prewarmd runs: read them once.
Daemon::Daemon(DaemonOptions opts)
    : opts_(std::move(opts)), machine_(machine_compat()), store_(opts_.state_dir) {}

Daemon::~Daemon() {
  for (auto& [id, c] : connections_) {
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->deadline);
  }
  for (auto& [id, l] : launches_) {
    sd_event_source_disable_unref(l->exit_source);
    sd_event_source_disable_unref(l->timer);
  }
  for (auto& [app, c] : captures_) {
    sd_event_source_disable_unref(c->source);
    sd_event_source_disable_unref(c->deadline);
  }
  sd_event_source_disable_unref(accept_pause_);
  sd_event_source_disable_unref(accept_source_);
  drop_watches();
  sd_event_source_disable_unref(recheck_source_);
  sd_event_source_disable_unref(save_source_);
  sd_event_source_disable_unref(queries_source_);
  for (auto& [s, q] : waiting_queries_) sd_event_source_disable_unref(s);
  sd_event_source_disable_unref(post_source_);
  sd_event_source_disable_unref(hurry_source_);
  sd_event_source_disable_unref(dashboard_busy_source_);
  sd_event_source_disable_unref(sync_source_);
  queries_.reset();
  sd_event_unref(event_);
}

// A registry that cannot be read is kept aside and rebuilt from the per-app copies: a damaged file
// costs the apps' snapshot states, never their registrations, and never the daemon's start.
void Daemon::load_registry() {
  const std::string path = opts_.state_dir + "/registry.json";
  auto r = registry_.load(path);
  for (const auto& s : registry_.skipped) log_event(LOG_WARNING, s);
  if (!r) {
    const std::string aside = path + ".broken-" + std::to_string(wall_ms());
    ::rename(path.c_str(), aside.c_str());
    registry_ = Registry{};
    std::vector<std::string> skipped;
    for (auto& c : read_app_copies(apps_dir_.get(), skipped)) {
      // A copy is its user's file: held to the same limits as a registration.
      if (std::string why = policy::check_registration(opts_.limits, registry_.apps_of(c.uid), false, c.argv, c.cwd, c.watch);
          !why.empty()) {
        skipped.push_back("apps/" + app_copy_name(c.uid, c.name) + ": " + why + "; ignored");
        continue;
      }
      App app;
      app.status.reason = "rebuilt after registry.json was damaged";
      app.config = std::move(c);
      registry_.apps.emplace(app.config.name, std::move(app));
    }
    for (const auto& s : skipped) log_event(LOG_WARNING, s);
    log_event(LOG_ERR, "registry unusable (" + r.error().describe() + "); moved to " + aside + ", rebuilt " +
                           std::to_string(registry_.apps.size()) + " apps from " + opts_.state_dir + "/apps");
  }
  for (auto& [name, app] : registry_.apps) {
    if (app.status.state == policy::AppState::kValid && store_.entries_of(name).empty())
      app.status = policy::transition(app.status, {policy::AppEvent::kImagesGone, "its images are gone"});
    // Older state directories have no copies yet; a launch with prewarmd down needs one.
    if (auto w = write_app_copy(apps_dir_.get(), app.config); !w)
      log_event(LOG_WARNING, name + ": cannot write its app copy: " + w.error().describe());
  }
}

Result<void> Daemon::start() {
  // 0. Every connection, launch and capture holds a few descriptors: room for thousands.
  if (rlimit nofile{}; ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 65536) {
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // 1. State: images first (interrupted captures are cleaned up), then the registry.
  ::umask(077);
  PW_TRY(store_.open());
  for (const auto& w : store_.take_warnings()) log_event(LOG_WARNING, "image store: " + w);
  PW_ASSIGN(apps_dir_, open_apps_dir(opts_.state_dir));
  load_registry();
  open_history();
  // Images of apps that are no longer registered are of no use to anyone.
  std::vector<std::string> orphans;
  for (const auto& [key, e] : store_.entries())
    if (!registry_.apps.count(e.app) || registry_.apps.at(e.app).config.uid != e.uid) orphans.push_back(key);
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
  control_path_ = socket_path(control_.get());
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
  if (int r = sd_event_add_io(event_, &accept_source_, control_.get(), EPOLLIN, on_accept, this); r < 0)
    return make_error(-r, "watch the control socket");
  if (int r = sd_event_add_io(event_, nullptr, notify_.get(), EPOLLIN, on_notify, this); r < 0)
    return make_error(-r, "watch the notify socket");
  rebuild_watches();
  start_queries();
  save();
  start_dashboard();
  update_status();
  sd_notify(0, "READY=1");
  log_event(LOG_INFO, "ready: " + std::to_string(registry_.apps.size()) + " apps, " +
                          std::to_string(store_.entries().size()) + " images; control socket " + control_path_);
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

void Daemon::save() {
  save_source_ = sd_event_source_disable_unref(save_source_);
  publish();
  if (auto r = registry_.save(opts_.state_dir + "/registry.json"); !r)
    log_event(LOG_ERR, "cannot save the registry: " + r.error().describe());
}

void Daemon::save_soon() {
  publish();
  if (!save_source_ && event_)
    sd_event_add_time_relative(event_, &save_source_, CLOCK_MONOTONIC, 500'000, 50'000, on_save_timer, this);
  if (!save_source_) save();  // no timer: now
}

int Daemon::on_save_timer(sd_event_source*, uint64_t, void* userdata) {
  static_cast<Daemon*>(userdata)->save();
  return 0;
}

void Daemon::update_status() {
  size_t valid = 0;
  for (const auto& [n, a] : registry_.apps) valid += a.status.state == policy::AppState::kValid;
  std::string s = "STATUS=" + std::to_string(registry_.apps.size()) + " apps, " + std::to_string(valid) +
                  " with a valid snapshot, " + std::to_string(store_.total_bytes() >> 20) + " MiB of images";
  sd_notify(0, s.c_str());
}

}  // namespace prewarm
