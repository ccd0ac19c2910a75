// prewarmd: under systemd (socket activation, Type=notify, journal) or as a plain foreground
// process that creates its own sockets and logs to stderr.
#include <CLI/CLI.hpp>
#include <mimalloc.h>

#include <cstdio>
#include <cstdlib>

#include "prewarmd/daemon.h"
#include "prewarmd/log.h"

int main(int argc, char** argv) {
  prewarm::DaemonOptions opts;
  if (const char* s = std::getenv("STATE_DIRECTORY")) opts.state_dir = s;  // systemd's StateDirectory=
  if (const char* r = std::getenv("PREWARM_RUNTIME_DIR")) opts.runtime_dir = r;
  uint64_t budget_mib = opts.limits.store_budget >> 20;
  uint64_t user_share_mib = 0;  // 0: half the budget
  std::string others_see = "nothing";
  CLI::App app{"prewarmd: the prewarm daemon (registry, launches, captures, image store)"};
  app.add_option("--runtime-dir", opts.runtime_dir, "where control.sock and notify.sock are created when not socket-activated")
      ->capture_default_str();
  app.add_option("--state-dir", opts.state_dir, "registry, per-app copies and image store (0711; only STATE/apps is readable by users, each their own files)")->capture_default_str();
  app.add_option("--store-max-mib", budget_mib, "size budget of the image store; least recently used images are evicted")
      ->capture_default_str();
  app.add_option("--user-store-max-mib", user_share_mib,
                 "most of the store one user's images may take together (default: half of --store-max-mib); a "
                 "capture evicts only its own user's images, and an image larger than this is not kept");
  app.add_option("--max-apps-per-user", opts.limits.apps_per_user, "apps one user may register")->capture_default_str();
  app.add_option("--queries-per-second", opts.limits.queries_per_second,
                 "list and stats of one user answered a second, after a burst of as many (more wait their "
                 "turn); 0: no pace")
      ->capture_default_str();
  app.add_option("--capture-timeout-s", opts.capture_timeout_s,
                 "a capture still running after this long is stopped and counts as failed; the app runs on")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--dashboard-others", others_see,
                 "what a user sees of other users' apps on the dashboard: nothing, or timings (names and "
                 "numbers, never paths, reasons, pids or commands)")
      ->check(CLI::IsMember({"nothing", "timings"}))
      ->capture_default_str();
  app.add_option("--http", opts.http,
                 "HOST:PORT of the timing dashboard and /metrics (loopback by default; PORT 0 picks one, "
                 "written to RUNTIME_DIR/dashboard); \"off\" for none")
      ->capture_default_str();
  if (const char* h = std::getenv("PREWARM_HTTP")) opts.http = h;
  app.footer("Signals: SIGTERM or SIGINT stop it cleanly. Apps keep running; captures in flight are abandoned.");
  CLI11_PARSE(app, argc, argv);
  opts.limits.store_budget = budget_mib << 20;
  opts.limits.user_store_share = user_share_mib ? user_share_mib << 20 : opts.limits.store_budget / 2;
  opts.dashboard_shows_timings = others_see == "timings";

  // A long-lived root daemon: malloc is mimalloc on purpose (linked first); saying so at start-up
  // also keeps the link from being dropped as unneeded.
  const int mi = mi_version();
  prewarm::log_event(LOG_INFO, "malloc: mimalloc " + std::to_string(mi / 100) + "." + std::to_string(mi / 10 % 10) +
                                   "." + std::to_string(mi % 10));
  prewarm::Daemon daemon(opts);
  if (auto r = daemon.start(); !r) {
    prewarm::log_event(LOG_ERR, "cannot start: " + r.error().describe());
    return 1;
  }
  return daemon.run();
}
