// Registered apps: configuration, snapshot state and launch history, persisted as one JSON file
// (written to a temp file, fsynced, renamed) so a daemon restart loses nothing.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
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

struct LaunchRecord {
  int64_t time_ms = 0;     // wall clock, ms since the epoch
  std::string mode;        // "cold" or "restored"
  std::string fallback;    // why a restore was not possible, if it was wanted
  double ready_ms = -1;    // time to ready; -1 while unknown (never ready, still starting)
  pid_t pid = 0;
};

// "none", "valid", "stale", "unsupported", "capturing"; `reason` says why (for stale,
// unsupported, failed captures and invalidations).
struct AppStatus {
  std::string state = "none";
  std::string reason;
  uint64_t cold = 0, restored = 0, fallbacks = 0, captures = 0, capture_failures = 0;
  std::deque<LaunchRecord> recent;  // newest last, bounded
};

struct App {
  AppConfig config;
  AppStatus status;
};

bool valid_app_name(const std::string& name);

class Registry {
 public:
  static constexpr size_t kRecentLaunches = 200;

  std::map<std::string, App> apps;

  // A missing file is an empty registry; a corrupt one is an error (never silently dropped).
  Result<void> load(const std::string& path);
  Result<void> save(const std::string& path) const;
};

nlohmann::json to_json(const AppConfig& c);
nlohmann::json to_json(const LaunchRecord& r);

// Writes `text` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
Result<void> write_file_atomic(const std::string& path, const std::string& text, mode_t mode);

}  // namespace prewarm
