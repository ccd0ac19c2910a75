// The timing dashboard: a small GET-only HTTP/1.1 server on a thread of its own, loopback only by
// default. Pages and the chart library are embedded (web/); the numbers come from the apps' running
// totals (shared with the daemon loop, O(apps) per answer), an app's page of launches from the
// history database, read on a connection of its own one bounded page at a time, and the apps from
// the view the daemon loop publishes after changes.
// Each connection is tied to the local user owning its peer socket (asked of the kernel), and an
// app's details are served only to that app's user and root. Timings and app names only: no image
// contents or environments are served.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "prewarmd/history.h"
#include "prewarmd/idle_thread.h"
#include "prewarmd/registry.h"
#include "prewarmd/stats.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct DashboardView {
  struct AppView {
    App app;
    uint64_t image_bytes = 0;
    // false: the viewer may see the app's name and timing numbers only, nothing that names
    // files or processes (state reason, fallback texts, capture errors, pids, argv).
    bool details = true;
    uint64_t images = 0;
  };
  // Shared, never changed once published: the loop republishes an app's entry only when the app
  // changed, and a request takes the view without copying 1,000 apps.
  std::vector<std::shared_ptr<const AppView>> apps;
  uint64_t store_bytes = 0;
  uint64_t store_budget = 0;
};

// What a user sees of another user's app (the admin's choice); an app's own user and root see all.
enum class OthersSee {
  kNothing,  // absent: not listed, 404 as if unregistered, no /metrics series
  kTimings,  // its name and timing numbers, no texts, pids or argv
};

// The part of `view` that `viewer` may see. nullopt is a peer whose local user is unknown (not on
// this machine, or the kernel could not say): it sees what other users see.
DashboardView view_for(const DashboardView& view, std::optional<uid_t> viewer, OthersSee others);

// The user owning the peer end of the connected TCP socket `fd` (IPv4 or IPv6), asked of the kernel
// over NETLINK_SOCK_DIAG with the connection's exact 4-tuple. nullopt when no established socket of
// this machine is that peer (a remote client, one that has already closed, a failed lookup).
std::optional<uid_t> peer_uid(int fd);

// "HOST:PORT" or "[V6]:PORT" into its parts; PORT 0 picks a free one.
Result<std::pair<std::string, int>> parse_listen_address(const std::string& text);

// The Prometheus text exposition of `view` and the apps' totals (no fallback series for apps
// without details). O(apps): no history row is read.
std::string render_metrics(const DashboardView& view, const TotalsBoard& totals);

struct DashboardOptions {
  OthersSee others = OthersSee::kNothing;
  // From accept to the end of the request head, in total: a client trickling bytes is cut off.
  std::chrono::milliseconds head_deadline{2000};
  // From accept to the last byte of the reply: a client that does not read is cut off.
  std::chrono::milliseconds reply_deadline{10000};
  size_t per_user = 8;  // open connections per uid; peers of unknown user share one count
  size_t total = 128;   // open connections in all
};

class Dashboard {
 public:
  Dashboard(std::string history_path, std::shared_ptr<const TotalsBoard> totals, DashboardOptions options = {});
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // Binds and starts serving; returns the base URL ("http://127.0.0.1:PORT/").
  Result<std::string> start(const std::string& listen);
  // The loop's side: never waits on the serving thread's lock (a view it could not hand over now
  // is handed over by the next publish or sync()).
  void publish(DashboardView view);
  void publish(std::shared_ptr<const DashboardView> view);
  bool sync();  // false if a view is still waiting
  // The serving thread (SCHED_IDLE), and an eventfd it writes when requests begin to wait on it:
  // the loop then hurries it if they are still waiting IdleThread::kLateNs later.
  IdleThread& worker() { return worker_; }
  int busy_fd() const { return busy_fd_.get(); }

  struct Request {
    std::string method;
    std::string path;  // percent-decoded, without the query
    std::map<std::string, std::string> query;  // name=value pairs of the query, percent-decoded
    std::vector<std::string> hosts;  // every Host header's value
  };
  struct Reply {
    int status = 200;
    std::string content_type;
    std::string body;
    bool no_store = false;
  };

 private:
  std::shared_ptr<const DashboardView> view() const;
  void serve();
  Reply handle(const Request& req, std::optional<uid_t> viewer) const;
  Reply api_apps(const DashboardView& v) const;
  Reply api_app(const DashboardView& v, const std::string& name, const Request& req) const;
  Reply metrics(const DashboardView& v) const;

  std::string history_path_;
  std::shared_ptr<const TotalsBoard> totals_;
  // Serialized per-app parts of /api/apps and /metrics; used by the server thread only.
  mutable TextCache apps_text_;
  mutable PartCache<std::array<std::string, 5>> metrics_parts_;
  DashboardOptions options_;
  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // an eventfd: written to stop the server thread
  UniqueFd busy_fd_;
  IdleThread worker_;
  std::thread thread_;
  std::vector<std::string> allowed_hosts_;
  mutable std::mutex mu_;
  std::shared_ptr<const DashboardView> view_ = std::make_shared<const DashboardView>();
  std::shared_ptr<const DashboardView> waiting_;  // the loop's, not yet in view_
};

}  // namespace prewarm
