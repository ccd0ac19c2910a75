// Registered apps: configuration and snapshot state, persisted as one JSON file (written to a
// temp file, fsynced, renamed) so a daemon restart loses nothing. Launch history: history.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
};

// "none", "valid", "stale", "unsupported", "capturing"; `reason` says why (for stale,
// unsupported, failed captures and invalidations).
struct AppStatus {
  std::string state = "none";
  std::string reason;
};

struct App {
  AppConfig config;
  AppStatus status;
};

bool valid_app_name(const std::string& name);

class Registry {
 public:
  std::map<std::string, App> apps;

  // A missing file is an empty registry; a corrupt one is an error (never silently dropped).
  Result<void> load(const std::string& path);
  Result<void> save(const std::string& path) const;
};

nlohmann::json to_json(const AppConfig& c);

// Writes `text` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
Result<void> write_file_atomic(const std::string& path, const std::string& text, mode_t mode);

}  // namespace prewarm
