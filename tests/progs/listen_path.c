/* A unix listener bound to a path, its socket file chmod'ed to 0640, then a TCP listener on
 * 127.0.0.1. After restore the program connects to its own path and reports the file's mode.
 *   listen_path DIR             DIR/sock
 *   listen_path DIR relative    bound as "sock" from cwd DIR: getsockname says "sock" after restore
 *   listen_path DIR moved       bound so, then cwd changed to /: refused (the name is not known)
 *   listen_path DIR unlinked    DIR/sock unlinked after bind: refused (the name is not its own) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "prog.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* how = argc > 2 ? argv[2] : "";
  struct sockaddr_un n = {.sun_family = AF_UNIX};
  snprintf(n.sun_path, sizeof n.sun_path, "%s/sock", argv[1]);
  struct sockaddr_un bound = n;
  const int relative = strcmp(how, "relative") == 0 || strcmp(how, "moved") == 0;
  if (relative) {
    if (chdir(argv[1])) return 1;
    snprintf(bound.sun_path, sizeof bound.sun_path, "sock");
  }
  int ux = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(ux, (struct sockaddr*)&bound, sizeof bound) || listen(ux, 4) || chmod(n.sun_path, 0640)) return 1;
  if (strcmp(how, "moved") == 0 && chdir("/")) return 1;
  if (strcmp(how, "unlinked") == 0 && unlink(n.sun_path)) return 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  if (bind(tcp, (struct sockaddr*)&a, sizeof a) || listen(tcp, 2) || getsockname(tcp, (struct sockaddr*)&a, &alen))
    return 1;
  say("ready pid=%d port=%d", getpid(), ntohs(a.sin_port));
  char line[64];
  read_line(line, sizeof line);
  if (*how && strcmp(how, "relative") != 0) {
    say("not snapshotted, as it must be");
    return 0;
  }
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&n, sizeof n) == 0);
  int s = accept(ux, NULL, NULL);
  CHECK(s >= 0 && write(c, "ping", 4) == 4);
  char buf[8] = "";
  CHECK(read(s, buf, 4) == 4);
  struct stat st;
  CHECK(stat(n.sun_path, &st) == 0 && S_ISSOCK(st.st_mode));
  struct sockaddr_un got = {0};
  socklen_t glen = sizeof got;
  CHECK(getsockname(ux, (struct sockaddr*)&got, &glen) == 0);
  say("unix=%s mode=%o name=%s", buf, (unsigned)(st.st_mode & 07777), got.sun_path);
  return 0;
}
