// Tests the timing dashboard over a real loopback socket, reading a real history file: the pages and
// embedded scripts, the JSON API, the Prometheus metrics, the Host check against DNS rebinding,
// listen addresses, a port already taken, and that the server is gone once the Dashboard is; who
// sees which app's details, asked by processes running as two unprivileged users and root; the
// kernel's answer on who owns a peer socket; and slow clients against the deadlines and caps.
#include "prewarmd/dashboard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "snapshot/proc_stat.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

LaunchRow launch(const std::string& app, const std::string& mode, std::optional<double> ready_ms,
                 std::optional<RestorePhases> phases = std::nullopt) {
  LaunchRow r;
  r.app = app;
  r.uid = 1000;
  r.time_ms = 1'700'000'000'000;
  r.pid = 321;
  r.mode = mode;
  r.ready_ms = ready_ms;
  r.phases = phases;
  if (phases) r.bytes_read = 1 << 20;
  return r;
}

SnapshotRow snapshot(const std::string& app, bool ok, int64_t image_bytes, const std::string& error = "") {
  return SnapshotRow{0, app, 1'700'000'000'500, ok, 900, 80, image_bytes, error};
}

std::shared_ptr<DashboardView::AppView> app_view(const std::string& name, uint64_t image_bytes) {
  auto v = std::make_shared<DashboardView::AppView>();
  v->app.config.name = name;
  v->app.status.state = policy::AppState::kValid;
  v->image_bytes = image_bytes;
  return v;
}

int port_of(const std::string& url) {
  static const std::regex re(R"(^http://127\.0\.0\.1:(\d+)/$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return -1;
  return std::stoi(m[1]);
}

// A port that was free a moment ago, for the tests that need a fixed one.
int free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return -1;
  return ntohs(a.sin_port);
}

// The value of each series line ("name{labels}" -> value) of a Prometheus text exposition.
std::map<std::string, double> series_of(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// The two unprivileged users of the visibility tests; root is the test's own user.
constexpr uid_t kAlice = 65534, kBob = 65533;

bool is_root() { return ::geteuid() == 0; }

// A child process running `fn` as `uid` (no groups); what fn returns comes back through `out`.
struct Child {
  pid_t pid = -1;
  UniqueFd out;
};

Child spawn_as(uid_t uid, const std::function<std::string()>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)
      ::_exit(3);
    const std::string text = fn();
    ::_exit(write_all(p[1], text.data(), text.size()).ok() ? 0 : 4);
  }
  ::close(p[1]);
  if (pid < 0) {
    ::close(p[0]);
    return {};
  }
  return Child{pid, UniqueFd(p[0])};
}

// What the child returned; "" (and a test failure) if it did not exit 0.
std::string finish(Child& c) {
  if (c.pid < 0) {
    ADD_FAILURE() << "fork failed";
    return "";
  }
  auto text = read_fd(c.out.get());
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  c.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return text.ok() ? *text : "";
}

std::string as_user(uid_t uid, const std::function<std::string()>& fn) {
  Child c = spawn_as(uid, fn);
  return finish(c);
}

// A TCP connection to the loopback port (IPv6 ::1 if v6), blocking, with 10 s send/receive timeouts.
UniqueFd connect_to(int port, bool v6 = false) {
  UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) fd.reset();
  return fd;
}

// Everything the server sends back for `request` until it closes: plain sockets, no HTTP library,
// so that it also runs in a forked child.
std::string raw_exchange(int port, const std::string& request, bool v6 = false) {
  UniqueFd fd = connect_to(port, v6);
  if (!fd.valid() || !write_all(fd.get(), request.data(), request.size()).ok()) return "";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string raw_get(int port, const std::string& path, bool v6 = false) {
  const std::string host = (v6 ? "[::1]:" : "127.0.0.1:") + std::to_string(port);
  return raw_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n", v6);
}

struct HttpReply {
  int status = -1;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

HttpReply parse_reply(const std::string& text) {
  HttpReply r;
  const auto end = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(text.c_str() + 9);
  std::istringstream in(text.substr(0, end));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  r.body = text.substr(end + 4);
  return r;
}

json json_of(const HttpReply& r) { return json::parse(r.body, nullptr, false); }

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-dashboard-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    path_ = scratch_ + "/history.db";
    auto h = History::open(path_);
    ASSERT_TRUE(h.ok()) << h.error().describe();
    writer_ = std::move(*h);  // kept open, as the daemon keeps it

    // calc: two cold launches (one a fallback), three restores (one not ready yet), two captures.
    add(launch("calc", "cold", 250));
    const int64_t refused = add(launch("calc", "restored", std::nullopt));
    ASSERT_TRUE(writer_.set_fallback(refused, "stale", "/usr/lib/libfoo.so.1 changed since the snapshot").ok());
    ASSERT_TRUE(writer_.set_ready(refused, 1200, std::nullopt, std::nullopt).ok());
    add(launch("calc", "restored", 40, RestorePhases{5, 20, 10, 5}));
    add(launch("calc", "restored", 100, RestorePhases{10, 60, 20, 10}));
    add(launch("calc", "restored", std::nullopt));
    ASSERT_TRUE(writer_.add_snapshot(snapshot("calc", true, 5'000'000)).ok());
    ASSERT_TRUE(writer_.add_snapshot(snapshot("calc", false, 0, "calc has a GPU mapping")).ok());
    // notes: one cold launch.
    add(launch("notes", "cold", 3000));

    view_.apps = {app_view("calc", 5'000'000), app_view("notes", 0)};
    view_.store_bytes = 5'000'000;
    view_.store_budget = 1'000'000'000;
  }
  void TearDown() override { fs::remove_all(scratch_); }

  int64_t add(const LaunchRow& r) {
    auto id = writer_.add_launch(r);
    EXPECT_TRUE(id.ok()) << id.error().describe();
    return id.ok() ? *id : -1;
  }

  // A running dashboard over the history with view_ published; port_ is where it listens.
  std::unique_ptr<Dashboard> start_dashboard(DashboardOptions options = {}) {
    auto d = std::make_unique<Dashboard>(path_, writer_.totals(), options);
    d->publish(view_);
    auto url = d->start("127.0.0.1:0");
    EXPECT_TRUE(url.ok()) << url.error().describe();
    if (!url.ok()) return nullptr;
    port_ = port_of(*url);
    EXPECT_GT(port_, 0) << *url;
    return d;
  }

  httplib::Result get(const std::string& path, const httplib::Headers& headers = {}) {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_connection_timeout(5);
    cli.set_read_timeout(10);
    return cli.Get(path.c_str(), headers);
  }

  // GET `path` from a process running as `uid`.
  HttpReply get_as(uid_t uid, const std::string& path) {
    const int port = port_;
    return parse_reply(as_user(uid, [port, path] { return raw_get(port, path); }));
  }

  // calc belongs to alice, notes to bob; each app's state reason names a file in its user's home.
  void give_apps_to_two_users() {
    auto calc = std::make_shared<DashboardView::AppView>(*view_.apps[0]);
    calc->app.config.uid = kAlice;
    calc->app.config.argv = {"/home/alice/bin/calc", "--secret-flag"};
    calc->app.status.reason = "/home/alice/lib/libcalc.so changed";
    auto notes = std::make_shared<DashboardView::AppView>(*view_.apps[1]);
    notes->app.config.uid = kBob;
    notes->app.status.reason = "/home/bob/notes.db changed";
    view_.apps = {calc, notes};
    add(launch("notes", "cold", 3100));
    ASSERT_TRUE(writer_.set_fallback(add(launch("notes", "restored", std::nullopt)), "stale",
                                     "/home/bob/.local/lib/libnotes.so changed").ok());
  }

  // GET `path`, expecting 200 and a JSON body.
  json get_json(const std::string& path) {
    auto res = get(path);
    EXPECT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    if (!res) return nullptr;
    EXPECT_EQ(res->status, 200) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << path;
    auto j = json::parse(res->body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << path << ": " << res->body;
    return j;
  }

  std::string scratch_, path_;
  History writer_;
  DashboardView view_;
  int port_ = -1;
};

TEST_F(DashboardTest, ServesThePages) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  for (const char* path : {"/", "/app/calc"}) {
    auto res = get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/html", 0), 0u) << path;
    EXPECT_EQ(res->body.rfind("<!doctype html>", 0), 0u) << path;
  }
  EXPECT_NE(get("/")->body, get("/app/calc")->body) << "the index and the app page are different pages";
}

TEST_F(DashboardTest, ServesTheEmbeddedScripts) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  for (const char* path : {"/static/uPlot.iife.min.js", "/static/dashboard.js"}) {
    auto res = get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_GT(res->body.size(), 100u) << path;
    EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/javascript", 0), 0u)
        << path << ": " << res->get_header_value("Content-Type");
  }
  EXPECT_NE(get("/static/uPlot.iife.min.js")->body.find("uPlot"), std::string::npos);
  EXPECT_NE(get("/static/dashboard.js")->body.find("/api/apps"), std::string::npos);
  auto css = get("/static/dashboard.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->status, 200);
  EXPECT_EQ(css->get_header_value("Content-Type").rfind("text/css", 0), 0u);
}

TEST_F(DashboardTest, UnknownStaticFilesAre404) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  for (const char* path : {"/static/nope.js", "/static/", "/static/..%2Fhistory.db", "/nope"}) {
    auto res = get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 404) << path;
  }
}

TEST_F(DashboardTest, ApiAppsListsEveryPublishedApp) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const json j = get_json("/api/apps");
  ASSERT_TRUE(j["apps"].is_array()) << j.dump();
  ASSERT_EQ(j["apps"].size(), 2u) << j.dump();
  const json& calc = j["apps"][0];
  EXPECT_EQ(calc["name"], "calc");
  EXPECT_EQ(calc["state"], "valid");
  // The restore that is not ready yet is not counted until it is.
  EXPECT_EQ(calc["launches"], json({{"cold", 2}, {"restored", 2}, {"fallbacks", 1}, {"failed", 0}}));
  EXPECT_EQ(calc["captures"], 1);
  EXPECT_EQ(calc["capture_failures"], 1);
  EXPECT_EQ(calc["image_bytes"], 5'000'000);
  EXPECT_EQ(calc["cold_ready_ms"]["n"], 2);
  // Percentiles come from the sketch: within its relative error of the exact sample.
  const double e = ReadySketch::kRelativeError;
  EXPECT_NEAR(calc["cold_ready_ms"]["p50"].get<double>(), 250.0, 250 * e);
  EXPECT_EQ(calc["restored_ready_ms"]["n"], 2);
  EXPECT_NEAR(calc["restored_ready_ms"]["p50"].get<double>(), 40.0, 40 * e);
  EXPECT_NEAR(calc["speedup"].get<double>(), 250.0 / 40.0, 250.0 / 40.0 * 2.1 * e);
  EXPECT_DOUBLE_EQ(calc["hit_rate"].get<double>(), 0.5);
  EXPECT_EQ(calc["last_fallbacks"], json::array({"/usr/lib/libfoo.so.1 changed since the snapshot"}));
  const json& notes = j["apps"][1];
  EXPECT_EQ(notes["name"], "notes");
  EXPECT_EQ(notes["launches"]["cold"], 1);
  EXPECT_TRUE(notes["speedup"].is_null());
}

TEST_F(DashboardTest, ApiAppHasLaunchesWithPhasesAndSnapshots) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const json j = get_json("/api/apps/calc");
  EXPECT_EQ(j["app"]["name"], "calc");
  EXPECT_EQ(j["app"]["launches"]["restored"], 2);
  ASSERT_TRUE(j["launches"].is_array()) << j.dump();
  ASSERT_EQ(j["launches"].size(), 5u) << j.dump();
  const json& l = j["launches"];
  EXPECT_EQ(l[0]["mode"], "cold");
  EXPECT_EQ(l[0]["ready_ms"], 250.0);
  EXPECT_TRUE(l[0]["phases"].is_null());
  EXPECT_TRUE(l[0]["fallback"].is_null());
  EXPECT_EQ(l[1]["mode"], "cold");
  EXPECT_EQ(l[1]["fallback_kind"], "stale");
  EXPECT_EQ(l[2]["mode"], "restored");
  EXPECT_EQ(l[2]["ready_ms"], 40.0);
  EXPECT_EQ(l[2]["phases"], json({{"validate_ms", 5.0}, {"read_ms", 20.0}, {"map_ms", 10.0}, {"resume_ms", 5.0}}));
  EXPECT_EQ(l[2]["bytes_read"], 1 << 20);
  EXPECT_EQ(l[3]["phases"]["read_ms"], 60.0);
  EXPECT_TRUE(l[4]["ready_ms"].is_null());
  for (size_t i = 1; i < l.size(); ++i) EXPECT_GT(l[i]["id"], l[i - 1]["id"]) << "oldest first";

  ASSERT_TRUE(j["snapshots"].is_array());
  ASSERT_EQ(j["snapshots"].size(), 2u) << j.dump();
  EXPECT_EQ(j["snapshots"][0]["ok"], true);
  EXPECT_EQ(j["snapshots"][0]["image_bytes"], 5'000'000);
  EXPECT_TRUE(j["snapshots"][0]["error"].is_null());
  EXPECT_EQ(j["snapshots"][1]["ok"], false);
  EXPECT_EQ(j["snapshots"][1]["error"], "calc has a GPU mapping");

  const json notes = get_json("/api/apps/notes");
  EXPECT_EQ(notes["launches"].size(), 1u);
  EXPECT_TRUE(notes["snapshots"].empty());
}

// An app's page is one bounded page of its newest launches (oldest first, for the plots) with the
// cursor of the page before it; following the cursors walks every launch exactly once.
TEST_F(DashboardTest, ApiAppPagesThroughTheHistoryWithACursor) {
  const size_t total = History::kMaxPage * 2 + 7;
  for (size_t i = 0; i < total; ++i) add(launch("pages", "cold", static_cast<double>(i)));
  view_.apps.push_back(app_view("pages", 0));
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  std::vector<int64_t> seen;
  std::string path = "/api/apps/pages";
  for (int page = 0; page < 5; ++page) {
    const json j = get_json(path);
    ASSERT_TRUE(j["launches"].is_array()) << j.dump();
    EXPECT_LE(j["launches"].size(), History::kMaxPage);
    std::vector<int64_t> ids;
    for (const auto& l : j["launches"]) ids.push_back(l["id"].get<int64_t>());
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << "oldest first within a page";
    seen.insert(seen.begin(), ids.begin(), ids.end());
    EXPECT_EQ(j["app"]["launches"]["cold"], total) << "the totals do not depend on the page";
    if (j["next_before"].is_null()) break;
    path = "/api/apps/pages?before=" + std::to_string(j["next_before"].get<int64_t>());
  }
  ASSERT_EQ(seen.size(), total);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a launch on two pages";
  // A cursor that is not a number is the newest page, not an error.
  EXPECT_EQ(get_json("/api/apps/pages?before=x1")["launches"].size(), History::kMaxPage);
}

// /metrics counters never go down when the history prunes its oldest rows (Prometheus counters).
TEST_F(DashboardTest, MetricsCountersDoNotDropWhenRowsArePruned) {
  const std::string small = scratch_ + "/small.db";
  auto h = History::open(small, History::Limits{4, 2});
  ASSERT_TRUE(h.ok()) << h.error().describe();
  Dashboard d(small, h->totals());
  d.publish(DashboardView{{app_view("calc", 0)}, 0, 0});
  auto url = d.start("127.0.0.1:0");
  ASSERT_TRUE(url.ok());
  port_ = port_of(*url);
  double last_cold = -1, last_count = -1, last_ok = -1;
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(h->add_launch(launch("calc", "cold", 100 + i)).ok());
    ASSERT_TRUE(h->add_snapshot(snapshot("calc", true, 1)).ok());
    auto res = get("/metrics");
    ASSERT_TRUE(res && res->status == 200);
    const auto series = series_of(res->body);
    const double cold = series.at(R"(prewarm_launches_total{app="calc",mode="cold"})");
    const double count = series.at(R"(prewarm_time_to_ready_seconds_count{app="calc",mode="cold"})");
    const double ok = series.at(R"(prewarm_snapshots_total{app="calc",result="ok"})");
    EXPECT_EQ(cold, i + 1);
    EXPECT_GT(cold, last_cold);
    // The cached parts of both answers follow each new row.
    EXPECT_EQ(get_json("/api/apps")["apps"][0]["launches"]["cold"], i + 1);
    EXPECT_GT(count, last_count);
    EXPECT_GT(ok, last_ok);
    last_cold = cold, last_count = count, last_ok = ok;
  }
  EXPECT_EQ(get_json("/api/apps/calc")["launches"].size(), 4u) << "the rows are pruned";
}

TEST_F(DashboardTest, ApiUnknownAppIs404Json) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  auto res = get("/api/apps/unknown");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const json j = json::parse(res->body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << res->body;
  ASSERT_TRUE(j["error"].is_string()) << res->body;
  EXPECT_NE(j["error"].get<std::string>().find("unknown"), std::string::npos) << res->body;
}

TEST_F(DashboardTest, MetricsCountLaunchesFallbacksAndCache) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  auto res = get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u)
      << res->get_header_value("Content-Type");
  const std::string& m = res->body;
  for (const char* line : {
           R"(prewarm_launches_total{app="calc",mode="cold"} 2)",
           R"(prewarm_launches_total{app="calc",mode="restored"} 2)",
           R"(prewarm_launches_total{app="notes",mode="cold"} 1)",
           R"(prewarm_launches_total{app="notes",mode="restored"} 0)",
           R"(prewarm_fallbacks_total{app="calc",reason="stale"} 1)",
           R"(prewarm_snapshots_total{app="calc",result="ok"} 1)",
           R"(prewarm_snapshots_total{app="calc",result="failed"} 1)",
           R"(prewarm_image_bytes{app="calc"} 5000000)",
           "prewarm_cache_bytes 5000000",
           "prewarm_cache_budget_bytes 1000000000",
           "# TYPE prewarm_launches_total counter",
           "# TYPE prewarm_time_to_ready_seconds histogram",
       })
    EXPECT_TRUE(has_line(m, line)) << "no line '" << line << "' in\n" << m;
  EXPECT_EQ(m.find(R"(prewarm_fallbacks_total{app="notes")"), std::string::npos) << m;
}

// Buckets are cumulative and inclusive (le), and agree with _count and _sum: calc's cold launches
// were ready after 0.25 s and 1.2 s, its restores after 0.04 s and 0.1 s (each on a bucket edge
// or not), notes' one cold launch after 3 s.
TEST_F(DashboardTest, MetricsHistogramsMatchTheHistory) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  auto res = get("/metrics");
  ASSERT_TRUE(res && res->status == 200);
  const auto s = series_of(res->body);
  const std::vector<std::string> les = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};
  struct Expect {
    std::string labels;
    std::vector<double> buckets;
    double sum;
  };
  for (const Expect& e : {
           Expect{R"(app="calc",mode="cold")", {0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2}, 1.45},
           Expect{R"(app="calc",mode="restored")", {0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2}, 0.14},
           Expect{R"(app="notes",mode="cold")", {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}, 3},
           Expect{R"(app="notes",mode="restored")", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0},
       }) {
    for (size_t i = 0; i < les.size(); ++i) {
      const std::string key = "prewarm_time_to_ready_seconds_bucket{" + e.labels + ",le=\"" + les[i] + "\"}";
      ASSERT_TRUE(s.count(key)) << "no series " << key << " in\n" << res->body;
      EXPECT_EQ(s.at(key), e.buckets[i]) << key;
    }
    const std::string count = "prewarm_time_to_ready_seconds_count{" + e.labels + "}";
    const std::string sum = "prewarm_time_to_ready_seconds_sum{" + e.labels + "}";
    ASSERT_TRUE(s.count(count) && s.count(sum)) << res->body;
    EXPECT_EQ(s.at(count), e.buckets.back()) << count;
    EXPECT_NEAR(s.at(sum), e.sum, 1e-9) << sum;
  }
}

// Every line is a comment (# HELP / # TYPE) or `name{label="value",...} number`, and every series
// belongs to a declared metric family.
TEST_F(DashboardTest, MetricsAreValidExposition) {
  view_.apps.push_back(app_view(R"(we"ird\app)", 1));  // label values need escaping
  add(launch(R"(we"ird\app)", "cold", 10));
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  auto res = get("/metrics");
  ASSERT_TRUE(res && res->status == 200);
  static const std::regex sample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})? (\S+)$)re");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  std::map<std::string, std::string> families;
  std::istringstream in(res->body);
  size_t samples = 0;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, type)) {
      families[m[1]] = m[2];
      continue;
    }
    if (std::regex_match(line, m, help)) continue;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: '" << line << "'";
    const std::string value = m[3];
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    EXPECT_TRUE(*end == '\0' && std::isfinite(v)) << "value of '" << line << "'";
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!families.count(family) && family.size() > std::strlen(suffix) &&
          family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family.resize(family.size() - std::strlen(suffix));
    EXPECT_TRUE(families.count(family)) << "'" << line << "' comes before or without a # TYPE";
    samples++;
  }
  EXPECT_GT(samples, 50u);
  EXPECT_TRUE(has_line(res->body, R"(prewarm_launches_total{app="we\"ird\\app",mode="cold"} 1)")) << res->body;
}

TEST_F(DashboardTest, ForeignHostHeaderIsRefused) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const std::string port = std::to_string(port_);
  for (const std::string& host : std::vector<std::string>{"evil.example", "evil.example:" + port, "localhost.evil.example",
                                 "127.0.0.1.evil.example", ""}) {
    for (const char* path : {"/", "/api/apps", "/metrics", "/static/dashboard.js"}) {
      auto res = get(path, {{"Host", host}});
      ASSERT_TRUE(res) << httplib::to_string(res.error());
      EXPECT_EQ(res->status, 403) << "Host: " << host << " " << path;
      EXPECT_EQ(res->body.find("calc"), std::string::npos) << res->body;
    }
  }
  for (const std::string& host :
       std::vector<std::string>{"localhost:" + port, "localhost", "127.0.0.1:" + port, "[::1]:" + port}) {
    auto res = get("/api/apps", {{"Host", host}});
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200) << "Host: " << host;
  }
}

TEST_F(DashboardTest, PublishedViewAndNewRowsShowInTheNextRequest) {
  view_.apps = {app_view("calc", 5'000'000)};
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  EXPECT_EQ(get_json("/api/apps")["apps"].size(), 1u);
  auto notes = get("/api/apps/notes");
  ASSERT_TRUE(notes);
  EXPECT_EQ(notes->status, 404);

  // The daemon registers notes, records a launch and a capture of calc, and publishes.
  add(launch("calc", "restored", 20, RestorePhases{1, 2, 3, 4}));
  ASSERT_TRUE(writer_.add_snapshot(snapshot("calc", true, 6'000'000)).ok());
  d->publish(DashboardView{{app_view("calc", 6'000'000), app_view("notes", 0)}, 6'000'000, 1'000'000'000});

  const json apps = get_json("/api/apps");
  ASSERT_EQ(apps["apps"].size(), 2u);
  EXPECT_EQ(apps["apps"][0]["launches"]["restored"], 3);
  EXPECT_EQ(apps["apps"][0]["captures"], 2);
  EXPECT_EQ(apps["apps"][0]["image_bytes"], 6'000'000);
  EXPECT_EQ(get_json("/api/apps/notes")["launches"].size(), 1u);
  auto metrics = get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_TRUE(has_line(metrics->body, "prewarm_cache_bytes 6000000")) << metrics->body;
  EXPECT_TRUE(has_line(metrics->body, R"(prewarm_launches_total{app="calc",mode="restored"} 3)")) << metrics->body;
}

// The totals answer /api/apps and /metrics without the file; only an app's page of rows needs it.
TEST_F(DashboardTest, AMissingHistoryIsAnErrorNotACrash) {
  Dashboard d(scratch_ + "/missing.db", writer_.totals());
  d.publish(view_);
  auto url = d.start("127.0.0.1:0");
  ASSERT_TRUE(url.ok()) << url.error().describe();
  port_ = port_of(*url);
  for (const auto& [path, status] : {std::pair{"/api/apps", 200}, std::pair{"/api/apps/calc", 503}, std::pair{"/metrics", 200}}) {
    auto res = get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, status) << path;
  }
  EXPECT_FALSE(fs::exists(scratch_ + "/missing.db")) << "the dashboard created the history";
  auto page = get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
}

TEST(ParseListenAddress, HostAndPort) {
  auto v4 = parse_listen_address("127.0.0.1:9746");
  ASSERT_TRUE(v4.ok()) << v4.error().describe();
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 9746);
  auto v6 = parse_listen_address("[::1]:0");
  ASSERT_TRUE(v6.ok()) << v6.error().describe();
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 0);
  auto max = parse_listen_address("localhost:65535");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->second, 65535);
}

TEST(ParseListenAddress, RefusesWhatIsNotHostPort) {
  for (const std::string bad : {"nocolon", "host:", ":9746", "host:99999", "host:65536", "host:12a", "host:-1",
                                "host: 80", "host:99999999999999999999", "[::1]", ""}) {
    auto r = parse_listen_address(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "' parsed as " << r->first << " port " << r->second;
    EXPECT_NE(r.error().describe().find("'" + bad + "'"), std::string::npos) << r.error().describe();
  }
}

TEST_F(DashboardTest, StartOnABadAddressIsAnError) {
  Dashboard d(path_, writer_.totals());
  auto r = d.start("nocolon");
  ASSERT_FALSE(r.ok());
  auto r2 = Dashboard(path_, writer_.totals()).start("192.0.2.1:0");  // not an address of this machine
  EXPECT_FALSE(r2.ok()) << *r2;
}

// Two prewarmd on one machine must not share the dashboard's port and split its requests.
TEST_F(DashboardTest, SecondDashboardOnTheSamePortFails) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  Dashboard first(path_, writer_.totals());
  first.publish(view_);
  auto url = first.start(listen);
  ASSERT_TRUE(url.ok()) << url.error().describe();
  try {
    Dashboard second(path_, writer_.totals());
    auto r = second.start(listen);
    EXPECT_FALSE(r.ok()) << "a second dashboard also listens on " << *r;
    // If it did start, let its thread reach accept() before it is destroyed, so that this test
    // reports the shared port and not the hang of DestroyRightAfterStartDoesNotHang.
    if (r.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!r.ok()) {
      EXPECT_NE(r.error().describe().find(listen), std::string::npos) << r.error().describe();
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "start threw " << e.what();
  }
  port_ = port;
  auto res = get("/api/apps");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << "the first dashboard stopped serving";
}

TEST_F(DashboardTest, APortHeldByAnotherProgramFails) {
  UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(holder.valid());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  ASSERT_EQ(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string listen = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  Dashboard d(path_, writer_.totals());
  auto r = d.start(listen);
  EXPECT_FALSE(r.ok()) << "listening on " << *r << " although another socket holds it";
}

TEST_F(DashboardTest, DestructorStopsTheServer) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  auto before = get("/");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 200);
  d.reset();
  auto after = get("/");
  EXPECT_FALSE(after) << "still answering with " << after->status << " after the Dashboard was destroyed";
  if (!after) {
    EXPECT_EQ(after.error(), httplib::Error::Connection);
  }
}

// The daemon may fail right after starting the dashboard and destroy it at once: that must not
// hang, whether or not the server thread has started listening yet. Run in a child so that a hang
// is a failure, not a stuck test binary.
TEST_F(DashboardTest, DestroyRightAfterStartDoesNotHang) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (int i = 0; i < 200; ++i) {
      Dashboard d(path_, writer_.totals());
      if (!d.start("127.0.0.1:0").ok()) ::_exit(2);
    }
    ::_exit(0);
  }
  int status = 0;
  pid_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((done = ::waitpid(child, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (done == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    FAIL() << "destroying a Dashboard right after start() hung (200 tries, 10 s)";
  }
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "start() failed in the child";
}

// view_for is the one filter every route applies: owner and root see all, others what the admin
// chose, and a peer of unknown user is never taken for root.
TEST(ViewFor, OwnerAndRootSeeAllOthersWhatTheAdminChose) {
  DashboardView v;
  v.store_bytes = 7;
  for (auto [name, uid] : {std::pair{"calc", kAlice}, std::pair{"notes", kBob}, std::pair{"rootapp", uid_t{0}}}) {
    DashboardView::AppView a;
    a.app.config.name = name;
    a.app.config.uid = uid;
    a.app.config.argv = {"/home/x/bin/" + std::string(name)};
    a.app.status = {policy::AppState::kStale, std::string("/home/x/") + name + " changed"};
    a.image_bytes = 100;
    v.apps.push_back(std::make_shared<const DashboardView::AppView>(a));
  }
  auto names = [](const DashboardView& w) {
    std::vector<std::string> out;
    for (const auto& a : w.apps) out.push_back(a->app.config.name + (a->details ? "+" : "-"));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(view_for(v, 0, OthersSee::kNothing)), (V{"calc+", "notes+", "rootapp+"}));
  EXPECT_EQ(names(view_for(v, kAlice, OthersSee::kNothing)), (V{"calc+"}));
  EXPECT_EQ(names(view_for(v, kBob, OthersSee::kNothing)), (V{"notes+"}));
  EXPECT_EQ(names(view_for(v, std::nullopt, OthersSee::kNothing)), V{});
  EXPECT_EQ(names(view_for(v, 12345, OthersSee::kNothing)), V{});
  EXPECT_EQ(names(view_for(v, kAlice, OthersSee::kTimings)), (V{"calc+", "notes-", "rootapp-"}));
  EXPECT_EQ(names(view_for(v, std::nullopt, OthersSee::kTimings)), (V{"calc-", "notes-", "rootapp-"}));
  EXPECT_EQ(view_for(v, kBob, OthersSee::kNothing).store_bytes, 7u);

  const auto t = view_for(v, kBob, OthersSee::kTimings);
  const auto& calc = *t.apps[0];
  EXPECT_EQ(calc.app.config.name, "calc");
  EXPECT_EQ(calc.image_bytes, 100u);
  EXPECT_TRUE(calc.app.config.argv.empty());
  EXPECT_EQ(calc.app.config.uid, 0u) << "the owner's uid is not for others either";
  EXPECT_TRUE(calc.app.status.reason.empty());
  EXPECT_EQ(calc.app.status.state, policy::AppState::kNone);
  const auto& own = *t.apps[1];
  EXPECT_EQ(own.app.status.reason, "/home/x/notes changed");
  EXPECT_EQ(own.app.config.argv, std::vector<std::string>{"/home/x/bin/notes"});
}

// The kernel says who owns the other end of a loopback connection, over IPv4 and IPv6.
TEST(PeerUid, IsTheUserOwningTheClientSocket) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  for (bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    UniqueFd lst(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(lst.valid());
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
      auto& a = reinterpret_cast<sockaddr_in6&>(ss);
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in&>(ss);
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof a;
    }
    if (::bind(lst.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      if (v6) GTEST_SKIP() << "no ::1 here";
      FAIL() << "bind: " << std::strerror(errno);
    }
    ASSERT_EQ(::listen(lst.get(), 4), 0);
    ASSERT_EQ(::getsockname(lst.get(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
    const int port = ntohs(v6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port : reinterpret_cast<sockaddr_in&>(ss).sin_port);

    // Alice connects and holds the connection until told to go.
    int go[2];
    ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
    Child c = spawn_as(kAlice, [&] {
      ::close(go[1]);
      UniqueFd fd = connect_to(port, v6);
      char b;
      const bool ok = fd.valid() && ::read(go[0], &b, 1) >= 0;
      return std::string(ok ? "ok" : "no connection");
    });
    ::close(go[0]);
    UniqueFd alice(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(alice.valid());
    EXPECT_EQ(peer_uid(alice.get()), std::optional<uid_t>(kAlice));
    ASSERT_EQ(::write(go[1], "x", 1), 1);
    ::close(go[1]);
    EXPECT_EQ(finish(c), "ok");

    UniqueFd mine = connect_to(port, v6);
    ASSERT_TRUE(mine.valid());
    UniqueFd root(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(root.valid());
    EXPECT_EQ(peer_uid(root.get()), std::optional<uid_t>(0));
    EXPECT_EQ(peer_uid(mine.get()), std::optional<uid_t>(0)) << "the server end belongs to root as well";
  }
}

// A client that closed at once leaves a time-wait socket, which the kernel reports as uid 0: that
// must be an unknown peer, not root. Not sockets, or not TCP, have no peer user either.
TEST(PeerUid, AClientThatAlreadyClosedIsUnknownNotRoot) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  UniqueFd lst(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(lst.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lst.get(), 4), 0);
  ASSERT_EQ(::getsockname(lst.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  EXPECT_EQ(as_user(kAlice, [port] {
              UniqueFd fd = connect_to(port);
              const std::string req = "GET /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
              return std::string(fd.valid() && write_all(fd.get(), req.data(), req.size()).ok() ? "sent" : "failed");
            }),
            "sent");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the FIN and its ACK
  UniqueFd gone(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(gone.valid());
  EXPECT_EQ(peer_uid(gone.get()), std::nullopt);

  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd s0(sv[0]), s1(sv[1]);
  EXPECT_EQ(peer_uid(s0.get()), std::nullopt);
  EXPECT_EQ(peer_uid(lst.get()), std::nullopt) << "a listener has no peer";
}

// Each user sees their own app's details and nothing of the other's: not in the list, 404 for its
// page exactly as for an app that does not exist, no series in /metrics. Root sees both.
TEST_F(DashboardTest, EachUserSeesOnlyTheirOwnApps) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  struct Who {
    uid_t uid;
    std::string own, other, own_secret, other_secret;
  };
  for (const Who& w : {Who{kAlice, "calc", "notes", "/home/alice/lib/libcalc.so", "/home/bob"},
                       Who{kBob, "notes", "calc", "/home/bob/notes.db", "/home/alice"}}) {
    SCOPED_TRACE("as uid " + std::to_string(w.uid));
    const HttpReply list = get_as(w.uid, "/api/apps");
    ASSERT_EQ(list.status, 200) << list.body;
    const json apps = json_of(list)["apps"];
    ASSERT_EQ(apps.size(), 1u) << list.body;
    EXPECT_EQ(apps[0]["name"], w.own);
    EXPECT_EQ(apps[0]["reason"].get<std::string>().rfind(w.own_secret, 0), 0u) << list.body;
    EXPECT_EQ(list.body.find(w.other_secret), std::string::npos) << list.body;
    EXPECT_EQ(list.body.find("\"" + w.other + "\""), std::string::npos) << list.body;

    const HttpReply own = get_as(w.uid, "/api/apps/" + w.own);
    ASSERT_EQ(own.status, 200) << own.body;
    EXPECT_EQ(json_of(own)["launches"][0]["pid"], 321) << "the owner sees the pids";

    const HttpReply other = get_as(w.uid, "/api/apps/" + w.other);
    const HttpReply missing = get_as(w.uid, "/api/apps/" + w.other + "x");
    EXPECT_EQ(other.status, 404);
    EXPECT_EQ(missing.status, 404);
    std::string expected = missing.body;
    expected.replace(expected.find(w.other + "x"), w.other.size() + 1, w.other);
    EXPECT_EQ(other.body, expected) << "another user's app must look unregistered";
    auto other_headers = other.headers, missing_headers = missing.headers;
    other_headers.erase("content-length");
    missing_headers.erase("content-length");
    EXPECT_EQ(other_headers, missing_headers);

    const HttpReply m = get_as(w.uid, "/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_TRUE(has_line(m.body, "prewarm_launches_total{app=\"" + w.own + "\",mode=\"cold\"} " +
                                     (w.own == "calc" ? "2" : "3")))
        << m.body;
    EXPECT_EQ(m.body.find("app=\"" + w.other + "\""), std::string::npos) << m.body;
    EXPECT_TRUE(has_line(m.body, "prewarm_cache_bytes 5000000")) << m.body;
  }
  EXPECT_TRUE(has_line(get_as(kBob, "/metrics").body, R"(prewarm_fallbacks_total{app="notes",reason="stale"} 1)"));
  EXPECT_NE(get_as(kBob, "/api/apps/notes").body.find("/home/bob/.local/lib/libnotes.so"), std::string::npos);

  // Root (this process) sees both, with their reasons.
  const json all = get_json("/api/apps");
  ASSERT_EQ(all["apps"].size(), 2u) << all.dump();
  EXPECT_EQ(all["apps"][0]["reason"], "/home/alice/lib/libcalc.so changed");
  EXPECT_EQ(all["apps"][1]["reason"], "/home/bob/notes.db changed");
  EXPECT_EQ(get_json("/api/apps/notes")["launches"].size(), 3u);
}

// With OthersSee::kTimings another user's app is listed with its name and numbers, and nothing
// that names a file or a process.
TEST_F(DashboardTest, OthersSeeNamesAndTimingsOnlyWhenTheAdminSaysSo) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  auto d = start_dashboard(DashboardOptions{.others = OthersSee::kTimings});
  ASSERT_TRUE(d);
  const std::vector<std::string> secrets = {"/home/alice", "libfoo", "GPU mapping", "secret-flag", "/usr/lib"};

  const HttpReply list = get_as(kBob, "/api/apps");
  ASSERT_EQ(list.status, 200) << list.body;
  for (const auto& s : secrets) EXPECT_EQ(list.body.find(s), std::string::npos) << s << " in " << list.body;
  const json apps = json_of(list)["apps"];
  ASSERT_EQ(apps.size(), 2u) << list.body;
  const json& calc = apps[0];
  EXPECT_EQ(calc["name"], "calc");
  // The restore that is not ready yet is not counted until it is.
  EXPECT_EQ(calc["launches"], json({{"cold", 2}, {"restored", 2}, {"fallbacks", 1}, {"failed", 0}}));
  EXPECT_EQ(calc["cold_ready_ms"]["p50"], 250.0);
  EXPECT_EQ(calc["restored_ready_ms"]["p50"], 40.0);
  EXPECT_EQ(calc["image_bytes"], 5'000'000);
  EXPECT_TRUE(calc["state"].is_null());
  EXPECT_TRUE(calc["reason"].is_null());
  EXPECT_EQ(calc["last_fallbacks"], json::array());
  EXPECT_EQ(apps[1]["reason"], "/home/bob/notes.db changed") << "bob's own app in full";

  const HttpReply page = get_as(kBob, "/api/apps/calc");
  ASSERT_EQ(page.status, 200) << page.body;
  for (const auto& s : secrets) EXPECT_EQ(page.body.find(s), std::string::npos) << s << " in " << page.body;
  const json j = json_of(page);
  ASSERT_EQ(j["launches"].size(), 5u);
  EXPECT_EQ(j["launches"][0]["ready_ms"], 250.0);
  EXPECT_EQ(j["launches"][2]["phases"]["read_ms"], 20.0);
  for (const json& l : j["launches"]) {
    EXPECT_TRUE(l["pid"].is_null()) << l.dump();
    EXPECT_TRUE(l["fallback"].is_null()) << l.dump();
    EXPECT_TRUE(l["fallback_kind"].is_null()) << l.dump();
  }
  ASSERT_EQ(j["snapshots"].size(), 2u);
  EXPECT_EQ(j["snapshots"][1]["ok"], false);
  EXPECT_TRUE(j["snapshots"][1]["error"].is_null());

  const HttpReply m = get_as(kBob, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_TRUE(has_line(m.body, R"(prewarm_launches_total{app="calc",mode="cold"} 2)")) << m.body;
  EXPECT_TRUE(has_line(m.body, R"(prewarm_time_to_ready_seconds_count{app="calc",mode="restored"} 2)")) << m.body;
  EXPECT_EQ(m.body.find(R"(prewarm_fallbacks_total{app="calc")"), std::string::npos) << m.body;
  EXPECT_TRUE(has_line(m.body, R"(prewarm_fallbacks_total{app="notes",reason="stale"} 1)")) << m.body;

  // Root still sees every detail.
  EXPECT_EQ(get_json("/api/apps/calc")["launches"][1]["fallback"], "/usr/lib/libfoo.so.1 changed since the snapshot");
}

// Over IPv6 the viewer is found the same way.
TEST_F(DashboardTest, UsersAreToldApartOverIPv6Too) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  Dashboard d(path_, writer_.totals());
  d.publish(view_);
  auto url = d.start("[::1]:0");
  if (!url.ok()) GTEST_SKIP() << "no ::1 here: " << url.error().describe();
  const auto colon = url->rfind(':');
  const int port = std::atoi(url->c_str() + colon + 1);
  const HttpReply r = parse_reply(as_user(kAlice, [port] { return raw_get(port, "/api/apps", true); }));
  ASSERT_EQ(r.status, 200) << r.body;
  const json apps = json_of(r)["apps"];
  ASSERT_EQ(apps.size(), 1u) << r.body;
  EXPECT_EQ(apps[0]["name"], "calc");
}

// Bound to all addresses of both families, an IPv4 client shows as a v4-mapped IPv6 peer: the
// kernel is asked about the IPv4 socket behind it.
TEST_F(DashboardTest, UsersAreToldApartOnADualStackSocket) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  Dashboard d(path_, writer_.totals());
  d.publish(view_);
  auto url = d.start("[::]:0");
  if (!url.ok()) GTEST_SKIP() << "no IPv6 here: " << url.error().describe();
  const int port = std::atoi(url->c_str() + url->rfind(':') + 1);
  if (!connect_to(port).valid()) GTEST_SKIP() << "the IPv6 socket does not take IPv4 here (bindv6only)";
  const HttpReply r = parse_reply(as_user(kBob, [port] { return raw_get(port, "/api/apps"); }));
  ASSERT_EQ(r.status, 200) << r.body;
  const json apps = json_of(r)["apps"];
  ASSERT_EQ(apps.size(), 1u) << r.body;
  EXPECT_EQ(apps[0]["name"], "notes");
}

// One request per connection: the reply says Connection: close and the server closes, even when
// the client pipelined a second request.
TEST_F(DashboardTest, EveryReplyClosesItsConnection) {
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const std::string host = "Host: 127.0.0.1:" + std::to_string(port_) + "\r\n";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string text = raw_exchange(port_, "GET /api/apps HTTP/1.1\r\n" + host + "\r\nGET /metrics HTTP/1.1\r\n" + host + "\r\n");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5)) << "the server kept the connection";
  const HttpReply r = parse_reply(text);
  EXPECT_EQ(r.status, 200) << text;
  EXPECT_EQ(r.headers.count("connection") ? r.headers.at("connection") : "", "close");
  EXPECT_EQ(text.find("HTTP/1.1", 1), std::string::npos) << "a second reply on one connection:\n" << text;
  ASSERT_TRUE(r.headers.count("content-length")) << text;
  EXPECT_EQ(r.body.size(), std::stoul(r.headers.at("content-length")));
}

// The head deadline counts from accept, not from the last byte: a client sending a byte every
// 100 ms gets 408 once the (here 500 ms) deadline has passed.
TEST_F(DashboardTest, AHeadTrickledByteByByteMeetsOneDeadline) {
  DashboardOptions o;
  o.head_deadline = std::chrono::milliseconds(500);
  auto d = start_dashboard(o);
  ASSERT_TRUE(d);
  UniqueFd fd = connect_to(port_);
  ASSERT_TRUE(fd.valid());
  const std::string head = "GET /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  const auto t0 = std::chrono::steady_clock::now();
  std::string got;
  for (size_t i = 0; i < head.size() && got.empty(); ++i) {
    if (::send(fd.get(), &head[i], 1, MSG_NOSIGNAL) != 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    char buf[512];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.assign(buf, static_cast<size_t>(n));
  }
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(got.rfind("HTTP/1.1 408 ", 0), 0u) << "got '" << got << "'";
  EXPECT_LT(took, std::chrono::milliseconds(2500)) << "the deadline restarted with the bytes";
  EXPECT_GE(took, std::chrono::milliseconds(400));
}

// A user's connections beyond the cap are refused at once; once they are closed the user gets in.
TEST_F(DashboardTest, AUsersConnectionsAreCapped) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const int port = port_;
  const std::string out = as_user(kAlice, [port] {
    std::vector<UniqueFd> idle;
    for (int i = 0; i < 8; ++i) idle.push_back(connect_to(port));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accepted and counted
    const int over = parse_reply(raw_get(port, "/api/apps")).status;
    idle.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const int after = parse_reply(raw_get(port, "/api/apps")).status;
    return std::to_string(over) + " " + std::to_string(after);
  });
  EXPECT_EQ(out, "503 200");
}

// 40 clients of alice trickle request heads, one byte every 500 ms, for 8 s, reconnecting whenever
// the server drops one. Meanwhile root's and bob's requests are answered, within the head deadline
// plus slack and while the slow clients are still at it; and no slow connection outlives the
// deadline by much.
TEST_F(DashboardTest, SlowClientsDoNotHoldUpOthers) {
  if (!is_root()) GTEST_SKIP() << "needs root to run clients as other users";
  give_apps_to_two_users();
  auto d = start_dashboard();
  ASSERT_TRUE(d);
  const int port = port_;
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  Child slow = spawn_as(kAlice, [&] {
    ::close(ready[0]);
    using Clock = std::chrono::steady_clock;
    struct Slow {
      UniqueFd fd;
      Clock::time_point opened;
      size_t sent = 0;
    };
    const std::string head = "GET /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa";
    std::vector<Slow> conns(40);
    auto open = [&](Slow& s) {
      s.fd = connect_to(port);
      s.opened = Clock::now();
      s.sent = 0;
    };
    for (auto& s : conns) open(s);
    if (::write(ready[1], "r", 1) != 1) return std::string("cannot signal");
    ::close(ready[1]);
    const auto end = Clock::now() + std::chrono::seconds(8);
    int dropped = 0;
    Clock::duration longest{};
    while (Clock::now() < end) {
      for (auto& s : conns) {
        char buf[256];
        const ssize_t n = s.fd.valid() ? ::recv(s.fd.get(), buf, sizeof buf, MSG_DONTWAIT) : 0;
        const bool closed = !s.fd.valid() || n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
                            ::send(s.fd.get(), &head[s.sent++ % head.size()], 1, MSG_NOSIGNAL) != 1;
        if (closed) {
          dropped++;
          longest = std::max(longest, Clock::now() - s.opened);
          open(s);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    for (auto& s : conns)
      if (s.fd.valid()) longest = std::max(longest, Clock::now() - s.opened);
    return std::to_string(dropped) + " " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(longest).count());
  });
  ::close(ready[1]);
  pollfd p{ready[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20'000), 1) << "the slow clients did not connect";
  ::close(ready[0]);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // all of alice's slots are taken now

  const auto t0 = std::chrono::steady_clock::now();
  auto res = get("/api/apps");
  const auto root_took = std::chrono::steady_clock::now() - t0;
  const HttpReply bob = get_as(kBob, "/api/apps");
  const auto both_took = std::chrono::steady_clock::now() - t0;
  int status = 0;
  const bool slow_still_running = ::waitpid(slow.pid, &status, WNOHANG) == 0;

  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(bob.status, 200) << bob.body;
  EXPECT_EQ(json_of(bob)["apps"].size(), 1u) << bob.body;
  EXPECT_LT(root_took, std::chrono::seconds(2) + std::chrono::seconds(2));
  EXPECT_LT(both_took, std::chrono::seconds(2) + std::chrono::seconds(3));
  EXPECT_TRUE(slow_still_running) << "the requests finished only after the slow clients were done";

  if (!slow_still_running) {
    // Reaped already: its output is in the pipe still.
    slow.pid = -1;
    return;
  }
  std::istringstream out(finish(slow));
  int dropped = -1;
  long longest_ms = -1;
  out >> dropped >> longest_ms;
  EXPECT_GE(dropped, 32) << "connections over alice's cap were not refused";
  EXPECT_GT(longest_ms, 0);
  EXPECT_LT(longest_ms, 6000) << "a trickling client was held past the head deadline";
}

// Out of fds, accept fails while the listener stays readable: the server must wait, not spin.
TEST_F(DashboardTest, OutOfFdsTheServerDoesNotSpin) {
  int port_pipe[2];
  ASSERT_EQ(::pipe2(port_pipe, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Dashboard d(path_, writer_.totals());
    auto url = d.start("127.0.0.1:0");
    if (!url.ok()) ::_exit(2);
    const int port = port_of(*url);
    // The lowest free fd is the next one: a limit there leaves no fd for accept.
    const int next = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::close(next);
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = static_cast<rlim_t>(next);
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0 || ::write(port_pipe[1], &port, sizeof port) != sizeof port) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(port_pipe[1]);
  int port = -1;
  pollfd p{port_pipe[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  ASSERT_EQ(::read(port_pipe[0], &port, sizeof port), static_cast<ssize_t>(sizeof port));
  ::close(port_pipe[0]);
  auto cpu_ticks = [child] {
    auto stat = read_proc_stat(child, 15);
    if (!stat.ok()) return -1L;
    auto utime = stat->number(14), stime = stat->number(15);
    return utime && stime ? static_cast<long>(*utime + *stime) : -1L;
  };
  std::vector<UniqueFd> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(connect_to(port));  // completed by the kernel, never accepted
  const long before = cpu_ticks();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long after = cpu_ticks();
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_GE(before, 0);
  // Spinning took 33 ticks a second here on a loaded machine; waiting takes next to none.
  EXPECT_LT(after - before, ::sysconf(_SC_CLK_TCK) / 10) << "CPU ticks used in 2 s while accept failed";
}

}  // namespace
}  // namespace prewarm
