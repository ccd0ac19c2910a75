#include "prewarmd/dashboard.h"

#include <httplib.h>

#include <sys/socket.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "prewarmd/protocol.h"
#include "prewarmd/stats.h"
#include "prewarmd/web_assets.h"

namespace prewarm {
namespace {

using nlohmann::json;

constexpr size_t kPageLaunches = 500, kPageSnapshots = 200;
constexpr double kReadyBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void reply_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(proto::json_text(body), "application/json");
}

void reply_asset(httplib::Response& res, const char* path) {
  const WebAsset* a = find_web_asset(path);
  if (!a) {
    res.status = 404;
    return;
  }
  res.set_content(std::string(a->body), std::string(a->content_type));
}

// The host part of a Host header: "name:port", "[v6]:port" or "name".
std::string host_of(const std::string& h) {
  if (!h.empty() && h.front() == '[') {
    const auto end = h.find(']');
    return end == std::string::npos ? h : h.substr(1, end - 1);
  }
  return h.substr(0, h.find(':'));
}

}  // namespace

Result<std::pair<std::string, int>> parse_listen_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return data_error("listen address '" + text + "' is not HOST:PORT (e.g. 127.0.0.1:9746)");
  std::string host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return data_error("listen address '" + text + "' has an invalid port");
    port = port * 10 + (c - '0');
  }
  if (port > 65535) return data_error("listen address '" + text + "' has an invalid port");
  return std::pair{host, port};
}

Result<std::string> render_metrics(const DashboardView& view, const History& history) {
  std::string launches, buckets, fallbacks, images, snapshots;
  for (const auto& av : view.apps) {
    const std::string app = "app=\"" + label(av.app.config.name) + "\"";
    PW_ASSIGN(AppSummary s, history.summary(av.app.config.name));
    launches += "prewarm_launches_total{" + app + ",mode=\"cold\"} " + std::to_string(s.cold) + "\n";
    launches += "prewarm_launches_total{" + app + ",mode=\"restored\"} " + std::to_string(s.restored) + "\n";
    snapshots += "prewarm_snapshots_total{" + app + ",result=\"ok\"} " + std::to_string(s.captures) + "\n";
    snapshots += "prewarm_snapshots_total{" + app + ",result=\"failed\"} " + std::to_string(s.capture_failures) + "\n";
    images += "prewarm_image_bytes{" + app + "} " + std::to_string(av.image_bytes) + "\n";
    PW_ASSIGN(auto times, history.ready_times(av.app.config.name));
    for (const char* mode : {"cold", "restored"}) {
      const std::string labels = app + ",mode=\"" + mode + "\"";
      uint64_t counts[std::size(kReadyBuckets)] = {}, total = 0;
      double sum = 0;
      for (const auto& [m, ms] : times) {
        if (m != mode) continue;
        const double sec = ms / 1000;
        for (size_t b = 0; b < std::size(kReadyBuckets); ++b) counts[b] += sec <= kReadyBuckets[b];
        total++, sum += sec;
      }
      for (size_t b = 0; b < std::size(kReadyBuckets); ++b)
        buckets += "prewarm_time_to_ready_seconds_bucket{" + labels + ",le=\"" + number(kReadyBuckets[b]) + "\"} " + std::to_string(counts[b]) + "\n";
      buckets += "prewarm_time_to_ready_seconds_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(total) + "\n";
      buckets += "prewarm_time_to_ready_seconds_sum{" + labels + "} " + number(sum) + "\n";
      buckets += "prewarm_time_to_ready_seconds_count{" + labels + "} " + std::to_string(total) + "\n";
    }
    PW_ASSIGN(auto by_kind, history.fallback_counts(av.app.config.name));
    for (const auto& [kind, n] : by_kind)
      fallbacks += "prewarm_fallbacks_total{" + app + ",reason=\"" + label(kind) + "\"} " + std::to_string(n) + "\n";
  }
  return "# HELP prewarm_launches_total Launches recorded in the history, by app and mode.\n"
         "# TYPE prewarm_launches_total counter\n" + launches +
         "# HELP prewarm_time_to_ready_seconds Time from the launch to the app's readiness.\n"
         "# TYPE prewarm_time_to_ready_seconds histogram\n" + buckets +
         "# HELP prewarm_fallbacks_total Cold launches although a snapshot could have served, by reason.\n"
         "# TYPE prewarm_fallbacks_total counter\n" + fallbacks +
         "# HELP prewarm_snapshots_total Captures by app and result.\n"
         "# TYPE prewarm_snapshots_total counter\n" + snapshots +
         "# HELP prewarm_image_bytes Bytes of the app's images in the store.\n"
         "# TYPE prewarm_image_bytes gauge\n" + images +
         "# HELP prewarm_cache_bytes Bytes of all images in the store.\n"
         "# TYPE prewarm_cache_bytes gauge\n"
         "prewarm_cache_bytes " + std::to_string(view.store_bytes) + "\n"
         "# HELP prewarm_cache_budget_bytes The store's size budget.\n"
         "# TYPE prewarm_cache_budget_bytes gauge\n"
         "prewarm_cache_budget_bytes " + std::to_string(view.store_budget) + "\n";
}

Dashboard::Dashboard(std::string history_path) : history_path_(std::move(history_path)) {}

Dashboard::~Dashboard() {
  if (server_ && thread_.joinable()) {
    // stop() only stops a running server: wait for it to run, or for its thread to give up.
    while (!listen_done_ && !server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server_->stop();
  }
  if (thread_.joinable()) thread_.join();
}

void Dashboard::publish(DashboardView view) {
  std::lock_guard lock(mu_);
  view_ = std::move(view);
}

DashboardView Dashboard::view() const {
  std::lock_guard lock(mu_);
  return view_;
}

Result<std::string> Dashboard::start(const std::string& listen) {
  PW_ASSIGN(auto addr, parse_listen_address(listen));
  server_ = std::make_unique<httplib::Server>();
  // httplib's default adds SO_REUSEPORT, with which a second prewarmd would share the port.
  server_->set_socket_options([](socket_t sock) {
    int one = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  });
  routes();
  // A remote page must not read the dashboard through a DNS name rebound to loopback: only Host
  // headers naming the listen address or loopback are served (any host when bound to all).
  const std::string& host = addr.first;
  if (host != "0.0.0.0" && host != "::") allowed_hosts_ = {host, "localhost", "127.0.0.1", "::1"};
  int port = addr.second;
  if (port == 0) port = server_->bind_to_any_port(host);
  else if (!server_->bind_to_port(host, port)) port = -1;
  if (port < 0) return data_error("cannot listen on " + listen + " for the dashboard (address in use or not local?)");
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_done_ = true;
  });
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/";
}

void Dashboard::routes() {
  httplib::Server& s = *server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (allowed_hosts_.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string h = host_of(req.get_header_value("Host"));
    for (const auto& a : allowed_hosts_)
      if (h == a) return httplib::Server::HandlerResponse::Unhandled;
    res.status = 403;
    res.set_content("host not allowed\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) { reply_asset(res, "page:index"); });
  s.Get(R"(/app/[^/]+)", [](const httplib::Request&, httplib::Response& res) { reply_asset(res, "page:app"); });
  s.Get(R"(/static/[A-Za-z0-9_.-]+)", [](const httplib::Request& req, httplib::Response& res) {
    reply_asset(res, req.path.c_str());
  });
  s.Get("/api/apps", [this](const httplib::Request&, httplib::Response& res) {
    auto h = History::open_reader(history_path_);
    if (!h) return reply_json(res, {{"error", h.error().describe()}}, 503);
    json apps = json::array();
    for (const auto& av : view().apps) {
      auto sum = h->summary(av.app.config.name);
      if (!sum) return reply_json(res, {{"error", sum.error().describe()}}, 500);
      apps.push_back(app_stats(av.app, av.image_bytes, *sum));
    }
    reply_json(res, {{"apps", apps}});
  });
  s.Get(R"(/api/apps/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const DashboardView v = view();
    const DashboardView::AppView* av = nullptr;
    for (const auto& a : v.apps)
      if (a.app.config.name == name) av = &a;
    if (!av) return reply_json(res, {{"error", "no app named '" + name + "' is registered"}}, 404);
    auto h = History::open_reader(history_path_);
    if (!h) return reply_json(res, {{"error", h.error().describe()}}, 503);
    auto sum = h->summary(name);
    auto launches = h->launches(name, kPageLaunches);
    auto snaps = h->snapshots(name, kPageSnapshots);
    if (!sum || !launches || !snaps) return reply_json(res, {{"error", "cannot read the history of " + name}}, 500);
    json jl = json::array(), js = json::array();
    for (const auto& r : *launches) jl.push_back(to_json(r));
    for (const auto& r : *snaps) js.push_back(to_json(r));
    reply_json(res, {{"app", app_stats(av->app, av->image_bytes, *sum)}, {"launches", jl}, {"snapshots", js}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    auto h = History::open_reader(history_path_);
    auto text = h ? render_metrics(view(), *h) : Result<std::string>(h.error());
    if (!text) {
      res.status = 503;
      res.set_content(text.error().describe() + "\n", "text/plain");
      return;
    }
    res.set_content(*text, "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace prewarm
