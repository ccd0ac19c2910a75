// The timing dashboard: an HTTP server (cpp-httplib) on its own threads, loopback only by default.
// Pages and the chart library are embedded (web/); data comes from the history database, read on
// a connection of its own, and from the view of apps the daemon loop publishes after changes.
// Timings and app names only: no image contents, command lines or environments are served.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "prewarmd/history.h"
#include "prewarmd/registry.h"
#include "snapshot/result.h"

namespace httplib {
class Server;
}

namespace prewarm {

struct DashboardView {
  struct AppView {
    App app;
    uint64_t image_bytes = 0;
  };
  std::vector<AppView> apps;
  uint64_t store_bytes = 0;
  uint64_t store_budget = 0;
};

// "HOST:PORT" or "[V6]:PORT" into its parts; PORT 0 picks a free one.
Result<std::pair<std::string, int>> parse_listen_address(const std::string& text);

// The Prometheus text exposition of `view` and the history behind it.
Result<std::string> render_metrics(const DashboardView& view, const History& history);

class Dashboard {
 public:
  explicit Dashboard(std::string history_path);
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // Binds and starts serving; returns the base URL ("http://127.0.0.1:PORT/").
  Result<std::string> start(const std::string& listen);
  void publish(DashboardView view);

 private:
  DashboardView view() const;
  void routes();

  std::string history_path_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_done_{false};
  std::vector<std::string> allowed_hosts_;
  mutable std::mutex mu_;
  DashboardView view_;
};

}  // namespace prewarm
