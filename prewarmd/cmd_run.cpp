// `prewarm run [USER/]NAME`: this process becomes the app. Restored when prewarmd has a valid
// snapshot for exactly this launch, otherwise exec'ed cold (and captured by prewarmd once ready).
// Any failure before the point of no return ends in a cold start, never in a failed launch, and
// prewarmd is waited for at most about a second.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "prewarmd/cmd_dump.h"
#include "prewarmd/cmd_service.h"
#include "prewarmd/protocol.h"
#include "prewarmd/registry.h"
#include "restorer/lazy.h"
#include "restorer/restore.h"
#include "snapshot/clock.h"
#include "snapshot/dir_entries.h"
#include "snapshot/fd_objects.h"

extern char** environ;

namespace prewarm::cli {
namespace {

using proto::json;

// How long a launch waits for prewarmd (connect and answer) before it starts cold.
constexpr int kDaemonWaitMs = 1000;

std::vector<std::string> stdio_kinds() {
  std::vector<std::string> out;
  for (int fd = 0; fd < 3; ++fd) {
    struct stat st {};
    bool open = ::fstat(fd, &st) == 0;
    out.push_back(policy::stdio_kind(open ? st.st_mode : 0, open && ::isatty(fd)));
  }
  return out;
}

struct LaunchPlan {
  std::string mode = "cold";
  uint64_t launch = 0;
  std::vector<std::string> argv;
  std::string cwd;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string ready;
  int on_restore = 0;         // signal for the restored app (register --on-restore)
  std::string notify_socket;  // prewarmd's
  UniqueFd manifest, pages;   // read-only descriptors of the image, for a restore
  bool have_daemon = true;
};

// "USER/NAME" or "USER:NAME" (USER a name or a uid) names the owner; a bare NAME is the caller's.
struct AppRef {
  std::string name;
  std::optional<uid_t> owner;
};
std::optional<AppRef> parse_app_ref(const std::string& text, std::string& error) {
  auto sep = text.find_first_of("/:");
  if (sep == std::string::npos) return AppRef{text, std::nullopt};
  const std::string user = text.substr(0, sep);
  AppRef r{text.substr(sep + 1), std::nullopt};
  if (const passwd* pw = ::getpwnam(user.c_str())) {
    r.owner = pw->pw_uid;
  } else {
    char* end = nullptr;
    unsigned long v = std::strtoul(user.c_str(), &end, 10);
    if (user.empty() || *end != '\0') {
      error = "no user named '" + user + "'";
      return std::nullopt;
    }
    r.owner = static_cast<uid_t>(v);
  }
  return r;
}

// The app runs as the user who registered it; a root launcher (the systemd unit) drops to it.
bool become_app_user(const LaunchPlan& p, const std::string& name) {
  if (::getuid() == p.uid && ::geteuid() == p.uid) return true;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "prewarm run %s: the app runs as uid %u; run it as that user or as root\n", name.c_str(), p.uid);
    return false;
  }
  const passwd* pw = ::getpwuid(p.uid);
  int g = pw ? ::initgroups(pw->pw_name, p.gid) : ::setgroups(0, nullptr);
  if (g != 0 || ::setgid(p.gid) != 0 || ::setuid(p.uid) != 0) {
    std::fprintf(stderr, "prewarm run %s: cannot switch to uid %u: %s\n", name.c_str(), p.uid, std::strerror(errno));
    return false;
  }
  ::prctl(PR_SET_DUMPABLE, 1);  // as exec of the app would; prewarmd and the user may inspect it
  return true;
}

// A root launcher hands another user's app nothing of its own but stdio: no systemd-passed
// sockets, no other descriptors.
void shed_root_fds(const LaunchPlan& p) {
  for (const char* v : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}) ::unsetenv(v);
  // The list includes the descriptor that read it, closed by now: closing it again is harmless.
  if (auto fds = dir_numbers("/proc/self/fd"))
    for (int fd : *fds)
      if (fd >= 3 && fd != p.manifest.get() && fd != p.pages.get()) ::close(fd);
}

// Without prewarmd the app's copy of its registration (STATE/apps, readable by its user) still
// says what to run: a cold start, no capture.
bool plan_from_copy(const AppRef& ref, LaunchPlan& p) {
  const char* sd = std::getenv("PREWARM_STATE_DIR");
  const uid_t uid = ref.owner.value_or(::getuid());
  if (::getuid() != 0 && uid != ::getuid()) return false;
  auto c = read_app_copy(sd && *sd ? sd : "/var/lib/prewarm", uid, ref.name);
  if (!c) return false;
  p.argv = c->argv;
  p.cwd = c->cwd;
  p.uid = c->uid;
  p.gid = c->gid;
  p.ready = policy::to_string(c->ready);
  p.have_daemon = false;
  return !p.argv.empty();
}

[[noreturn]] void exec_cold(const std::string& name, const LaunchPlan& p, const char* saved_notify) {
  if (::chdir(p.cwd.c_str()) != 0) {
    std::fprintf(stderr, "prewarm run %s: cannot enter the app's directory %s: %s\n", name.c_str(), p.cwd.c_str(), std::strerror(errno));
    std::exit(kExitError);
  }
  ::setenv("PWD", p.cwd.c_str(), 1);
  // Readiness goes through prewarmd (which relays it to systemd); without it, straight to systemd.
  if (p.have_daemon && !p.notify_socket.empty()) ::setenv("NOTIFY_SOCKET", p.notify_socket.c_str(), 1);
  else if (saved_notify) ::setenv("NOTIFY_SOCKET", saved_notify, 1);
  // Like a restored app, a cold one gets stdio and systemd-passed sockets only.
  int keep = 3;
  if (const char* lf = std::getenv("LISTEN_FDS")) keep += std::atoi(lf);
  ::syscall(SYS_close_range, keep, ~0u, 0);
  std::vector<char*> argv;
  for (const auto& a : p.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  std::fprintf(stderr, "prewarm run %s: cannot execute %s: %s\n", name.c_str(), argv[0], std::strerror(errno));
  std::exit(127);
}

}  // namespace

int run_app(const std::string& ref_text, bool lazy) {
  const int64_t t0 = mono_ns();
  const std::string dir = proto::runtime_dir();
  const char* systemd_notify = std::getenv("NOTIFY_SOCKET");
  const std::string saved_notify = systemd_notify ? systemd_notify : "";
  std::string ref_error;
  auto ref = parse_app_ref(ref_text, ref_error);
  if (!ref) {
    std::fprintf(stderr, "prewarm run %s: %s\n", ref_text.c_str(), ref_error.c_str());
    return kExitUsage;
  }
  const std::string& name = ref->name;

  // 1. Ask prewarmd how to launch: it checks who we are, the files, and the snapshot key. The
  //    launch's NOTIFY_SOCKET goes as a socket we connected: prewarmd relays only where we could send.
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  json req = {{"op", "launch"}, {"name", name}, {"env", env}, {"stdio", stdio_kinds()}, {"t0_ns", t0}};
  if (ref->owner) req["owner"] = *ref->owner;
  // Which sockets systemd passed, by inode, so the capture knows them wherever the app moves them.
  if (const ListenEnv listen = parse_listen_env(env, ::getpid()); listen.count != 0) {
    json inodes = json::array();
    for (uint32_t i = 0; i < listen.count; ++i) {
      struct stat st {};
      const bool sock = ::fstat(3 + static_cast<int>(i), &st) == 0 && S_ISSOCK(st.st_mode);
      inodes.push_back(sock ? static_cast<uint64_t>(st.st_ino) : 0);
    }
    req["listen_inodes"] = inodes;
  }
  std::vector<int> send_fds;
  UniqueFd notify_conn;
  if (!saved_notify.empty()) {
    if (auto s = proto::connect_unix(saved_notify, SOCK_DGRAM)) {
      notify_conn = std::move(*s);
      send_fds.push_back(notify_conn.get());
      req["notify_fd"] = 0;
    }
  }
  LaunchPlan p;
  auto r = proto::call(dir, req, send_fds, kDaemonWaitMs);
  notify_conn.reset();
  std::string daemon_problem;
  if (!r) {
    daemon_problem = "prewarmd is not reachable (" + r.error().describe() + ")";
  } else if (!r->msg.value("ok", false)) {
    const json& m = r->msg;
    const std::string code = m.value("code", "");
    std::fprintf(stderr, "prewarm run %s: %s\n", name.c_str(), m.value("error", "refused").c_str());
    if (code == "not_found" || code == "other_owner") return kExitNotFound;
    if (code == "usage") return kExitUsage;
    daemon_problem = "prewarmd did not grant a launch";
  } else {
    const json& m = r->msg;
    p.mode = m.value("mode", "cold");
    p.launch = m.value("launch", 0ull);
    p.argv = m.at("argv").get<std::vector<std::string>>();
    p.cwd = m.at("cwd").get<std::string>();
    p.uid = m.at("uid").get<uid_t>();
    p.gid = m.at("gid").get<gid_t>();
    p.ready = m.value("ready", "idle");
    p.on_restore = m.value("on_restore", 0);
    p.notify_socket = m.value("notify_socket", "");
    if (r->fds.size() == 2) p.manifest = std::move(r->fds[0]), p.pages = std::move(r->fds[1]);
  }
  if (!daemon_problem.empty()) {
    if (!plan_from_copy(*ref, p)) {
      std::fprintf(stderr, "prewarm run %s: %s, and this user has no registration of that name to start cold from; "
                   "start prewarmd (`systemctl start prewarmd.socket`)\n", name.c_str(), daemon_problem.c_str());
      return kExitNoDaemon;
    }
    std::fprintf(stderr, "prewarm run %s: %s; starting cold without a snapshot\n", name.c_str(), daemon_problem.c_str());
  }
  if (p.argv.empty()) {
    std::fprintf(stderr, "prewarm run %s: the registration has no command\n", name.c_str());
    return kExitError;
  }
  if (::geteuid() == 0 && p.uid != 0) shed_root_fds(p);
  // A userfaultfd that serves kernel-mode faults needs privilege: made now, for this process's mm,
  // it keeps working after the drop. Only for root's own apps: handed to another user's app, it
  // would give that user what vm.unprivileged_userfaultfd=0 withholds (the app can take it from
  // its page server with pidfd_getfd), so theirs restore lazily only if they could make one.
  int lazy_uffd = -1;
  if (lazy && p.mode == "restore" && ::geteuid() == 0 && p.uid == 0) {
    auto u = create_full_uffd();
    if (u) lazy_uffd = u->release();
  }
  if (!become_app_user(p, name)) return kExitError;

  // 2. Restore: from here until the point of no return every failure falls back to step 3.
  if (p.mode == "restore" && p.manifest.valid() && p.pages.valid()) {
    RestoreOptions opts;
    opts.on_restore_signal = p.on_restore;
    opts.lazy = lazy;
    opts.lazy_uffd = lazy_uffd;
    lazy_uffd = -1;
    opts.note = [&](const std::string& what) { std::fprintf(stderr, "prewarm run %s: %s\n", name.c_str(), what.c_str()); };
    auto notify = proto::connect_unix(p.notify_socket, SOCK_DGRAM);
    if (notify) {
      opts.notify_fd = notify->get();
      opts.notify_message = "READY=1\n";  // prewarmd knows the launch by the sender's pid
    }
    Error e = restore_in_place(std::move(p.manifest), std::move(p.pages), opts);
    const std::string why = e.describe();
    std::fprintf(stderr, "prewarm run %s: cannot restore the snapshot (%s); starting cold\n", name.c_str(), why.c_str());
    (void)proto::call(dir, {{"op", "fallback"}, {"launch", p.launch}, {"reason", why}}, {}, kDaemonWaitMs);
  }
  p.manifest.reset();
  p.pages.reset();
  if (lazy_uffd >= 0) ::close(lazy_uffd);
  // 3. Cold start: exec the command; prewarmd captures it once it is ready.
  exec_cold(name, p, systemd_notify ? saved_notify.c_str() : nullptr);
}

}  // namespace prewarm::cli
