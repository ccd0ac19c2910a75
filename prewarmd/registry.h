// Registered apps: configuration and snapshot state, persisted as one JSON file (written to a
// temp file, fsynced, renamed) so a daemon restart loses nothing. Launch history: history.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "policy/app_state.h"
#include "policy/readiness.h"
#include "snapshot/result.h"

namespace prewarm {

struct AppConfig {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<std::string> argv;  // argv[0] absolute
  std::string cwd;
  policy::ReadyMode ready;
  std::vector<std::string> watch;
  int on_restore = 0;  // signal delivered to a restored launch before it runs on (0: none)
};

using AppStatus = policy::AppStatus;

struct App {
  AppConfig config;
  AppStatus status;
  // Unique to this configuration: new for each App and set anew at a re-registration, so that
  // answers cached per app know their configuration is the one they were built from.
  uint64_t generation = next_generation();
  static uint64_t next_generation();
};

bool valid_app_name(const std::string& name);

class Registry {
 public:
  std::map<std::string, App> apps;
  // Entries load() skipped (an invalid configuration), one line each, for the daemon to log.
  std::vector<std::string> skipped;

  // A missing file is an empty registry; a file that is not a registry is an error (the daemon
  // moves it aside and rebuilds from the per-app copies).
  Result<void> load(const std::string& path);
  Result<void> save(const std::string& path) const;

  unsigned apps_of(uid_t uid) const;

 private:
  // Each app's configuration as JSON text, with the generation it was made from: every save
  // writes every app, and building 1,000 configurations' JSON anew took half of prewarmd's CPU
  // per launch at that scale (a capture's end saves the registry).
  mutable std::map<std::string, std::pair<uint64_t, std::string>> config_text_;
};

nlohmann::json to_json(const AppConfig& c);
Result<AppConfig> app_config_from_json(const nlohmann::json& c, const std::string& name);

// Per-app copies of the configuration, STATE/apps/UID/NAME.json, so a user's launch can start cold
// while prewarmd is down: in a directory of that user's (0500, so no one else can even look a name
// up), each file the user's (0400). prewarmd rebuilds a lost registry from them, believing each
// only for the uid that owns it, and never the group it names.
std::string app_copy_name(uid_t uid, const std::string& name);
Result<void> write_app_copy(int apps_dir, const AppConfig& c);
void remove_app_copy(int apps_dir, uid_t uid, const std::string& name);
// Every copy whose owner matches the uid it names; the rest are reported in `skipped`.
std::vector<AppConfig> read_app_copies(int apps_dir, std::vector<std::string>& skipped);
// A launcher's read of its own copy (by path, as the user; the directory is root's).
Result<AppConfig> read_app_copy(const std::string& state_dir, uid_t uid, const std::string& name);

// Writes `text` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
Result<void> write_file_atomic(const std::string& path, const std::string& text, mode_t mode);

}  // namespace prewarm
