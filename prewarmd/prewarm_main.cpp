// The `prewarm` command line.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "prewarmd/cmd_dump.h"
#include "prewarmd/cmd_inspect.h"

int main(int argc, char** argv) {
  using namespace prewarm::cli;
  CLI::App app{"prewarm: snapshot an app after start-up and restore it on the next launch"};
  app.require_subcommand(1);

  pid_t pid = 0;
  std::string images;
  bool kill_after = false;
  auto* dump = app.add_subcommand("dump", "Snapshot a running process into an image directory");
  dump->add_option("--pid", pid, "process to snapshot")->required();
  dump->add_option("--images", images, "image directory to create (replaced atomically)")->required();
  dump->add_flag("--kill", kill_after, "end the process after a successful snapshot");
  dump->footer("Exit status: 0 done, 3 the process has something prewarm cannot restore (each "
               "offender is listed), 1 other errors.");

  auto* restore = app.add_subcommand(
      "restore", "Turn this process into the snapshotted one (same pid, this process's stdio)");
  restore->add_option("--images", images, "image directory written by `prewarm dump`")->required();

  bool json = false;
  auto* inspect = app.add_subcommand("inspect", "Show what is in an image: mappings, pages, files");
  inspect->add_option("--images", images, "image directory")->required();
  inspect->add_flag("--json", json, "machine-readable output");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "prewarm: %s\nRun `prewarm --help` or `prewarm COMMAND --help` for usage.\n",
                 e.what());
    return kExitUsage;
  }
  if (dump->parsed()) return run_dump(pid, images, kill_after);
  if (restore->parsed()) return run_restore(images);
  if (inspect->parsed()) return run_inspect(images, json);
  return kExitUsage;
}
