/* TCP sockets never connected (argv[1] "fresh"): one unbound, one bound to 127.0.0.1 (an ephemeral
 * port) with SO_REUSEADDR and SO_RCVLOWAT 2, and an unbound UDP socket. Carried: after the restore
 * the unbound ones still have no port, the bound one has its old port and option, listens, and
 * the unbound one connects to it. "ended": a socket whose connection was reset (its peer closed
 * with SO_LINGER 0): refused, since a new socket would not give the app its end of the
 * connection (ECONNRESET, then end of file). "linger": SO_LINGER set, which is not carried:
 * refused. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "prog.h"

static int port_of(int fd) {
  struct sockaddr_in sin;
  socklen_t l = sizeof sin;
  return getsockname(fd, (struct sockaddr*)&sin, &l) == 0 ? ntohs(sin.sin_port) : -1;
}

static int tcp_state(int fd) {
  struct tcp_info ti;
  socklen_t l = sizeof ti;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 ? ti.tcpi_state : -1;
}

int main(int argc, char** argv) {
  CHECK(argc == 2);
  const int ended = strcmp(argv[1], "ended") == 0;
  int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
  int one = 1, two = 2;
  CHECK(a >= 0 && b >= 0 && u >= 0 && setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
  CHECK(setsockopt(b, SOL_SOCKET, SO_RCVLOWAT, &two, sizeof two) == 0);
  if (strcmp(argv[1], "linger") == 0) {
    struct linger l = {1, 5};
    CHECK(setsockopt(a, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
  }
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(b, (struct sockaddr*)&sin, sizeof sin) == 0);
  const int port = port_of(b);
  sin.sin_port = htons((uint16_t)port);
  if (ended) {
    CHECK(listen(b, 1) == 0 && connect(a, (struct sockaddr*)&sin, sizeof sin) == 0);
    int c = accept(b, NULL, NULL);
    struct linger now = {1, 0};
    CHECK(c >= 0 && setsockopt(c, SOL_SOCKET, SO_LINGER, &now, sizeof now) == 0 && close(c) == 0);
    for (int i = 0; i < 1000 && tcp_state(a) != TCP_CLOSE; i++) nanosleep(&(struct timespec){0, 1000000}, NULL);
    CHECK(tcp_state(a) == TCP_CLOSE);
  }
  say("ready port=%d", port);
  char line[64];
  read_line(line, sizeof line);
  const int unbound = port_of(a), bound = port_of(b), udp = port_of(u);
  int lowat = 0;
  socklen_t ll = sizeof lowat;
  CHECK(getsockopt(b, SOL_SOCKET, SO_RCVLOWAT, &lowat, &ll) == 0);
  const int listened = listen(b, 1) == 0;
  const int connected = listened && connect(a, (struct sockaddr*)&sin, sizeof sin) == 0;
  say("answer unbound_port=%d udp_port=%d same_port=%d rcvlowat=%d listen=%d connect=%d", unbound, udp,
      bound == port, lowat, listened, connected);
  return 0;
}
