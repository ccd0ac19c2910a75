#include "prewarmd/dashboard.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <regex>

#include "prewarmd/protocol.h"
#include "prewarmd/stats.h"
#include "prewarmd/web_assets.h"
#include "snapshot/sock_diag.h"

namespace prewarm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Reply = Dashboard::Reply;

// An app page's rows: one bounded page each (History::kMaxPage), with a cursor for the one before.
constexpr size_t kPageLaunches = History::kMaxPage, kPageSnapshots = History::kMaxPage;
constexpr size_t kMaxHead = 16 * 1024;
// After the reply, what the client still sends is read and dropped for this long before the
// close, so that unread bytes do not turn the close into a reset that loses the reply.
constexpr auto kLinger = std::chrono::milliseconds(500);

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

Reply reply_json(const json& body, int status = 200) {
  return Reply{status, "application/json", proto::json_text(body), true};
}

Reply reply_text(int status, std::string body) { return Reply{status, "text/plain", std::move(body), false}; }

Reply reply_asset(const std::string& path) {
  const WebAsset* a = find_web_asset(path);
  if (!a) return reply_text(404, "not found\n");
  return Reply{200, std::string(a->content_type), std::string(a->body), false};
}

// The host part of a Host header: "name:port", "[v6]:port" or "name".
std::string host_of(const std::string& h) {
  if (!h.empty() && h.front() == '[') {
    const auto end = h.find(']');
    return end == std::string::npos ? h : h.substr(1, end - 1);
  }
  return h.substr(0, h.find(':'));
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// Every reply closes its connection: keep-alive would let a client hold a slot past its request.
std::string serialize(const Reply& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  if (r.no_store) out += "Cache-Control: no-store\r\n";
  if (r.status == 405) out += "Allow: GET\r\n";
  out += "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
  return out + r.body;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%XX" decoded; nullopt for a malformed escape or a NUL.
std::optional<std::string> percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The request line and headers of `head` (without its final empty line); nullopt if malformed.
std::optional<Dashboard::Request> parse_head(const std::string& head) {
  std::vector<std::string> lines;
  for (size_t pos = 0; pos <= head.size();) {
    size_t end = head.find('\n', pos);
    if (end == std::string::npos) end = head.size();
    std::string line = head.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    pos = end + 1;
  }
  static const std::regex request_line(R"(([A-Z]+) (\S+) HTTP/1\.[01])");
  std::smatch m;
  if (lines.empty() || !std::regex_match(lines[0], m, request_line)) return std::nullopt;
  Dashboard::Request req;
  req.method = m[1];
  std::string target = m[2];
  if (target.front() != '/') return std::nullopt;  // origin-form only: this is no proxy
  std::string query;
  if (const auto q = target.find('?'); q != std::string::npos) query = target.substr(q + 1);
  query = query.substr(0, query.find('#'));
  target = target.substr(0, target.find_first_of("?#"));
  auto path = percent_decode(target);
  if (!path) return std::nullopt;
  req.path = std::move(*path);
  for (size_t pos = 0; pos < query.size();) {
    size_t end = query.find('&', pos);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(pos, end - pos);
    const auto eq = pair.find('=');
    auto k = percent_decode(pair.substr(0, eq)), v = percent_decode(eq == std::string::npos ? "" : pair.substr(eq + 1));
    if (!k || !v) return std::nullopt;
    if (!k->empty()) req.query[*k] = *v;
    pos = end + 1;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    const auto colon = line.find(':');
    // No obsolete line folding and no space before the colon (request smuggling shapes).
    if (colon == std::string::npos || colon == 0 || line[0] == ' ' || line[0] == '\t' ||
        line.find_first_of(" \t") < colon)
      return std::nullopt;
    if (lower(line.substr(0, colon)) == "host") req.hosts.push_back(trim(line.substr(colon + 1)));
  }
  return req;
}

// An address as 16 bytes, IPv4 as v4-mapped IPv6, so that the two spellings of one compare equal.
std::array<uint8_t, 16> canonical(int family, const void* addr) {
  std::array<uint8_t, 16> out{};
  if (family == AF_INET) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, addr, 4);
  } else {
    std::memcpy(out.data(), addr, 16);
  }
  return out;
}

struct Endpoint {
  int family = 0;
  std::array<uint8_t, 16> addr{};  // canonical()
  uint16_t port = 0;              // network order
};

std::optional<Endpoint> endpoint_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    return Endpoint{AF_INET, canonical(AF_INET, &a.sin_addr), a.sin_port};
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    return Endpoint{AF_INET6, canonical(AF_INET6, &a.sin6_addr), a.sin6_port};
  }
  return std::nullopt;
}

void fill_diag_addr(__be32 out[4], const Endpoint& e) {
  if (e.family == AF_INET) std::memcpy(out, e.addr.data() + 12, 4);
  else std::memcpy(out, e.addr.data(), 16);
}

// Sends what it can of `data` without blocking; the number of bytes sent, or -1 on an error.
ssize_t send_some(int fd, const char* data, size_t len) {
  for (;;) {
    const ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

}  // namespace

DashboardView view_for(const DashboardView& view, std::optional<uid_t> viewer, OthersSee others) {
  DashboardView out;
  out.store_bytes = view.store_bytes;
  out.store_budget = view.store_budget;
  for (const auto& av : view.apps) {
    if (viewer && (*viewer == 0 || *viewer == av->app.config.uid)) {
      out.apps.push_back(av);
    } else if (others == OthersSee::kTimings) {
      // Only the name is copied over, so nothing added to App later leaks by default.
      auto t = std::make_shared<DashboardView::AppView>();
      t->app.config.name = av->app.config.name;
      t->app.status = {};  // state and reason are details (shown as null)
      t->image_bytes = av->image_bytes;
      t->details = false;
      out.apps.push_back(std::move(t));
    }
  }
  return out;
}

std::optional<uid_t> peer_uid(int fd) {
  sockaddr_storage local_ss{}, peer_ss{};
  socklen_t local_len = sizeof local_ss, peer_len = sizeof peer_ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local_ss), &local_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer_ss), &peer_len) != 0)
    return std::nullopt;
  const auto local = endpoint_of(local_ss), peer = endpoint_of(peer_ss);
  if (!local || !peer || local->family != peer->family) return std::nullopt;

  // The peer's socket has our remote end as its local one. For v4-mapped addresses on an IPv6
  // socket the kernel looks the pair up among IPv4 sockets itself.
  inet_diag_req_v2 req{};
  req.sdiag_family = static_cast<uint8_t>(local->family);
  req.sdiag_protocol = IPPROTO_TCP;
  req.idiag_states = ~0u;
  req.id.idiag_sport = peer->port;
  req.id.idiag_dport = local->port;
  fill_diag_addr(req.id.idiag_src, *peer);
  fill_diag_addr(req.id.idiag_dst, *local);
  req.id.idiag_cookie[0] = req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  auto sent = sock_diag_send(req, 0, SOCK_NONBLOCK);
  if (!sent) return std::nullopt;
  const UniqueFd nl = std::move(*sent);
  // The kernel answers an exact lookup within sendto; the poll only guards against surprises.
  pollfd p{nl.get(), POLLIN, 0};
  if (::poll(&p, 1, 100) != 1) return std::nullopt;
  alignas(nlmsghdr) char buf[8192];
  const ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n <= 0) return std::nullopt;
  int left = static_cast<int>(n);
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
    const auto* d = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
    // Only a live socket says who owns it: time-wait and request sockets report uid 0, and a
    // client that closed at once would otherwise pass for root. A listener is not the peer.
    if (d->idiag_state != TCP_ESTABLISHED || d->idiag_inode == 0) continue;
    const int fam = d->idiag_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    if (d->id.idiag_sport != peer->port || d->id.idiag_dport != local->port ||
        canonical(fam, d->id.idiag_src) != peer->addr || canonical(fam, d->id.idiag_dst) != local->addr)
      continue;
    return static_cast<uid_t>(d->idiag_uid);
  }
  return std::nullopt;
}

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

namespace {

// One app's lines of each family: launches, time-to-ready buckets, fallbacks, snapshots, images.
std::array<std::string, 5> metrics_of(const DashboardView::AppView& av, const AppTotals& t) {
  std::string launches, buckets, fallbacks, snapshots, images;
  const std::string app = "app=\"" + label(av.app.config.name) + "\"";
  launches += "prewarm_launches_total{" + app + ",mode=\"cold\"} " + std::to_string(t.cold.launches) + "\n";
  launches += "prewarm_launches_total{" + app + ",mode=\"restored\"} " + std::to_string(t.restored.launches) + "\n";
  launches += "prewarm_launches_total{" + app + ",mode=\"failed\"} " + std::to_string(t.failed) + "\n";
  snapshots += "prewarm_snapshots_total{" + app + ",result=\"ok\"} " + std::to_string(t.captures) + "\n";
  snapshots += "prewarm_snapshots_total{" + app + ",result=\"failed\"} " + std::to_string(t.capture_failures) + "\n";
  images += "prewarm_image_bytes{" + app + "} " + std::to_string(av.image_bytes) + "\n";
  for (const char* mode : {"cold", "restored"}) {
    const AppTotals::Mode& m = mode[0] == 'c' ? t.cold : t.restored;
    const std::string labels = app + ",mode=\"" + mode + "\"";
    for (size_t b = 0; b < kReadyBucketsSeconds.size(); ++b)
      buckets += "prewarm_time_to_ready_seconds_bucket{" + labels + ",le=\"" + number(kReadyBucketsSeconds[b]) + "\"} " + std::to_string(m.le[b]) + "\n";
    const std::string total = std::to_string(m.ready.count());
    buckets += "prewarm_time_to_ready_seconds_bucket{" + labels + ",le=\"+Inf\"} " + total + "\n";
    buckets += "prewarm_time_to_ready_seconds_sum{" + labels + "} " + number(m.ready.sum_ms() / 1000) + "\n";
    buckets += "prewarm_time_to_ready_seconds_count{" + labels + "} " + total + "\n";
  }
  // The reasons of fallbacks are the owner's business.
  if (av.details)
    for (const auto& [kind, n] : t.fallbacks)
      fallbacks += "prewarm_fallbacks_total{" + app + ",reason=\"" + label(kind) + "\"} " + std::to_string(n) + "\n";
  return {launches, buckets, fallbacks, snapshots, images};
}

std::string render_metrics(const DashboardView& view, const TotalsBoard& board,
                           PartCache<std::array<std::string, 5>>* cache) {
  std::string launches, buckets, fallbacks, images, snapshots;
  for (const auto& p : view.apps) {
    const DashboardView::AppView& av = *p;
    const auto found = board.get(av.app.config.name);
    auto build = [&] { return metrics_of(av, found ? *found : AppTotals{}); };
    std::array<std::string, 5> own;
    const auto& parts = cache ? cache->get(av.app.config.name, {found, "", "", av.image_bytes, av.details}, build)
                              : (own = build());
    launches += parts[0], buckets += parts[1], fallbacks += parts[2], snapshots += parts[3], images += parts[4];
  }
  return "# HELP prewarm_launches_total Launches since the app was first recorded, by app and mode.\n"
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

}  // namespace

std::string render_metrics(const DashboardView& view, const TotalsBoard& totals) {
  return render_metrics(view, totals, nullptr);
}

Dashboard::Dashboard(std::string history_path, std::shared_ptr<const TotalsBoard> totals, DashboardOptions options)
    : history_path_(std::move(history_path)),
      totals_(totals ? std::move(totals) : std::make_shared<const TotalsBoard>()),
      options_(options) {}

Dashboard::~Dashboard() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of a bug; the thread polls it.
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
    thread_.join();
  }
}

void Dashboard::publish(DashboardView view) { publish(std::make_shared<const DashboardView>(std::move(view))); }

void Dashboard::publish(std::shared_ptr<const DashboardView> view) {
  waiting_ = std::move(view);
  sync();
}

bool Dashboard::sync() {
  if (!waiting_) return true;
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock) return false;
  std::swap(view_, waiting_);
  lock.unlock();
  waiting_.reset();  // the old view, freed outside the lock
  return true;
}

std::shared_ptr<const DashboardView> Dashboard::view() const {
  std::lock_guard lock(mu_);
  return view_;
}

Result<std::string> Dashboard::start(const std::string& listen) {
  PW_ASSIGN(auto addr, parse_listen_address(listen));
  const std::string& host = addr.first;
  const std::string cannot = "cannot listen on " + listen + " for the dashboard";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(addr.second).c_str(), &hints, &found); rc != 0)
    return data_error(cannot + " (" + ::gai_strerror(rc) + ")");
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  int bind_errno = EADDRNOTAVAIL;
  int port = -1;
  for (const addrinfo* ai = found; ai && !listen_fd_.valid(); ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) continue;
    // Not SO_REUSEPORT: with it a second prewarmd would share the port and split the requests.
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      bind_errno = errno;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port
                                          : reinterpret_cast<sockaddr_in&>(ss).sin_port);
    listen_fd_ = std::move(fd);
  }
  if (!listen_fd_.valid()) return make_error(bind_errno, cannot + " (address in use or not local?)");
  wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  busy_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid() || !busy_fd_.valid()) {
    listen_fd_.reset();
    return errno_error("dashboard: eventfd");
  }
  // A remote page must not read the dashboard through a DNS name rebound to loopback: only Host
  // headers naming the listen address or loopback are served (any host when bound to all).
  if (host != "0.0.0.0" && host != "::") allowed_hosts_ = {host, "localhost", "127.0.0.1", "::1"};
  thread_ = std::thread([this] { serve(); });
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/";
}

// One thread, one poll loop, every socket non-blocking: a peer that is slow to send or to read
// costs one slot and a buffer until its deadline, never a thread, so it cannot hold up others.
void Dashboard::serve() {
  worker_.start_here("prewarmd-http");
  struct Conn {
    UniqueFd fd;
    int64_t owner;  // the peer's uid, -1 when unknown (the count it is held against)
    std::optional<uid_t> viewer;
    Clock::time_point accepted;
    enum { kHead, kWrite, kLinger } phase = kHead;
    std::string in, out;
    size_t sent = 0;
    Clock::time_point linger_until{};
  };
  std::list<Conn> conns;
  std::map<int64_t, size_t> per_owner;

  auto start_reply = [](Conn& c, const Reply& r) {
    c.out = serialize(r);
    c.sent = 0;
    c.phase = Conn::kWrite;
  };
  // Writes what the socket takes; false once the connection is to be dropped.
  auto progress_write = [](Conn& c) {
    while (c.sent < c.out.size()) {
      const ssize_t n = send_some(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent);
      if (n < 0) return false;
      if (n == 0) return true;
      c.sent += static_cast<size_t>(n);
    }
    ::shutdown(c.fd.get(), SHUT_WR);
    c.phase = Conn::kLinger;
    c.linger_until = Clock::now() + kLinger;
    return true;
  };
  // Reads what arrived; false once the connection is to be dropped.
  auto progress_read = [&](Conn& c) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n < 0) return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
      if (c.phase == Conn::kLinger) continue;
      c.in.append(buf, static_cast<size_t>(n));
      auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) end = c.in.find("\n\n");
      if (end == std::string::npos) {
        if (c.in.size() > kMaxHead) {
          start_reply(c, reply_text(431, "request head too large\n"));
          return progress_write(c);
        }
        continue;
      }
      c.in.resize(end);
      auto req = parse_head(c.in);
      start_reply(c, req ? handle(*req, c.viewer) : reply_text(400, "bad request\n"));
      c.in.clear();
      return progress_write(c);
    }
  };
  auto admit = [&](UniqueFd fd) {
    const auto viewer = peer_uid(fd.get());
    const int64_t owner = viewer ? static_cast<int64_t>(*viewer) : -1;
    const auto held = per_owner.find(owner);
    if (conns.size() >= options_.total || (held != per_owner.end() && held->second >= options_.per_user)) {
      // Refused at once, so that one user's connections cannot queue up before another's.
      const std::string busy = serialize(reply_text(503, "too many connections\n"));
      send_some(fd.get(), busy.data(), busy.size());
      ::shutdown(fd.get(), SHUT_RDWR);
      return;
    }
    per_owner[owner]++;
    conns.push_back(Conn{std::move(fd), owner, viewer, Clock::now()});
  };

  std::vector<pollfd> fds;
  std::vector<std::list<Conn>::iterator> order;
  // Out of fds or memory, accept fails and the listener stays readable: pause it instead of spinning.
  std::optional<Clock::time_point> accept_paused_until;
  for (;;) {
    const auto now = Clock::now();
    std::optional<Clock::time_point> next = accept_paused_until;
    if (accept_paused_until && now >= *accept_paused_until) accept_paused_until.reset(), next.reset();
    fds.clear();
    order.clear();
    fds.push_back({wake_fd_.get(), POLLIN, 0});
    fds.push_back({listen_fd_.get(), static_cast<short>(accept_paused_until ? 0 : POLLIN), 0});
    for (auto it = conns.begin(); it != conns.end(); ++it) {
      const auto deadline = it->phase == Conn::kHead    ? it->accepted + options_.head_deadline
                            : it->phase == Conn::kWrite ? it->accepted + options_.reply_deadline
                                                        : it->linger_until;
      next = next ? std::min(*next, deadline) : deadline;
      fds.push_back({it->fd.get(), static_cast<short>(it->phase == Conn::kWrite ? POLLOUT : POLLIN), 0});
      order.push_back(it);
    }
    // Requests in progress are work the loop may hurry this thread for; none left, it goes back.
    std::optional<Clock::time_point> oldest;
    for (const auto& c : conns)
      if (c.phase != Conn::kLinger) oldest = oldest ? std::min(*oldest, c.accepted) : c.accepted;
    const auto ns = [](Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    };
    if (worker_.pending(oldest ? ns(*oldest) : 0, ns(now)) && oldest) {
      const uint64_t one = 1;
      (void)!::write(busy_fd_.get(), &one, sizeof one);  // cannot fail short of a bug (the count cannot overflow)
    }
    int timeout = -1;
    if (next)
      timeout = static_cast<int>(std::max<int64_t>(
          0, std::chrono::ceil<std::chrono::milliseconds>(*next - now).count()));
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) break;
    if (fds[0].revents) break;
    const auto after = Clock::now();
    for (size_t i = 0; i < order.size(); ++i) {
      Conn& c = *order[i];
      bool keep = true;
      if (fds[i + 2].revents & (POLLERR | POLLNVAL)) keep = false;
      else if (fds[i + 2].revents) keep = c.phase == Conn::kWrite ? progress_write(c) : progress_read(c);
      if (keep && c.phase == Conn::kHead && after >= c.accepted + options_.head_deadline) {
        start_reply(c, reply_text(408, "request head not complete in time\n"));
        keep = progress_write(c);
      } else if (keep && ((c.phase == Conn::kWrite && after >= c.accepted + options_.reply_deadline) ||
                          (c.phase == Conn::kLinger && after >= c.linger_until))) {
        keep = false;
      }
      if (!keep) {
        // shutdown, not only close: a child the daemon forks may hold a copy of the fd for a while.
        ::shutdown(c.fd.get(), SHUT_RDWR);
        if (--per_owner[c.owner] == 0) per_owner.erase(c.owner);
        conns.erase(order[i]);
      }
    }
    if (fds[1].revents & POLLIN) {
      // A bounded batch per round, so a flood of connects cannot starve the open connections.
      for (int i = 0; i < 64; ++i) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd.valid()) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
          break;
        }
        admit(std::move(fd));
      }
    }
  }
}

Reply Dashboard::handle(const Request& req, std::optional<uid_t> viewer) const {
  if (!allowed_hosts_.empty()) {
    const bool ok = req.hosts.size() == 1 &&
                    std::find(allowed_hosts_.begin(), allowed_hosts_.end(), host_of(req.hosts[0])) != allowed_hosts_.end();
    if (!ok) return reply_text(403, "host not allowed\n");
  }
  if (req.method != "GET") return reply_text(405, "only GET is served\n");
  static const std::regex app_page(R"(/app/[^/]+)"), asset(R"(/static/[A-Za-z0-9_.-]+)"), api_app_re(R"(/api/apps/([^/]+))");
  std::smatch m;
  if (req.path == "/") return reply_asset("page:index");
  if (std::regex_match(req.path, app_page)) return reply_asset("page:app");
  if (std::regex_match(req.path, asset)) return reply_asset(req.path);
  // Every data route serves the viewer's part of the view and nothing else.
  if (req.path == "/api/apps") return api_apps(view_for(*view(), viewer, options_.others));
  if (std::regex_match(req.path, m, api_app_re)) return api_app(view_for(*view(), viewer, options_.others), m[1], req);
  if (req.path == "/metrics") return metrics(view_for(*view(), viewer, options_.others));
  return reply_text(404, "not found\n");
}

namespace {

// app_stats of an app the viewer sees without details: its numbers, no state or reasons.
json stats_json(const DashboardView::AppView& av, const TotalsBoard& board) {
  const auto t = board.get(av.app.config.name);
  json j = app_stats(av.app, av.image_bytes, t ? *t : AppTotals{});
  if (!av.details) {
    j["state"] = nullptr;
    j["reason"] = nullptr;
    j["last_fallbacks"] = json::array();
    j["fallbacks_by_kind"] = json::object();
  }
  return j;
}

// A cursor from the query: a positive row id, else 0 (the newest).
int64_t cursor(const Dashboard::Request& req, const char* name) {
  auto it = req.query.find(name);
  if (it == req.query.end() || it->second.empty() || it->second.size() > 18) return 0;
  int64_t v = 0;
  for (char c : it->second) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

Reply Dashboard::api_apps(const DashboardView& v) const {
  std::string body = R"({"apps":[)";
  for (size_t i = 0; i < v.apps.size(); ++i) {
    const DashboardView::AppView& av = *v.apps[i];
    const auto t = totals_->get(av.app.config.name);
    TextCache::Stamp stamp{t, std::string(policy::to_string(av.app.status.state)), av.app.status.reason, av.image_bytes,
                           av.details};
    body += (i ? "," : "") + apps_text_.get(av.app.config.name, std::move(stamp), [&] { return proto::json_text(stats_json(av, *totals_)); });
  }
  body += "]}";
  if (apps_text_.size() > 2 * v.apps.size() + 64) apps_text_.sweep();  // apps gone since go
  return Reply{200, "application/json", std::move(body), true};
}

// The app's totals and one page of its launches and of its captures: the newest, or those before
// ?before=ID (launches) and ?snapshots_before=ID; each page oldest first, with the cursor of the
// page before it (null when this one reached the oldest row).
Reply Dashboard::api_app(const DashboardView& v, const std::string& name, const Request& req) const {
  const DashboardView::AppView* av = nullptr;
  for (const auto& a : v.apps)
    if (a->app.config.name == name) av = a.get();
  // An app the viewer may not see is answered exactly as one that does not exist.
  if (!av) return reply_json({{"error", "no app named '" + name + "' is registered"}}, 404);
  auto h = History::open_reader(history_path_);
  if (!h) return reply_json({{"error", h.error().describe()}}, 503);
  auto launches = h->launch_page(name, cursor(req, "before"), kPageLaunches);
  auto snaps = h->snapshot_page(name, cursor(req, "snapshots_before"), kPageSnapshots);
  if (!launches || !snaps) return reply_json({{"error", "cannot read the history of " + name}}, 500);
  json jl = json::array(), js = json::array();
  for (auto r = launches->rbegin(); r != launches->rend(); ++r) {
    json l = to_json(*r);
    if (!av->details) l["fallback"] = l["fallback_kind"] = l["pid"] = nullptr;
    jl.push_back(std::move(l));
  }
  for (auto r = snaps->rbegin(); r != snaps->rend(); ++r) {
    json s = to_json(*r);
    if (!av->details) s["error"] = nullptr;
    js.push_back(std::move(s));
  }
  auto next = [](const auto& rows, size_t page) {
    return rows.size() == page ? json(rows.back().id) : json(nullptr);
  };
  return reply_json({{"app", stats_json(*av, *totals_)},
                     {"launches", jl},
                     {"snapshots", js},
                     {"next_before", next(*launches, kPageLaunches)},
                     {"next_snapshots_before", next(*snaps, kPageSnapshots)}});
}

Reply Dashboard::metrics(const DashboardView& v) const {
  std::string text = render_metrics(v, *totals_, &metrics_parts_);
  if (metrics_parts_.size() > 2 * v.apps.size() + 64) metrics_parts_.sweep();
  return Reply{200, "text/plain; version=0.0.4; charset=utf-8", std::move(text), false};
}

}  // namespace prewarm
