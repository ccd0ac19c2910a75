// `prewarm run NAME`: this process becomes the app. Restored when prewarmd has a valid snapshot
// for exactly this launch, otherwise exec'ed cold (and captured by prewarmd once ready). Any
// failure before the point of no return ends in a cold start, never in a failed launch.
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
#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "prewarmd/cmd_dump.h"
#include "prewarmd/cmd_service.h"
#include "prewarmd/protocol.h"
#include "restorer/restore.h"
#include "snapshot/clock.h"

extern char** environ;

namespace prewarm::cli {
namespace {

using proto::json;

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
  std::string notify_socket;  // prewarmd's
  UniqueFd image;             // O_PATH directory of the image, for a restore
  bool have_daemon = true;
};

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

// Without prewarmd the registry file (root's) still says what to run: a cold start, no capture.
bool plan_from_registry(const std::string& name, LaunchPlan& p) {
  const char* sd = std::getenv("PREWARM_STATE_DIR");
  auto text = read_file(std::string(sd && *sd ? sd : "/var/lib/prewarm") + "/registry.json");
  if (!text) return false;
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("apps") || !j["apps"].contains(name)) return false;
  try {
    const auto& c = j["apps"][name]["config"];
    p.argv = c.at("argv").get<std::vector<std::string>>();
    p.cwd = c.at("cwd").get<std::string>();
    p.uid = c.at("uid").get<uid_t>();
    p.gid = c.at("gid").get<gid_t>();
    p.ready = c.value("ready", "idle");
  } catch (const json::exception&) {
    return false;
  }
  if (::getuid() != 0 && ::getuid() != p.uid) return false;
  p.have_daemon = false;
  return !p.argv.empty();
}

[[noreturn]] void exec_cold(const std::string& name, const LaunchPlan& p, const char* saved_notify) {
  if (::chdir(p.cwd.c_str()) != 0) {
    std::fprintf(stderr, "prewarm run %s: cannot enter the app's directory %s: %s\n", name.c_str(), p.cwd.c_str(), std::strerror(errno));
    std::exit(kExitError);
  }
  ::setenv("PWD", p.cwd.c_str(), 1);
  // Readiness goes through prewarmd (which forwards it to systemd); without it, straight to systemd.
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

int run_app(const std::string& name) {
  const int64_t t0 = mono_ns();
  const std::string dir = proto::runtime_dir();
  const char* systemd_notify = std::getenv("NOTIFY_SOCKET");
  const std::string saved_notify = systemd_notify ? systemd_notify : "";

  // 1. Ask prewarmd how to launch: it checks who we are, the files, and the snapshot key.
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  json req = {{"op", "launch"}, {"name", name}, {"env", env}, {"stdio", stdio_kinds()},
              {"t0_ns", t0}, {"notify_socket", saved_notify}};
  LaunchPlan p;
  auto r = proto::call(dir, req);
  if (!r) {
    if (!plan_from_registry(name, p)) {
      std::fprintf(stderr, "prewarm run %s: prewarmd is not reachable (%s) and the registry is not readable; "
                   "start prewarmd (`systemctl start prewarmd.socket`)\n", name.c_str(), r.error().describe().c_str());
      return kExitNoDaemon;
    }
    std::fprintf(stderr, "prewarm run %s: prewarmd is not reachable (%s); starting cold without a snapshot\n",
                 name.c_str(), r.error().describe().c_str());
  } else {
    const json& m = r->msg;
    if (!m.value("ok", false)) {
      std::fprintf(stderr, "prewarm run %s: %s\n", name.c_str(), m.value("error", "refused").c_str());
      return m.value("code", "") == "not_found" ? kExitNotFound : kExitError;
    }
    p.mode = m.value("mode", "cold");
    p.launch = m.value("launch", 0ull);
    p.argv = m.at("argv").get<std::vector<std::string>>();
    p.cwd = m.at("cwd").get<std::string>();
    p.uid = m.at("uid").get<uid_t>();
    p.gid = m.at("gid").get<gid_t>();
    p.ready = m.value("ready", "idle");
    p.notify_socket = m.value("notify_socket", "");
    if (!r->fds.empty()) p.image = std::move(r->fds[0]);
  }
  if (p.argv.empty()) {
    std::fprintf(stderr, "prewarm run %s: the registration has no command\n", name.c_str());
    return kExitError;
  }
  if (!become_app_user(p, name)) return kExitError;

  // 2. Restore: from here until the point of no return every failure falls back to step 3.
  if (p.mode == "restore" && p.image.valid()) {
    std::string why;
    struct stat st {};
    if (::fstat(p.image.get(), &st) != 0 || st.st_uid != ::getuid()) {
      why = "the image does not belong to this user";
    } else {
      RestoreOptions opts;
      auto notify = proto::connect_unix(p.notify_socket, SOCK_DGRAM);
      if (notify) {
        opts.notify_fd = notify->get();
        opts.notify_message = "READY=1\nPREWARM_LAUNCH=" + std::to_string(p.launch) + "\n";
      }
      Error e = restore_in_place("/proc/self/fd/" + std::to_string(p.image.get()), opts);
      why = e.describe();
    }
    std::fprintf(stderr, "prewarm run %s: cannot restore the snapshot (%s); starting cold\n", name.c_str(), why.c_str());
    (void)proto::call(dir, {{"op", "fallback"}, {"launch", p.launch}, {"reason", why}});
  }
  p.image.reset();
  // 3. Cold start: exec the command; prewarmd captures it once it is ready.
  exec_cold(name, p, systemd_notify ? saved_notify.c_str() : nullptr);
}

}  // namespace prewarm::cli
