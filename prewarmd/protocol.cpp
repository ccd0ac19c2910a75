#include "prewarmd/protocol.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "snapshot/uapi_compat.h"

namespace prewarm::proto {

std::string json_text(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

bool is_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c < 0x80) n = 0;
    else if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c == 0xe0) n = 2, lo = 0xa0;
    else if (c == 0xed) n = 2, hi = 0x9f;
    else if (c >= 0xe1 && c <= 0xef) n = 2;
    else if (c == 0xf0) n = 3, lo = 0x90;
    else if (c == 0xf4) n = 3, hi = 0x8f;
    else if (c >= 0xf1 && c <= 0xf3) n = 3;
    else return false;
    if (s.size() - i - 1 < n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return false;
    }
    i += n + 1;
  }
  return true;
}
namespace {

constexpr size_t kMaxMessage = 4u << 20;
constexpr size_t kMaxFds = 16;

Result<sockaddr_un> unix_address(const std::string& path, socklen_t& len) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path)
    return data_error("socket path too long or empty: " + path);
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace, as systemd writes it
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
  return sa;
}

}  // namespace

std::string runtime_dir() {
  const char* d = std::getenv("PREWARM_RUNTIME_DIR");
  return d && *d ? d : "/run/prewarm";
}
std::string control_socket_path(const std::string& dir) { return dir + "/control.sock"; }
std::string notify_socket_path(const std::string& dir) { return dir + "/notify.sock"; }

namespace {

// One sendmsg of text[off..], with `fds` attached when off is 0 (they go with the first byte).
ssize_t send_piece(int sock, const std::string& text, size_t off, const int* fds, size_t nfds, int flags) {
  iovec iov{const_cast<char*>(text.data()) + off, text.size() - off};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
  if (off == 0 && nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
}

}  // namespace

Result<void> send_message(int sock, const json& msg, const std::vector<int>& fds) {
  std::string text = json_text(msg) + "\n";
  if (fds.size() > kMaxFds) return data_error("too many fds for one message");
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = send_piece(sock, text, off, fds.data(), fds.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("send to prewarm peer");
    off += static_cast<size_t>(n);
  }
  return ok();
}

Result<Received> recv_message(int sock) {
  MessageReader r(kMaxMessage);
  for (;;) {
    PW_ASSIGN(bool done, r.read_some(sock));
    if (done) return r.take();
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) return errno_error("poll");
  }
}

Result<PeerCred> peer_credentials(int sock) {
  ucred uc{};
  socklen_t len = sizeof uc;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) return errno_error("SO_PEERCRED");
  return PeerCred{uc.pid, uc.uid, uc.gid};
}

Result<UniqueFd> connect_unix(const std::string& path, int type) {
  socklen_t len = 0;
  PW_ASSIGN(auto sa, unix_address(path, len));
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errno_error("socket");
  while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    if (errno == EINTR) continue;
    return errno_error("connect to " + path);
  }
  return fd;
}

namespace {

void take_fds(msghdr& mh, std::vector<UniqueFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      out.emplace_back(fd);
    }
  }
}

Result<Received> parse_line(std::string& text, std::vector<UniqueFd>& fds) {
  Received out;
  out.fds = std::move(fds);
  out.msg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.msg.is_discarded() || !out.msg.is_object()) return data_error("malformed message (not a JSON object)");
  return out;
}

}  // namespace

Result<bool> MessageReader::read_some(int sock) {
  for (;;) {
    char buf[16384];
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n < 0) return errno_error("receive from prewarm peer");
    take_fds(mh, fds_);
    if (fds_.size() > kMaxFds) return data_error("too many fds with one message");
    if (n == 0) return data_error("the peer closed the connection before a complete message");
    text_.append(buf, static_cast<size_t>(n));
    if (auto nl = text_.find('\n'); nl != std::string::npos) {
      text_.resize(nl);
      return true;
    }
    if (text_.size() > max_) return data_error("message too large (more than " + std::to_string(max_) + " bytes)");
  }
}

Result<Received> MessageReader::take() { return parse_line(text_, fds_); }

MessageWriter::MessageWriter(const json& msg, std::vector<UniqueFd> fds)
    : text_(json_text(msg) + "\n"), fds_(std::move(fds)) {}

MessageWriter::MessageWriter(JsonText msg, std::vector<UniqueFd> fds) : text_(std::move(msg.text)), fds_(std::move(fds)) {
  text_ += '\n';
}

Result<bool> MessageWriter::write_some(int sock) {
  if (fds_.size() > kMaxFds) return data_error("too many fds for one message");
  std::vector<int> raw;
  for (const auto& f : fds_) raw.push_back(f.get());
  while (off_ < text_.size()) {
    ssize_t n = send_piece(sock, text_, off_, raw.data(), off_ == 0 ? raw.size() : 0, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n < 0) return errno_error("send to prewarm peer");
    if (off_ == 0) fds_.clear(), raw.clear();  // they went with the first byte
    off_ += static_cast<size_t>(n);
  }
  return true;
}

bool process_alive(int pidfd) { return ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0; }

Result<UniqueFd> peer_pidfd(int sock, const PeerCred& cred) {
  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  UniqueFd fd;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0) {
    fd.reset(pidfd);
  } else if (errno == ENOPROTOOPT || errno == EINVAL) {
    // Older kernels: the pid number may have been reused since connect(). A successor of another
    // uid is refused; one of the same uid could have asked itself.
    int p = static_cast<int>(::syscall(SYS_pidfd_open, cred.pid, 0));
    if (p < 0) return errno_error("pidfd_open of the peer");
    fd.reset(p);
    auto status = read_file("/proc/" + std::to_string(cred.pid) + "/status");
    if (!status) return status.error();
    auto at = status->find("\nUid:");
    if (at == std::string::npos || std::strtoul(status->c_str() + at + 5, nullptr, 10) != cred.uid)
      return make_error(ESRCH, "the peer's pid now belongs to another user's process");
  } else {
    return errno_error("SO_PEERPIDFD");
  }
  if (::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) return errno_error("FD_CLOEXEC on a pidfd");
  if (!process_alive(fd.get())) return make_error(ESRCH, "the peer process has exited");
  return fd;
}

Result<Received> call(const std::string& dir, const json& request, const std::vector<int>& fds, int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left_ms = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::max<long long>(ms, 0));
  };
  socklen_t len = 0;
  PW_ASSIGN(auto sa, unix_address(control_socket_path(dir), len));
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) return errno_error("socket");
  // A full backlog (a stopped prewarmd) answers EAGAIN: retry until the deadline.
  while (::connect(sock.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN || left_ms() == 0) return errno_error("connect to " + control_socket_path(dir));
    ::usleep(10'000);
  }
  std::vector<UniqueFd> dups;
  for (int f : fds) {
    int d = ::fcntl(f, F_DUPFD_CLOEXEC, 3);
    if (d < 0) return errno_error("dup an fd to send");
    dups.emplace_back(d);
  }
  MessageWriter w(request, std::move(dups));
  MessageReader r(kMaxMessage);
  bool sent = false;
  for (;;) {
    if (!sent) {
      PW_ASSIGN(sent, w.write_some(sock.get()));
    }
    const int wait = left_ms();
    if (wait == 0) return make_error(ETIMEDOUT, "prewarmd did not answer within " + std::to_string(timeout_ms) + " ms");
    // Read only once poll says there is something: the reply is taken in one go when it is there.
    pollfd p{sock.get(), static_cast<short>(sent ? POLLIN : POLLOUT), 0};
    int n = ::poll(&p, 1, wait);
    if (n < 0 && errno != EINTR) return errno_error("poll");
    if (n <= 0 || !sent) continue;
    PW_ASSIGN(bool done, r.read_some(sock.get()));
    if (done) return r.take();
  }
}

}  // namespace prewarm::proto
