// `prewarm list` and `prewarm stats`, answered on a thread of their own so that no query, however
// often it is asked or however many history rows it pages through, holds up the loop that serves
// launches. The loop hands over a job (the peer's socket, its request, the app view it published,
// and the few facts only the loop knows); the thread computes the reply and writes what the socket
// takes without blocking (usually all of it), and the loop, woken through an eventfd, writes the
// rest under its deadline. Answers cost O(apps): each app's part is serialized once per change.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "prewarmd/dashboard.h"
#include "prewarmd/history.h"
#include "prewarmd/idle_thread.h"
#include "prewarmd/protocol.h"
#include "prewarmd/stats.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct QueryJob {
  uint64_t conn = 0;  // the control connection the reply goes to
  UniqueFd sock;      // its socket (a dup: the loop leaves it alone until the answer is back)
  uid_t uid = 0;      // the asking user: sees their own apps (root: all)
  int64_t asked_ns = 0;  // when the thread was handed it (CLOCK_MONOTONIC)
  nlohmann::json req;
  std::shared_ptr<const DashboardView> view;  // the apps as the loop last published them
  std::set<std::string> capturing;            // apps with a capture running
  unsigned launches_in_flight = 0;            // this user's (root: all)
};

struct QueryAnswer {
  uint64_t conn = 0;
  proto::MessageWriter rest;  // what the socket did not take yet
  bool sent = false;          // written whole
  std::string error;          // the peer went away (nothing more to write)
};

class QueryServer {
 public:
  // `totals` null: no history (every app answers with empty totals and no rows).
  QueryServer(std::string history_path, std::shared_ptr<const TotalsBoard> totals);
  ~QueryServer();  // waits for the job in progress, drops the others
  QueryServer(const QueryServer&) = delete;
  QueryServer& operator=(const QueryServer&) = delete;

  Result<void> start();
  // Readable (an eventfd) when answers are ready to take().
  int ready_fd() const { return ready_.get(); }
  // The loop's side never waits on the thread's lock (SCHED_IDLE, it may not run again soon): a
  // job it could not queue now is queued by the next submit or sync(), and answers it could not
  // take are taken by the next take().
  void submit(QueryJob job);
  std::vector<QueryAnswer> take();
  bool sync();  // false while a job or an answer still waits for the lock
  IdleThread& worker() { return worker_; }  // SCHED_IDLE, hurried by the loop when jobs wait long

  // The answers themselves, on the calling thread; used by the server's thread, and by tests.
  std::string answer(const QueryJob& job);

 private:
  void serve();
  std::string list(const QueryJob& job);
  std::string stats(const QueryJob& job);
  // One page of `app`'s launches, newest first, from this thread's own connection to the history.
  std::optional<std::vector<LaunchRow>> page(const std::string& app, int64_t before, size_t limit);

  std::string history_path_;
  std::shared_ptr<const TotalsBoard> totals_;
  std::optional<History> reader_;  // opened on first use; dropped after an error, reopened next time
  bool reader_failed_ = false;     // logged once per run of failures, not once per query
  TextCache list_text_, stats_text_;
  int stall_ms_ = 0;  // PREWARM_FAULT_QUERY_STALL_MS, for tests
  IdleThread worker_;
  UniqueFd ready_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // Each user's jobs in order, users in turn: one who keeps the thread busy delays others by one
  // answer at most.
  std::map<uid_t, std::deque<QueryJob>> jobs_;
  std::optional<uid_t> last_uid_;
  std::vector<QueryAnswer> done_;
  std::vector<QueryJob> unqueued_;  // the loop's, not in jobs_ yet
  bool untaken_ = false;            // the loop's: answers were ready when its take() found the lock held
};

}  // namespace prewarm
