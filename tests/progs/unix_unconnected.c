/* Unix sockets that are not connected, each as an app leaves one before use: a stream socket
 * never bound, a datagram socket never bound (SO_PASSCRED on), a datagram socket bound to
 * DIR/dgram, one bound to an abstract name, and a stream socket bound to DIR/later that listens
 * only after the restore. Then each is used: the stream one connects to a listener made now, the
 * unbound datagram one sends to both bound ones, the late one listens and is connected to.
 *   unix_unconnected DIR           the above
 *   unix_unconnected DIR queued    a datagram waits in DIR/dgram's queue at the dump: refused */
#define _GNU_SOURCE
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "prog.h"

static socklen_t path_addr(struct sockaddr_un* a, const char* dir, const char* name) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
  return sizeof *a;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const int queued = argc > 2 && strcmp(argv[2], "queued") == 0;
  struct sockaddr_un dg, ab = {.sun_family = AF_UNIX}, late, now;
  socklen_t dglen = path_addr(&dg, argv[1], "dgram"), latelen = path_addr(&late, argv[1], "later");
  int ablen = snprintf(ab.sun_path + 1, sizeof ab.sun_path - 1, "prewarm-unconnected-%d", getpid()) + 1;
  socklen_t abalen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + ablen);
  int one = 1;
  int stream = socket(AF_UNIX, SOCK_STREAM, 0);
  int client = socket(AF_UNIX, SOCK_DGRAM, 0);
  int bound = socket(AF_UNIX, SOCK_DGRAM, 0);
  int abstract = socket(AF_UNIX, SOCK_DGRAM, 0);
  int later = socket(AF_UNIX, SOCK_STREAM, 0);
  if (stream < 0 || client < 0 || setsockopt(client, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) ||
      bind(bound, (struct sockaddr*)&dg, dglen) || bind(abstract, (struct sockaddr*)&ab, abalen) ||
      bind(later, (struct sockaddr*)&late, latelen))
    return 1;
  if (queued && sendto(client, "early", 5, 0, (struct sockaddr*)&dg, dglen) != 5) return 1;
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  if (queued) {
    say("not snapshotted, as it must be");
    return 0;
  }
  int passcred = 0;
  socklen_t l = sizeof passcred;
  CHECK(getsockopt(client, SOL_SOCKET, SO_PASSCRED, &passcred, &l) == 0);
  CHECK(sendto(client, "one", 3, 0, (struct sockaddr*)&dg, dglen) == 3);
  CHECK(sendto(client, "two", 3, 0, (struct sockaddr*)&ab, abalen) == 3);
  char b1[8] = "", b2[8] = "";
  CHECK(recv(bound, b1, sizeof b1 - 1, 0) == 3 && recv(abstract, b2, sizeof b2 - 1, 0) == 3);
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  socklen_t nowlen = path_addr(&now, argv[1], "now");
  CHECK(bind(listener, (struct sockaddr*)&now, nowlen) == 0 && listen(listener, 1) == 0);
  CHECK(connect(stream, (struct sockaddr*)&now, nowlen) == 0);
  CHECK(listen(later, 1) == 0);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&late, latelen) == 0 && accept(later, NULL, NULL) >= 0);
  say("dgram=%s abstract=%s passcred=%d stream=1 later=1", b1, b2, passcred);
  return 0;
}
