// One NETLINK_SOCK_DIAG request.
#include "snapshot/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <cstring>

namespace prewarm {

Result<UniqueFd> sock_diag_send(const void* req, size_t len, uint16_t nl_flags, int sock_flags) {
  constexpr size_t kMaxRequest = 256;  // inet_diag_req_v2 is 56 bytes
  if (len > kMaxRequest) return data_error("sock_diag request too large");
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | sock_flags, NETLINK_SOCK_DIAG));
  if (!nl.valid()) return errno_error("open NETLINK_SOCK_DIAG");
  alignas(nlmsghdr) char msg[NLMSG_SPACE(kMaxRequest)]{};
  auto* nh = reinterpret_cast<nlmsghdr*>(msg);
  nh->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(len));
  nh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | nl_flags);
  std::memcpy(NLMSG_DATA(nh), req, len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  const ssize_t sent = ::sendto(nl.get(), msg, nh->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  if (sent < 0) return errno_error("sock_diag request");
  if (static_cast<size_t>(sent) != nh->nlmsg_len) return data_error("sock_diag request: short send");
  return nl;
}

Result<bool> unix_socket_bound_to(dev_t dev, ino_t ino) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_show = UDIAG_SHOW_VFS;
  PW_ASSIGN(UniqueFd nl, sock_diag_send(req, NLM_F_DUMP));
  bool found = false;
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    const ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
    if (n < 0) return errno_error("sock_diag dump of unix sockets");
    if (n == 0) return data_error("sock_diag dump of unix sockets: no end");
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(left)); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return found;
      if (h->nlmsg_type == NLMSG_ERROR)
        return make_error(-static_cast<nlmsgerr*>(NLMSG_DATA(h))->error, "sock_diag dump of unix sockets");
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) continue;
      const auto* d = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
      int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *d));
      for (auto* a = reinterpret_cast<const nlattr*>(d + 1);
           len >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) && a->nla_len <= len;
           len -= NLA_ALIGN(a->nla_len),
                 a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + NLA_ALIGN(a->nla_len))) {
        if (a->nla_type != UNIX_DIAG_VFS || a->nla_len < NLA_HDRLEN + sizeof(unix_diag_vfs)) continue;
        unix_diag_vfs v{};
        std::memcpy(&v, reinterpret_cast<const char*>(a) + NLA_HDRLEN, sizeof v);
        // The kernel's dev_t: major << 20 | minor.
        if (v.udiag_vfs_ino == ino && (v.udiag_vfs_dev >> 20) == major(dev) && (v.udiag_vfs_dev & 0xfffff) == minor(dev))
          found = true;
      }
    }
  }
}

}  // namespace prewarm
