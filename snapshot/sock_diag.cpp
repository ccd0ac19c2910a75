// One NETLINK_SOCK_DIAG request.
#include "snapshot/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>

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

}  // namespace prewarm
