/* A UDP socket bound, with IP_FREEBIND, to an address this host does not have (zdtm sk-freebind).
 * argv[1] "keep": IP_FREEBIND stays set; "clear": cleared after the bind. After restore: still
 * bound there, IP_FREEBIND as it was. The port is the kernel's pick (bind to port 0), so two runs
 * at once (ctest -j) do not collide. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "prog.h"

int main(int argc, char** argv) {
  const int keep = argc > 1 && strcmp(argv[1], "keep") == 0;
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = 0;
  inet_pton(AF_INET6, "2001:db8::ff00:42:8329", &a.sin6_addr);  /* documentation prefix */
  int s = socket(AF_INET6, SOCK_DGRAM, 0);
  int one = 1, zero = 0;
  if (s < 0 || setsockopt(s, SOL_IP, IP_FREEBIND, &one, sizeof one) != 0 || bind(s, (struct sockaddr*)&a, sizeof a) != 0)
    return 1;
  if (!keep && setsockopt(s, SOL_IP, IP_FREEBIND, &zero, sizeof zero) != 0) return 1;
  socklen_t al = sizeof a;
  if (getsockname(s, (struct sockaddr*)&a, &al) != 0) return 1;
  say("ready pid=%d port=%d", getpid(), ntohs(a.sin6_port));
  char line[64];
  read_line(line, sizeof line);
  int v = -1;
  socklen_t l = sizeof v;
  CHECK(getsockopt(s, SOL_IP, IP_FREEBIND, &v, &l) == 0);
  struct sockaddr_in6 got;
  socklen_t gl = sizeof got;
  CHECK(getsockname(s, (struct sockaddr*)&got, &gl) == 0);
  char text[64] = "";
  inet_ntop(AF_INET6, &got.sin6_addr, text, sizeof text);
  say("freebind=%d bound=%s:%d", v, text, ntohs(got.sin6_port));
  return 0;
}
