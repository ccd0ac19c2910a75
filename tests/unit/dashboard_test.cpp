// Tests the timing dashboard over a real loopback socket, reading a real history file: the pages and
// embedded scripts, the JSON API, the Prometheus metrics, the Host check against DNS rebinding,
// listen addresses, a port already taken, and that the server is gone once the Dashboard is.
#include "prewarmd/dashboard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

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

DashboardView::AppView app_view(const std::string& name, uint64_t image_bytes) {
  DashboardView::AppView v;
  v.app.config.name = name;
  v.app.status.state = "valid";
  v.image_bytes = image_bytes;
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
  std::unique_ptr<Dashboard> start_dashboard() {
    auto d = std::make_unique<Dashboard>(path_);
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
  EXPECT_EQ(calc["launches"], json({{"cold", 2}, {"restored", 3}, {"fallbacks", 1}}));
  EXPECT_EQ(calc["captures"], 1);
  EXPECT_EQ(calc["capture_failures"], 1);
  EXPECT_EQ(calc["image_bytes"], 5'000'000);
  EXPECT_EQ(calc["cold_ready_ms"]["n"], 2);
  EXPECT_EQ(calc["cold_ready_ms"]["p50"], 250.0);
  EXPECT_EQ(calc["restored_ready_ms"]["n"], 2);
  EXPECT_EQ(calc["restored_ready_ms"]["p50"], 40.0);
  EXPECT_DOUBLE_EQ(calc["speedup"].get<double>(), 250.0 / 40.0);
  EXPECT_DOUBLE_EQ(calc["hit_rate"].get<double>(), 0.6);
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
  EXPECT_EQ(j["app"]["launches"]["restored"], 3);
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
           R"(prewarm_launches_total{app="calc",mode="restored"} 3)",
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
  EXPECT_EQ(apps["apps"][0]["launches"]["restored"], 4);
  EXPECT_EQ(apps["apps"][0]["captures"], 2);
  EXPECT_EQ(apps["apps"][0]["image_bytes"], 6'000'000);
  EXPECT_EQ(get_json("/api/apps/notes")["launches"].size(), 1u);
  auto metrics = get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_TRUE(has_line(metrics->body, "prewarm_cache_bytes 6000000")) << metrics->body;
  EXPECT_TRUE(has_line(metrics->body, R"(prewarm_launches_total{app="calc",mode="restored"} 4)")) << metrics->body;
}

TEST_F(DashboardTest, AMissingHistoryIsAnErrorNotACrash) {
  Dashboard d(scratch_ + "/missing.db");
  d.publish(view_);
  auto url = d.start("127.0.0.1:0");
  ASSERT_TRUE(url.ok()) << url.error().describe();
  port_ = port_of(*url);
  for (const char* path : {"/api/apps", "/api/apps/calc", "/metrics"}) {
    auto res = get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 503) << path;
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
  Dashboard d(path_);
  auto r = d.start("nocolon");
  ASSERT_FALSE(r.ok());
  auto r2 = Dashboard(path_).start("192.0.2.1:0");  // not an address of this machine
  EXPECT_FALSE(r2.ok()) << *r2;
}

// Two prewarmd on one machine must not share the dashboard's port and split its requests.
TEST_F(DashboardTest, SecondDashboardOnTheSamePortFails) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  Dashboard first(path_);
  first.publish(view_);
  auto url = first.start(listen);
  ASSERT_TRUE(url.ok()) << url.error().describe();
  try {
    Dashboard second(path_);
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
  Dashboard d(path_);
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
      Dashboard d(path_);
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

}  // namespace
}  // namespace prewarm
