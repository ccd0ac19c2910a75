// The high-level verbs: they talk to prewarmd over its control socket.
#pragma once

#include <string>
#include <vector>

namespace prewarm::cli {

// Exit codes of the service verbs (the engine's 0/1/2/3 plus these).
inline constexpr int kExitNotFound = 4;    // no such app, or not this user's
inline constexpr int kExitNoDaemon = 5;    // prewarmd is not reachable
inline constexpr int kExitNotRunning = 6;  // `snapshot` of an app that is not running

struct RegisterArgs {
  std::string name;
  std::string ready = "idle";
  std::vector<std::string> watch;
  std::string on_restore;  // signal name or number, "" for none
  std::vector<std::string> command;
};

int run_register(const RegisterArgs& args, bool json);
int run_unregister(const std::string& name, bool json);
int run_list(bool json);
int run_snapshot(const std::string& name, bool json);
int run_invalidate(const std::string& name, bool all, bool json);
// history_limit > 0: one page of NAME's launches, newest first, before launch id `before` (0: newest).
int run_stats(const std::string& name, bool json, unsigned recent, unsigned history_limit = 0, int64_t before = 0);
// Becomes the app (restored or exec'ed); returns only if even a cold start is impossible.
int run_app(const std::string& name, bool lazy = false);

}  // namespace prewarm::cli
