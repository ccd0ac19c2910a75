// Whether a TCP socket has ever carried a segment (TCP_INFO's counters). Its own file: the
// kernel's struct tcp_info (linux/tcp.h), which has the counters, cannot share a translation
// unit with glibc's netinet/tcp.h.
#pragma once

#include <cstdint>

#include "snapshot/result.h"

namespace prewarm {

struct TcpUse {
  uint8_t state = 0;  // tcpi_state: TCP_ESTABLISHED, ... TCP_CLOSE
  uint32_t segs_in = 0, segs_out = 0;  // since the socket was made or last disconnected
};

// EPROTO: a kernel whose TCP_INFO has no segment counters (before Linux 4.2).
Result<TcpUse> tcp_use(int sock);

}  // namespace prewarm
