// prewarmd: the control socket, the registry, launches in flight, captures and invalidation, on
// one sd-event loop. Captures run in forked children so the loop never waits on a dump, and
// every peer is read and written without blocking, under a deadline.
//
// The class is split by concern, one file each:
//   daemon.cpp          lifecycle: state, sockets, the loop, saving
//   daemon_control.cpp  control connections: caps, deadlines, dispatch
//   daemon_apps.cpp     register, unregister, invalidate; list and stats handed to queries.h
//   daemon_launch.cpp   launches, fallbacks and readiness
//   daemon_notify.cpp   READY=1 and friends: received, and relayed to the launch's own socket
//   daemon_capture.cpp  captures and the store's admission of their images
//   daemon_watch.cpp    inotify on recorded files: stale images dropped
//   daemon_history.cpp  the launch history and the dashboard's view
// Decisions (which image a launch gets, state transitions, limits) are in policy/.
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/app_state.h"
#include "policy/launch_key.h"
#include "policy/limits.h"
#include "policy/readiness.h"
#include "prewarmd/dashboard.h"
#include "prewarmd/history.h"
#include "prewarmd/log.h"
#include "prewarmd/protocol.h"
#include "prewarmd/queries.h"
#include "prewarmd/registry.h"
#include "prewarmd/stats.h"
#include "prewarmd/store.h"
#include "snapshot/cpu_compat.h"
#include "snapshot/proc_identity.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct DaemonOptions {
  std::string runtime_dir = "/run/prewarm";
  std::string state_dir = "/var/lib/prewarm";
  std::string http = "127.0.0.1:9746";  // the dashboard's address; "off" for none
  bool dashboard_shows_timings = false;  // others' apps on the dashboard: names and timings, or nothing
  policy::Limits limits;
  int request_deadline_ms = 2000;  // from accept to a complete request, and for writing a reply
  int capture_timeout_s = 120;     // a capture child still running then is killed (the app runs on)
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
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;  // valid while `pidfd` says the process runs: the launch ends at its exit
    UniqueFd pidfd;
    policy::LaunchMode mode = policy::LaunchMode::kCold;
    std::string restored_key;  // the image handed out, for a fallback to quarantine
    std::string restore_failure;  // what the blob said as it failed past the point of no return
    int64_t t0_ns = 0;         // the launcher's CLOCK_MONOTONIC at start
    int64_t wall_ms = 0;
    UniqueFd notify;  // the launch's own NOTIFY_SOCKET, connected by the launcher itself
    uint64_t notify_dropped = 0;
    bool ready = false;
    std::optional<ProcessIdentity> at_ready;  // who the process was when it became ready
    std::optional<Placement> launched_in;     // the launcher's namespaces and cgroups as it asked
    UniqueFd mem_at_ready;                    // its mm then: an exec since makes reads fail
    // The launcher's own mm, taken while it waits for the launch reply: until its exec of the app
    // this handle still reads, and a delay or idle timer that fires then has no app to call ready.
    UniqueFd launcher_mm;
    uint64_t launcher_stack = 0;
    bool waited_for_exec = false;  // a timer found the launcher: ready counts from the exec seen
    int capture_retries = 0;       // captures tried again after a verdict that may be transient
    int exec_polls = 0;            // timer rounds spent waiting for that exec to finish
    policy::LaunchContext ctx;
    // The launcher's LISTEN_FDS sockets by inode, as it reported them: only its own capture's
    // reading of its own fds depends on them, and a restore checks them against its launch's.
    std::vector<uint64_t> launch_sockets;
    std::optional<policy::IdleDetector> idle;
    sd_event_source* exit_source = nullptr;
    sd_event_source* timer = nullptr;
  };
  struct Capture {
    std::string app;
    uint64_t launch_id = 0;
    uid_t uid = 0;
    pid_t pid = 0;  // the app
    pid_t child = 0;
    std::string incoming;
    int64_t started_ns = 0;
    uint64_t waiter = 0;  // a `prewarm snapshot` connection waiting for the outcome, 0 if none
    sd_event_source* source = nullptr;
    sd_event_source* deadline = nullptr;
    bool timed_out = false;  // killed at its deadline: a failure whatever it wrote
    // A page shared with the child: 1 while it runs a syscall in the app (snapshot/inject_syscall).
    std::atomic<uint32_t>* injecting = nullptr;
    UniqueFd app_pidfd;    // the app, for the last resort of a deadline (see on_capture_deadline)
    int grace_checks = 0;  // deadline checks passed waiting for an injected syscall to end
    bool app_killed = false;
    Capture() = default;
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;
    ~Capture();
  };
  struct Connection {
    uint64_t id = 0;
    UniqueFd fd;
    proto::PeerCred cred;
    UniqueFd pidfd;  // the peer process; invalid if it was already gone at accept
    std::string pidfd_error;
    proto::MessageReader reader{1u << 20};
    std::vector<UniqueFd> received;  // fds that came with the request
    std::optional<proto::MessageWriter> writer;
    uint64_t launch = 0;  // a launch whose reply this is: dropped if the reply cannot go out
    bool query = false;   // a list or stats waiting for its answer (counted in queries_by_uid_)
    sd_event_source* io = nullptr;
    sd_event_source* deadline = nullptr;
  };
  // What a handler answers: the reply and its fds, or a deferral (the connection waits).
  struct Reply {
    proto::json msg;
    std::vector<UniqueFd> fds;
    bool deferred = false;
    uint64_t launch = 0;
    std::optional<proto::JsonText> text;  // when set, the reply instead of msg (built from cached parts)
  };

  // daemon_control.cpp
  static int on_accept(sd_event_source*, int fd, uint32_t, void* self);
  static int on_connection_io(sd_event_source*, int fd, uint32_t, void* self);
  static int on_connection_deadline(sd_event_source*, uint64_t, void* self);
  void read_request(Connection& c);
  void write_reply(Connection& c);
  void start_writing(Connection& c, proto::MessageWriter reply);
  void send_reply(uint64_t conn, const proto::json& msg, std::vector<UniqueFd> fds = {});
  void send_reply(uint64_t conn, proto::JsonText msg);
  void close_connection(uint64_t conn, const char* why = nullptr);
  void pause_accepting();
  Reply handle(const proto::json& req, Connection& c);
  App* visible_app(const std::string& name, const proto::PeerCred& cred, proto::json& error);

  // daemon_apps.cpp
  proto::json op_register(const proto::json& req, const proto::PeerCred& cred);
  proto::json op_unregister(const proto::json& req, const proto::PeerCred& cred);
  // list and stats: at the user's pace (policy::QueryPacer), the request goes to the query thread
  // with a fresh view; answered from there.
  Reply op_query(const proto::json& req, Connection& c);
  Reply start_query(const proto::json& req, Connection& c);
  static int on_query_turn(sd_event_source*, uint64_t usec, void* self);
  static int on_query_done(sd_event_source*, int fd, uint32_t, void* self);
  proto::json op_invalidate(const proto::json& req, const proto::PeerCred& cred);
  void set_status(const std::string& app, const policy::AppEvent& e);

  // daemon_launch.cpp
  Reply op_launch(const proto::json& req, Connection& c);
  proto::json op_fallback(const proto::json& req, const proto::PeerCred& cred);
  // A lazily restored launch's page server found its image bad and killed the app.
  void on_lazy_failure(Launch& l, const std::string& reason);
  void on_restore_died(Launch& l);
  App* launchable_app(const proto::json& req, const proto::PeerCred& cred, proto::json& error);
  void on_ready(Launch& l, int64_t ready_ns, const char* how, const std::optional<RestoreReport>& report = std::nullopt);
  void watch_readiness(Launch& l, const policy::ReadyMode& mode, int64_t start_ns);
  void end_launch(uint64_t id);
  void end_launches_of(const std::string& app);
  unsigned launches_of(uid_t uid) const;
  static int on_launch_exit(sd_event_source*, int fd, uint32_t, void* self);
  static int on_launch_timer(sd_event_source*, uint64_t usec, void* self);

  // daemon_notify.cpp
  static int on_notify(sd_event_source*, int fd, uint32_t, void* self);
  uint64_t exiting_launch_ = 0;  // a launch whose process exited: on_notify reads its last messages
  std::string accept_notify_socket(int fd) const;
  void forward_notify(Launch& l, const std::string& message);

  // daemon_capture.cpp
  Reply op_snapshot(const proto::json& req, Connection& c);
  Result<void> start_capture(Launch& l, uint64_t waiter, unsigned delay_ms = 0);
  void finish_capture(std::string app);
  void drop_images(const std::string& app, const policy::AppEvent& e);
  std::vector<policy::OwnedImage> owned_images() const;
  static int on_capture_exit(sd_event_source*, const siginfo_t*, void* self);
  static int on_capture_deadline(sd_event_source*, uint64_t usec, void* self);

  // daemon_watch.cpp
  void recheck_files();
  void rebuild_watches();
  void drop_watches();
  static int on_inotify(sd_event_source*, const inotify_event* event, void* self);
  static int on_recheck(sd_event_source*, uint64_t usec, void* self);

  // daemon_history.cpp
  void open_history();
  template <typename T>
  void note_history(const Result<T>& r) {
    if (!r) log_event(LOG_WARNING, r.error().describe());
  }
  // The app's running totals (empty ones if none): O(1), never a read of the history's rows.
  AppTotals totals_of(const std::string& app) const;
  void start_dashboard();
  void start_queries();
  void publish();  // the app view queries and the dashboard answer from (view_)

  // daemon.cpp
  void load_registry();
  void save();
  // A status change: published now, written with any others within half a second. Only
  // registrations must be on disk when answered; a status lost in a crash costs at most one
  // capture tried again (launches follow the store's images, not the saved status).
  void save_soon();
  static int on_save_timer(sd_event_source* s, uint64_t usec, void* userdata);
  void update_status();

  DaemonOptions opts_;
  MachineCompat machine_;  // part of every snapshot key
  sd_event* event_ = nullptr;
  UniqueFd control_, notify_, apps_dir_;
  std::string notify_path_, control_path_;
  sd_event_source* accept_source_ = nullptr;
  sd_event_source* accept_pause_ = nullptr;
  std::vector<sd_event_source*> watches_;  // sd_event_add_inotify, one per recorded file and directory
  int watch_failures_ = 0;  // logged when it changes, not at every rebuild
  sd_event_source* recheck_source_ = nullptr;
  sd_event_source* save_source_ = nullptr;
  Registry registry_;
  ImageStore store_;
  std::optional<History> history_;  // none if the database cannot be opened: launches go on
  std::unique_ptr<Dashboard> dashboard_;
  std::unique_ptr<QueryServer> queries_;  // destroyed (its thread joined) before the loop
  sd_event_source* queries_source_ = nullptr;
  policy::QueryPacer pacer_{opts_.limits.queries_per_second};
  struct WaitingQuery {
    uint64_t conn = 0;
    proto::json req;
  };
  std::map<sd_event_source*, WaitingQuery> waiting_queries_;  // over the pace: each on a timer
  std::map<uid_t, unsigned> queries_by_uid_;
  // Hand-overs to the SCHED_IDLE threads that found their lock held, tried again 1 ms later.
  sd_event_source* post_source_ = nullptr;
  sd_event_source* sync_source_ = nullptr;
  // Work the SCHED_IDLE threads have had for IdleThread::kLateNs runs at the loop's priority.
  sd_event_source* hurry_source_ = nullptr;
  sd_event_source* dashboard_busy_source_ = nullptr;
  void hurry_soon(int64_t ns);
  static int on_hurry(sd_event_source*, uint64_t usec, void* self);
  static int on_post(sd_event_source*, void* self);
  static int on_sync(sd_event_source*, uint64_t usec, void* self);
  void deliver_answers(std::vector<QueryAnswer> answers);
  std::shared_ptr<const DashboardView> view_ = std::make_shared<const DashboardView>();
  std::map<uint64_t, std::unique_ptr<Launch>> launches_;
  std::map<std::string, std::unique_ptr<Capture>> captures_;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::map<uid_t, unsigned> connections_by_uid_;
  uint64_t next_launch_ = 1, next_connection_ = 1;
  uint64_t refused_connections_ = 0;
};

}  // namespace prewarm
