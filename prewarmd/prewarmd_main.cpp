// prewarmd: under systemd (socket activation, Type=notify, journal) or as a plain foreground
// process that creates its own sockets and logs to stderr.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "prewarmd/daemon.h"
#include "prewarmd/log.h"

int main(int argc, char** argv) {
  prewarm::DaemonOptions opts;
  if (const char* s = std::getenv("STATE_DIRECTORY")) opts.state_dir = s;  // systemd's StateDirectory=
  if (const char* r = std::getenv("PREWARM_RUNTIME_DIR")) opts.runtime_dir = r;
  uint64_t budget_mib = opts.store_budget >> 20;
  CLI::App app{"prewarmd: the prewarm daemon (registry, launches, captures, image store)"};
  app.add_option("--runtime-dir", opts.runtime_dir, "where control.sock and notify.sock are created when not socket-activated")
      ->capture_default_str();
  app.add_option("--state-dir", opts.state_dir, "registry and image store (0700)")->capture_default_str();
  app.add_option("--store-max-mib", budget_mib, "size budget of the image store; least recently used images are evicted")
      ->capture_default_str();
  app.add_option("--http", opts.http,
                 "HOST:PORT of the timing dashboard and /metrics (loopback by default; PORT 0 picks one, "
                 "written to RUNTIME_DIR/dashboard); \"off\" for none")
      ->capture_default_str();
  if (const char* h = std::getenv("PREWARM_HTTP")) opts.http = h;
  app.footer("Signals: SIGTERM or SIGINT stop it cleanly. Apps keep running; captures in flight are abandoned.");
  CLI11_PARSE(app, argc, argv);
  opts.store_budget = budget_mib << 20;

  prewarm::Daemon daemon(opts);
  if (auto r = daemon.start(); !r) {
    prewarm::log_event(LOG_ERR, "cannot start: " + r.error().describe());
    return 1;
  }
  return daemon.run();
}
