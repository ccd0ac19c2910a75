#include "snapshot/tcp_use.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace prewarm {

Result<TcpUse> tcp_use(int sock) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return errno_error("getsockopt TCP_INFO");
  if (len < offsetof(tcp_info, tcpi_segs_in) + sizeof ti.tcpi_segs_in)
    return make_error(EPROTO, "TCP_INFO without segment counters");
  return TcpUse{ti.tcpi_state, ti.tcpi_segs_in, ti.tcpi_segs_out};
}

}  // namespace prewarm
