// Tests prewarmd's query thread (list and stats off the launch loop): what each user is shown of a
// published view, pages read from the thread's own connection to a real history database, answers
// handed back through the eventfd in the order asked, and a stop that does not wait for an answer
// held up by PREWARM_FAULT_QUERY_STALL_MS.
#include "prewarmd/queries.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::shared_ptr<const DashboardView::AppView> app_view(const std::string& name, uid_t uid, uint64_t images) {
  App a;
  a.config.name = name;
  a.config.uid = uid;
  a.config.argv = {"/bin/echo", name};
  a.config.cwd = "/";
  a.status.state = images ? policy::AppState::kValid : policy::AppState::kNone;
  return std::make_shared<const DashboardView::AppView>(DashboardView::AppView{a, images * 1000, true, images});
}

class QueriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-queries-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    path_ = scratch_ + "/history.db";
    DashboardView v;
    v.apps = {app_view("calc", 1000, 1), app_view("notes", 1001, 0)};
    v.store_bytes = 1000;
    v.store_budget = 1 << 30;
    view_ = std::make_shared<const DashboardView>(std::move(v));
  }
  void TearDown() override { fs::remove_all(scratch_); }

  QueryJob job(uid_t uid, json req) const { return QueryJob{7, {}, uid, 0, std::move(req), view_, {}, 0}; }

  // Launches of calc, cold then restored in turn, each ready.
  History history_with(int launches) {
    auto h = History::open(path_);
    EXPECT_TRUE(h.ok()) << h.error().describe();
    for (int i = 0; i < launches; ++i) {
      LaunchRow r;
      r.app = "calc";
      r.uid = 1000;
      r.time_ms = 1000 + i;
      r.pid = 100 + i;
      r.mode = i % 2 ? "restored" : "cold";
      auto id = h->add_launch(r);
      EXPECT_TRUE(id.ok()) << id.error().describe();
      EXPECT_TRUE(h->set_ready(*id, 10.0 + i, std::nullopt, std::nullopt).ok());
    }
    return std::move(*h);
  }

  std::string scratch_, path_;
  std::shared_ptr<const DashboardView> view_;
};

std::vector<std::string> names(const json& reply) {
  std::vector<std::string> out;
  for (const auto& a : reply.at("apps")) out.push_back(a.at("name"));
  return out;
}

TEST_F(QueriesTest, ListShowsEachUserTheirOwnAppsAndRootAll) {
  QueryServer q(path_, nullptr);
  QueryJob j = job(1000, {{"op", "list"}});
  j.capturing = {"calc"};
  j.launches_in_flight = 3;
  const json mine = json::parse(q.answer(j));
  ASSERT_EQ(names(mine), std::vector<std::string>{"calc"});
  EXPECT_EQ(mine["apps"][0]["state"], "capturing");
  EXPECT_EQ(mine["apps"][0]["images"], 1);
  EXPECT_EQ(mine["apps"][0]["image_bytes"], 1000);
  EXPECT_EQ(mine["apps"][0]["cold"], 0);  // no history: no launches, not an error
  EXPECT_EQ(mine["launches_in_flight"], 3);
  EXPECT_EQ(mine["store_budget"], 1 << 30);
  const json all = json::parse(q.answer(job(0, {{"op", "list"}})));
  EXPECT_EQ(names(all), (std::vector<std::string>{"calc", "notes"}));
  EXPECT_EQ(all["apps"][0]["state"], "valid");  // this job has no capture running
  EXPECT_EQ(names(json::parse(q.answer(job(1002, {{"op", "list"}})))), std::vector<std::string>{});
}

TEST_F(QueriesTest, StatsReadRecentRowsAndHistoryPagesFromTheThreadsOwnConnection) {
  History h = history_with(5);
  QueryServer q(path_, h.totals());
  const json s = json::parse(q.answer(job(1000, {{"op", "stats"}, {"recent", 2}})));
  ASSERT_EQ(names(s), std::vector<std::string>{"calc"});
  EXPECT_EQ(s["apps"][0]["launches"]["cold"], 3);
  EXPECT_EQ(s["apps"][0]["launches"]["restored"], 2);
  ASSERT_EQ(s["apps"][0]["recent"].size(), 2u);
  EXPECT_LT(s["apps"][0]["recent"][0]["id"], s["apps"][0]["recent"][1]["id"]);  // oldest first

  const json p1 = json::parse(q.answer(job(1000, {{"op", "stats"}, {"name", "calc"}, {"history", {{"limit", 3}}}})));
  ASSERT_EQ(p1["history"]["launches"].size(), 3u);
  const json cursor = p1["history"]["next_before"];
  ASSERT_TRUE(cursor.is_number());
  const json p2 = json::parse(
      q.answer(job(1000, {{"op", "stats"}, {"name", "calc"}, {"history", {{"limit", 3}, {"before", cursor}}}})));
  ASSERT_EQ(p2["history"]["launches"].size(), 2u);  // the two oldest, and no page before them
  EXPECT_TRUE(p2["history"]["next_before"].is_null());
  EXPECT_LT(p2["history"]["launches"][0]["id"], p1["history"]["launches"][2]["id"]);
}

TEST_F(QueriesTest, AnotherUsersAppIsAnsweredLikeAMissingOne) {
  History h = history_with(1);
  QueryServer q(path_, h.totals());
  const json theirs = json::parse(q.answer(job(1001, {{"op", "stats"}, {"name", "calc"}, {"history", json::object()}})));
  const json missing = json::parse(q.answer(job(1001, {{"op", "stats"}, {"name", "nosuch"}})));
  EXPECT_EQ(theirs["code"], "not_found");
  EXPECT_EQ(missing["code"], "not_found");
  EXPECT_EQ(json::parse(q.answer(job(1000, {{"op", "stats"}, {"history", json::object()}})))["code"], "usage");
}

// The thread's reader is opened on first use: a history database that cannot be read gives empty
// pages (the totals still answer), and once it can be read again the pages come back.
TEST_F(QueriesTest, AnUnreadableHistoryGivesEmptyPagesUntilItCanBeReadAgain) {
  History h = history_with(2);
  QueryServer q(path_, h.totals());
  const std::string aside = scratch_ + "/aside";
  fs::create_directory(aside);
  for (const char* sfx : {"", "-wal", "-shm"})
    if (fs::exists(path_ + sfx)) fs::rename(path_ + sfx, aside + "/history.db" + sfx);
  const json gone = json::parse(q.answer(job(1000, {{"op", "stats"}, {"recent", 5}})));
  EXPECT_EQ(gone["apps"][0]["launches"]["cold"], 1);
  EXPECT_EQ(gone["apps"][0]["recent"].size(), 0u);
  for (const char* sfx : {"", "-wal", "-shm"})
    if (fs::exists(aside + "/history.db" + sfx)) fs::rename(aside + "/history.db" + sfx, path_ + sfx);
  const json back = json::parse(q.answer(job(1000, {{"op", "stats"}, {"recent", 5}})));
  EXPECT_EQ(back["apps"][0]["recent"].size(), 2u);
}

// Each job's socket is one end of a socketpair: the thread writes the reply there itself.
struct Peer {
  UniqueFd ours, theirs;
  Peer() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ours = UniqueFd(sv[0]);
    theirs = UniqueFd(sv[1]);
  }
  // Until EOF, each read within 30 s (a bug fails the test instead of hanging it).
  std::string read_all() {
    std::string out;
    char buf[65536];
    for (;;) {
      pollfd p{ours.get(), POLLIN, 0};
      if (::poll(&p, 1, 30'000) != 1) {
        ADD_FAILURE() << "no EOF within 30 s";
        return out;
      }
      const ssize_t n = ::read(ours.get(), buf, sizeof buf);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
};

std::vector<QueryAnswer> wait_for_answers(QueryServer& q, size_t n) {
  std::vector<QueryAnswer> got;
  while (got.size() < n) {
    pollfd p{q.ready_fd(), POLLIN, 0};
    if (::poll(&p, 1, 30'000) != 1) {
      ADD_FAILURE() << "no answer within 30 s (" << got.size() << " of " << n << ")";
      break;
    }
    for (auto& a : q.take()) got.push_back(std::move(a));
  }
  return got;
}

TEST_F(QueriesTest, RepliesAreWrittenByTheThreadAndAnsweredInTheOrderAsked) {
  QueryServer q(path_, nullptr);
  ASSERT_TRUE(q.start().ok());
  std::vector<Peer> peers(20);
  for (uint64_t conn = 1; conn <= peers.size(); ++conn) {
    QueryJob j = job(0, {{"op", conn % 2 ? "list" : "stats"}});
    j.conn = conn;
    j.sock = std::move(peers[conn - 1].theirs);
    q.submit(std::move(j));
  }
  const auto got = wait_for_answers(q, peers.size());
  ASSERT_EQ(got.size(), peers.size());
  for (uint64_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].conn, i + 1);
    EXPECT_TRUE(got[i].sent) << got[i].error;
    const std::string reply = peers[i].read_all();  // the thread closed its end: EOF after the reply
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply.back(), '\n');
    EXPECT_TRUE(json::parse(reply)["ok"]) << reply;
  }
}

// A reply larger than the socket takes comes back part written; the rest writes as the peer reads.
TEST_F(QueriesTest, AReplyTheSocketCannotTakeWholeComesBackWithItsRest) {
  DashboardView v;
  for (int i = 0; i < 4000; ++i) v.apps.push_back(app_view("app" + std::to_string(10000 + i), 0, 0));
  view_ = std::make_shared<const DashboardView>(std::move(v));
  QueryServer q(path_, nullptr);
  ASSERT_TRUE(q.start().ok());
  Peer peer;
  const int small = 64 << 10;  // the kernel doubles it: far below the 4,000 apps' reply
  ASSERT_EQ(::setsockopt(peer.theirs.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(::setsockopt(peer.ours.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  QueryJob j = job(0, {{"op", "list"}});
  j.sock = UniqueFd(::fcntl(peer.theirs.get(), F_DUPFD_CLOEXEC, 0));
  q.submit(std::move(j));
  auto got = wait_for_answers(q, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].error.empty()) << got[0].error;
  ASSERT_FALSE(got[0].sent) << "a reply of 4,000 apps fit the socket buffer: nothing left to test";
  std::string reply;
  char buf[65536];
  for (bool done = false; !done;) {
    pollfd p{peer.ours.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30'000), 1) << "the reply stopped";
    ssize_t n = ::read(peer.ours.get(), buf, sizeof buf);
    ASSERT_GT(n, 0);
    reply.append(buf, static_cast<size_t>(n));
    auto more = got[0].rest.write_some(peer.theirs.get());
    ASSERT_TRUE(more.ok()) << more.error().describe();
    done = *more;
  }
  peer.theirs.reset();
  reply += peer.read_all();
  EXPECT_EQ(json::parse(reply)["apps"].size(), 4000u);
}

// The loop could not dup the socket (out of fds): the whole reply comes back for it to write.
TEST_F(QueriesTest, AJobWithoutASocketComesBackWhole) {
  QueryServer q(path_, nullptr);
  ASSERT_TRUE(q.start().ok());
  q.submit(job(0, {{"op", "list"}}));
  auto got = wait_for_answers(q, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].sent);
  EXPECT_TRUE(got[0].error.empty()) << got[0].error;
  Peer peer;
  auto done = got[0].rest.write_some(peer.theirs.get());
  ASSERT_TRUE(done.ok() && *done);
  peer.theirs.reset();
  EXPECT_EQ(json::parse(peer.read_all())["apps"].size(), 2u);
}

// Users are answered in turn: one who queued many waits behind others, not they behind it.
TEST_F(QueriesTest, UsersAreAnsweredInTurn) {
  ::setenv("PREWARM_FAULT_QUERY_STALL_MS", "20", 1);
  QueryServer q(path_, nullptr);
  ::unsetenv("PREWARM_FAULT_QUERY_STALL_MS");
  ASSERT_TRUE(q.start().ok());
  std::vector<Peer> peers(8);
  // Six of uid 1000's first (the thread takes the first at once), then two of uid 1001's.
  for (uint64_t conn = 1; conn <= 8; ++conn) {
    QueryJob j = job(conn <= 6 ? 1000 : 1001, {{"op", "list"}});
    j.conn = conn;
    j.sock = std::move(peers[conn - 1].theirs);
    q.submit(std::move(j));
  }
  std::vector<uint64_t> order;
  for (auto& a : wait_for_answers(q, 8)) order.push_back(a.conn);
  ASSERT_EQ(order.size(), 8u);
  const auto at = [&](uint64_t conn) { return std::find(order.begin(), order.end(), conn) - order.begin(); };
  EXPECT_LT(at(8), at(6)) << "uid 1001's second query waited for all of uid 1000's";
}

TEST_F(QueriesTest, APeerGoneBeforeItsReplyIsAnError) {
  QueryServer q(path_, nullptr);
  ASSERT_TRUE(q.start().ok());
  Peer peer;
  QueryJob j = job(0, {{"op", "list"}});
  j.sock = std::move(peer.theirs);
  peer.ours.reset();
  q.submit(std::move(j));
  auto got = wait_for_answers(q, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].sent);
  EXPECT_FALSE(got[0].error.empty());
}

TEST_F(QueriesTest, StoppingDoesNotWaitForAnAnswerHeldUp) {
  ::setenv("PREWARM_FAULT_QUERY_STALL_MS", "600000", 1);
  auto q = std::make_unique<QueryServer>(path_, nullptr);
  ::unsetenv("PREWARM_FAULT_QUERY_STALL_MS");
  ASSERT_TRUE(q->start().ok());
  q->submit(job(0, {{"op", "list"}}));
  pollfd p{q->ready_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0) << "the answer came back although it is held for 10 minutes";
  const auto t0 = std::chrono::steady_clock::now();
  q.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30)) << "the stop waited for the stall";
}

}  // namespace
}  // namespace prewarm
