// The `prewarm` command line.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "prewarmd/cmd_check.h"
#include "prewarmd/cmd_dump.h"
#include "prewarmd/cmd_inspect.h"
#include "prewarmd/cmd_service.h"

int main(int argc, char** argv) {
  using namespace prewarm::cli;
  CLI::App app{"prewarm: snapshot an app after start-up and restore it on the next launch"};
  app.require_subcommand(1);
  app.footer(
      "Exit status: 0 done, 1 failed, 2 usage error, 3 unsupported (the process has something prewarm "
      "cannot restore), 4 no such app (or not yours), 5 prewarmd not reachable, 6 app not running.\n"
      "prewarmd's sockets are in $PREWARM_RUNTIME_DIR (default /run/prewarm).");

  pid_t pid = 0;
  std::string images;
  bool kill_after = false, json = false;
  auto* dump = app.add_subcommand("dump", "Snapshot a running process into an image directory");
  dump->add_option("--pid", pid, "process to snapshot")->required();
  dump->add_option("--images", images, "image directory to create (replaced atomically)")->required();
  dump->add_flag("--kill", kill_after, "end the process after a successful snapshot");
  bool any_cgroup = false;
  dump->add_flag("--any-cgroup", any_cgroup,
                 "dump a process in a cgroup below this command's, one it made and moved into (its "
                 "restore will be in the launcher's; by default that is refused)");
  dump->footer("Exit status: 0 done, 3 the process has something prewarm cannot restore (each "
               "offender is listed), 1 other errors.");

  auto* restore = app.add_subcommand(
      "restore", "Turn this process into the snapshotted one (same pid, this process's stdio)");
  restore->add_option("--images", images, "image directory written by `prewarm dump`")->required();
  bool allow_other_owner = false;
  bool lazy = false;
  restore->add_flag("--lazy", lazy,
                    "fill anonymous memory on demand (userfaultfd) while the app runs, instead of before; "
                    "eager when this process cannot have a userfaultfd that serves every fault");
  restore->add_flag("--allow-other-owner", allow_other_owner,
                    "restore an image whose files another user owns (it then runs with your credentials)");
  std::string on_restore;
  restore->add_option("--on-restore", on_restore,
                      "SIGNAL the app gets once restored, before it runs on (every restore of an image is a "
                      "clone: its handler can reseed random state or reconnect)");

  auto* inspect = app.add_subcommand("inspect", "Show what is in an image: mappings, pages, files");
  inspect->add_option("--images", images, "image directory")->required();
  inspect->add_flag("--json", json, "machine-readable output");

  RegisterArgs reg;
  auto* regc = app.add_subcommand("register", "Register an app: prewarm run NAME launches it, restored when it can");
  regc->add_option("name", reg.name, "app name (letters, digits, - _ .)")->required();
  regc->add_option("--ready", reg.ready,
                   "when the app is ready to be snapshotted: notify (it sends READY=1 to $NOTIFY_SOCKET), "
                   "idle[:MS] (blocked with no CPU use for MS, default 500), delay:MS")
      ->capture_default_str();
  regc->add_option("--watch", reg.watch, "another file whose change makes the snapshot stale (repeatable)");
  regc->add_option("--on-restore", reg.on_restore,
                   "SIGNAL the app gets after each restore, before it is reported ready (restores are clones: "
                   "its handler can reseed random state or reconnect)");
  regc->add_option("command", reg.command, "-- COMMAND [ARG]...")->required();
  regc->add_flag("--json", json, "machine-readable output");

  std::string name;
  auto* run = app.add_subcommand("run", "Launch an app: restore its snapshot if valid, else start it cold (and capture it)");
  run->add_option("name", name, "registered app: NAME (yours), or USER/NAME for another user's (root only)")->required();
  run->add_flag("--lazy", lazy, "restore lazily (as `prewarm restore --lazy`) when restored");
  run->footer("This process becomes the app (same pid, same stdio): restored, or exec'ed cold. prewarmd is "
              "waited for at most 1 s; without an answer the app starts cold. Root runs another user's app only "
              "when it names the owner (USER/NAME), and hands it no descriptors but stdio.");

  auto* list = app.add_subcommand("list", "Registered apps and their snapshot state (valid, stale, none, unsupported)");
  list->add_flag("--json", json, "machine-readable output");

  auto* snap = app.add_subcommand("snapshot", "Capture a running launch of the app now");
  snap->add_option("name", name, "registered app")->required();
  snap->add_flag("--json", json, "machine-readable output");

  bool all = false;
  auto* inval = app.add_subcommand("invalidate", "Drop an app's snapshots: its next launch is cold");
  inval->add_option("name", name, "registered app");
  inval->add_flag("--all", all, "every app of this user (all apps for root)");
  inval->add_flag("--json", json, "machine-readable output");

  auto* unreg = app.add_subcommand("unregister", "Forget an app and delete its snapshots");
  unreg->add_option("name", name, "registered app")->required();
  unreg->add_flag("--json", json, "machine-readable output");

  auto* stats = app.add_subcommand("stats", "Launch statistics: cold vs restored time to ready, hit rate, fallbacks");
  stats->add_option("name", name, "only this app");
  stats->add_flag("--json", json, "machine-readable output");
  unsigned recent = 20;
  stats->add_option("--recent", recent, "with --json: this many newest launches of each app under \"recent\" (at most 200; 1000 rows per request in all)")
      ->capture_default_str();
  bool history = false;
  unsigned history_limit = 50;
  int64_t before = 0;
  stats->add_flag("--history", history, "one page of NAME's launches, newest first");
  stats->add_option("--limit", history_limit, "with --history: launches per page (at most 200)")->capture_default_str();
  stats->add_option("--before", before, "with --history: the page of launches older than this launch id");

  auto* check = app.add_subcommand("check", "What this machine and user can do: kernel features prewarm uses, and what to do when one is missing");
  check->add_flag("--json", json, "machine-readable output");
  check->footer("Exit status: 0 when dump and restore can work here, 1 when something they need is missing.");

  try {
    app.parse(argc, argv);
    if (inval->parsed() && all == !name.empty()) throw CLI::ValidationError("invalidate", "give an app NAME or --all");
    if (stats->parsed() && history && (name.empty() || history_limit == 0))
      throw CLI::ValidationError("stats", "--history needs an app NAME and a --limit of at least 1");
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "prewarm: %s\nRun `prewarm --help` or `prewarm COMMAND --help` for usage.\n", e.what());
    return kExitUsage;
  }
  if (dump->parsed()) return run_dump(pid, images, kill_after, any_cgroup);
  if (restore->parsed()) return run_restore(images, allow_other_owner, on_restore, lazy);
  if (inspect->parsed()) return run_inspect(images, json);
  if (regc->parsed()) return run_register(reg, json);
  if (run->parsed()) return run_app(name, lazy);
  if (list->parsed()) return run_list(json);
  if (snap->parsed()) return run_snapshot(name, json);
  if (inval->parsed()) return run_invalidate(name, all, json);
  if (unreg->parsed()) return run_unregister(name, json);
  if (stats->parsed()) return run_stats(name, json, recent, history ? history_limit : 0, before);
  if (check->parsed()) return run_check(json);
  return kExitUsage;
}
