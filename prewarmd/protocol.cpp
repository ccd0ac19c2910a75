#include "prewarmd/protocol.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

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

Result<void> send_message(int sock, const json& msg, const std::vector<int>& fds) {
  std::string text = json_text(msg) + "\n";
  if (fds.size() > kMaxFds) return data_error("too many fds for one message");
  size_t off = 0;
  while (off < text.size()) {
    iovec iov{text.data() + off, text.size() - off};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)]{};
    if (off == 0 && !fds.empty()) {
      mh.msg_control = control;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("send to prewarm peer");
    off += static_cast<size_t>(n);
  }
  return ok();
}

Result<Received> recv_message(int sock) {
  Received out;
  std::string text;
  char buf[65536];
  for (;;) {
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("receive from prewarm peer");
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        out.fds.emplace_back(fd);
      }
    }
    if (n == 0) return data_error("the peer closed the connection before a complete message");
    text.append(buf, static_cast<size_t>(n));
    if (auto nl = text.find('\n'); nl != std::string::npos) {
      text.resize(nl);
      break;
    }
    if (text.size() > kMaxMessage) return data_error("message too large");
  }
  out.msg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (out.msg.is_discarded() || !out.msg.is_object()) return data_error("malformed message (not a JSON object)");
  return out;
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

Result<Received> call(const std::string& dir, const json& request) {
  PW_ASSIGN(auto sock, connect_unix(control_socket_path(dir), SOCK_STREAM));
  PW_TRY(send_message(sock.get(), request));
  return recv_message(sock.get());
}

}  // namespace prewarm::proto
