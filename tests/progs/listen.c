/* Listening sockets round trip: a TCP listener on 127.0.0.1 (SO_REUSEADDR, TCP_NODELAY, backlog 7),
 * a bound UDP socket and a unix listener on an abstract name. After restore each answers at its
 * old address: the program connects to its own listeners and sends to its own UDP port.
 * With "pending", a connection waits in the TCP accept queue at the dump: refused. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "prog.h"

static int getint(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  getsockopt(fd, level, name, &v, &l);
  return v;
}

int main(int argc, char** argv) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  int one = 1;
  int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || setsockopt(tcp, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
      bind(tcp, (struct sockaddr*)&a, sizeof a) || listen(tcp, 7) || getsockname(tcp, (struct sockaddr*)&a, &alen))
    return 1;
  struct sockaddr_in u = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t ulen = sizeof u;
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  if (bind(udp, (struct sockaddr*)&u, sizeof u) || getsockname(udp, (struct sockaddr*)&u, &ulen)) return 1;
  struct sockaddr_un n = {.sun_family = AF_UNIX};
  int nlen = snprintf(n.sun_path + 1, sizeof n.sun_path - 1, "prewarm-listen-%d", getpid()) + 1;
  socklen_t unlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + nlen);
  int ux = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(ux, (struct sockaddr*)&n, unlen) || listen(ux, 3)) return 1;
  int pending = -1;
  if (argc > 1 && strcmp(argv[1], "pending") == 0) {
    pending = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(pending, (struct sockaddr*)&a, sizeof a)) return 1;
  }
  say("ready pid=%d port=%d", getpid(), ntohs(a.sin_port));
  char line[64];
  read_line(line, sizeof line);
  if (pending >= 0) {
    say("not snapshotted, as it must be");
    return 0;
  }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&a, sizeof a) == 0);
  int s = accept(tcp, NULL, NULL);
  CHECK(s >= 0 && write(c, "ping", 4) == 4);
  char buf[8] = "";
  CHECK(read(s, buf, 4) == 4);
  int uc = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(sendto(uc, "dgram", 5, 0, (struct sockaddr*)&u, sizeof u) == 5);
  char ubuf[8] = "";
  CHECK(recv(udp, ubuf, sizeof ubuf - 1, 0) == 5);
  int xc = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(xc, (struct sockaddr*)&n, unlen) == 0);
  int xs = accept(ux, NULL, NULL);
  say("tcp=%s udp=%s unix=%d reuseaddr=%d nodelay=%d", buf, ubuf, xs >= 0, getint(tcp, SOL_SOCKET, SO_REUSEADDR) != 0,
      getint(tcp, IPPROTO_TCP, TCP_NODELAY) != 0);
  return 0;
}
