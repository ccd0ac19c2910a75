// prewarmd: the control socket, the registry, launches in flight, captures and invalidation, on
// one sd-event loop. Captures run in forked children so the loop never waits on a dump.
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "policy/launch_key.h"
#include "policy/readiness.h"
#include "prewarmd/dashboard.h"
#include "prewarmd/history.h"
#include "prewarmd/protocol.h"
#include "prewarmd/registry.h"
#include "prewarmd/stats.h"
#include "prewarmd/store.h"
#include "snapshot/cpu_compat.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct DaemonOptions {
  std::string runtime_dir = "/run/prewarm";
  std::string state_dir = "/var/lib/prewarm";
  uint64_t store_budget = 8ull << 30;
  std::string http = "127.0.0.1:9746";  // the dashboard's address; "off" for none
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions opts);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Loads state, takes the sockets (from systemd or created), tells systemd READY=1.
  Result<void> start();
  // Runs until SIGTERM/SIGINT; returns the exit code.
  int run();

 private:
  struct Launch {
    uint64_t id = 0;
    int64_t history_id = 0;  // its row in the history, 0 if not recorded
    std::string app;
    pid_t pid = 0;
    std::string mode;            // "cold" or "restored"
    std::string restored_key;    // the image handed out, for a fallback to quarantine
    int64_t t0_ns = 0;           // the launcher's CLOCK_MONOTONIC at start
    int64_t wall_ms = 0;
    std::string systemd_notify;  // the launch's own $NOTIFY_SOCKET, READY=1 is forwarded there
    bool ready = false;
    policy::LaunchContext ctx;
    std::optional<policy::IdleDetector> idle;
    UniqueFd pidfd;
    sd_event_source* exit_source = nullptr;
    sd_event_source* timer = nullptr;
  };
  struct Capture {
    std::string app;
    uint64_t launch_id = 0;
    pid_t pid = 0;  // the app
    pid_t child = 0;
    std::string incoming;
    policy::LaunchContext ctx;
    int64_t started_ns = 0;
    UniqueFd waiter;  // a `prewarm snapshot` client waiting for the outcome, if any
    sd_event_source* source = nullptr;
  };

  // Requests, one per connection; `cred` is the kernel's word on who asks.
  proto::json handle(const proto::json& req, const proto::PeerCred& cred, int conn, std::vector<UniqueFd>& reply_fds, bool& deferred);
  proto::json op_register(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_unregister(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_list(const proto::PeerCred& cred);
  proto::json op_launch(const proto::json& req, const proto::PeerCred& cred, std::vector<UniqueFd>& fds);
  proto::json op_fallback(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_invalidate(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_stats(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_snapshot(const proto::json& req, const proto::PeerCred& cred, int conn, bool& deferred);

  App* visible_app(const std::string& name, const proto::PeerCred& cred, proto::json& error);
  void on_ready(Launch& l, int64_t ready_ns, const char* how, const std::optional<RestoreReport>& report = std::nullopt);
  void watch_readiness(Launch& l, const policy::ReadyMode& mode, int64_t start_ns);
  void end_launch(uint64_t id);
  void open_history();
  template <typename T>
  void note_history(const Result<T>& r);
  AppSummary summary_of(const std::string& app);
  void start_dashboard();
  void publish();  // the app view the dashboard serves
  Result<void> start_capture(Launch& l, int waiter_fd, unsigned delay_ms = 0);
  void finish_capture(std::string app);
  void drop_images(const std::string& app, const std::string& state, const std::string& reason);
  void recheck_files();
  void rebuild_watches();
  void forward_notify(const Launch& l, const std::string& message);
  void save();
  void update_status();

  static int on_control(sd_event_source*, int fd, uint32_t, void* self);
  static int on_notify(sd_event_source*, int fd, uint32_t, void* self);
  static int on_inotify(sd_event_source*, int fd, uint32_t, void* self);
  static int on_launch_exit(sd_event_source*, int fd, uint32_t, void* self);
  static int on_launch_timer(sd_event_source*, uint64_t usec, void* self);
  static int on_capture_exit(sd_event_source*, const siginfo_t*, void* self);
  static int on_recheck(sd_event_source*, uint64_t usec, void* self);

  DaemonOptions opts_;
  MachineCompat machine_;  // part of every snapshot key
  sd_event* event_ = nullptr;
  UniqueFd control_, notify_, inotify_;
  std::string notify_path_;
  sd_event_source* inotify_source_ = nullptr;
  sd_event_source* recheck_source_ = nullptr;
  Registry registry_;
  ImageStore store_;
  std::optional<History> history_;  // none if the database cannot be opened: launches go on
  std::unique_ptr<Dashboard> dashboard_;
  std::map<uint64_t, std::unique_ptr<Launch>> launches_;
  std::map<std::string, std::unique_ptr<Capture>> captures_;
  uint64_t next_launch_ = 1;
};

}  // namespace prewarm
