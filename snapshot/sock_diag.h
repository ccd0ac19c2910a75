// NETLINK_SOCK_DIAG requests: the socket and the one SOCK_DIAG_BY_FAMILY message, shared by the
// dump's socket readers (snapshot/fd_objects.cpp) and the dashboard's peer lookup.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// Opens a NETLINK_SOCK_DIAG socket (SOCK_CLOEXEC | `sock_flags`) and sends `req` (a
// unix_diag_req or inet_diag_req_v2) behind a SOCK_DIAG_BY_FAMILY header with NLM_F_REQUEST |
// `nl_flags`. The replies are read from the returned socket.
Result<UniqueFd> sock_diag_send(const void* req, size_t len, uint16_t nl_flags = 0, int sock_flags = 0);

template <typename Req>
Result<UniqueFd> sock_diag_send(const Req& req, uint16_t nl_flags = 0, int sock_flags = 0) {
  return sock_diag_send(&req, sizeof req, nl_flags, sock_flags);
}

// Whether a unix socket of this network namespace (listening or not: a datagram server too) is
// bound to the socket file with this st_dev and st_ino. So a socket file is told stale without
// connecting to it, which would put a connection in a live server's accept queue.
Result<bool> unix_socket_bound_to(dev_t dev, ino_t ino);

}  // namespace prewarm
