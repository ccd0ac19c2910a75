/* Socketpair round trip: a stream pair with bytes queued both ways, a datagram pair and a
 * seqpacket pair with messages queued. After restore each end reads what it had, in order and
 * with message boundaries, and the pairs are still connected to each other.
 * With "child", one more pair is
 * made by a child sharing the fd table (CLONE_FILES), as zdtm's sock_peercred does: its
 * SO_PEERCRED names the child, which a restore cannot keep, so it is refused. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "prog.h"

static int pair(int type, int sv[2]) { return socketpair(AF_UNIX, type, 0, sv); }

static int child_pair(void* sv) { return pair(SOCK_DGRAM, sv) ? 1 : 0; }

/* Reads what is queued on fd without blocking, messages joined with '|'. */
static void drain(int fd, char* out, size_t size) {
  size_t n = 0;
  out[0] = 0;
  char m[256];
  ssize_t k;
  while ((k = recv(fd, m, sizeof m - 1, MSG_DONTWAIT)) >= 0) {
    m[k] = 0;
    n += (size_t)snprintf(out + n, size - n, "%s%s", n ? "|" : "", m);
    if (k == 0) break;
  }
}

int main(int argc, char** argv) {
  int st[2], dg[2], sq[2];
  if (pair(SOCK_STREAM, st) || pair(SOCK_DGRAM, dg) || pair(SOCK_SEQPACKET, sq)) return 1;
  if (send(st[0], "to-one", 6, 0) != 6 || send(st[0], "+more", 5, 0) != 5 || send(st[1], "to-zero", 7, 0) != 7) return 1;
  if (send(dg[0], "d1", 2, 0) != 2 || send(dg[0], "d22", 3, 0) != 3 || send(dg[0], "d333", 4, 0) != 4) return 1;
  if (send(sq[1], "s1", 2, 0) != 2 || send(sq[1], "s22", 3, 0) != 3) return 1;
  if (argc > 1 && strcmp(argv[1], "child") == 0) {
    static int cp[2];
    static char stack[64 * 1024];
    int status = -1;
    pid_t c = clone(child_pair, stack + sizeof stack, CLONE_FILES | SIGCHLD, cp);
    if (c < 0 || waitpid(c, &status, 0) != c || status != 0) return 1;
  }
  if (argc > 1 && strcmp(argv[1], "scm") == 0) {  /* an fd in flight, queued on st[1] */
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {"f", 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &dg[0], sizeof(int));
    if (sendmsg(st[0], &m, 0) != 1) return 1;
  }
  if (argc > 1) {
    say("ready pid=%d", getpid());
    char line[64];
    read_line(line, sizeof line);
    say("not snapshotted, as it must be");
    return 0;
  }
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  char a[128], b[128], c[128], d[128];
  drain(st[1], a, sizeof a);
  drain(st[0], b, sizeof b);
  drain(dg[1], c, sizeof c);
  drain(sq[0], d, sizeof d);
  CHECK(send(st[1], "back", 4, 0) == 4);
  char e[128];
  drain(st[0], e, sizeof e);
  CHECK(send(dg[1], "x", 1, 0) == 1);
  char f[128];
  drain(dg[0], f, sizeof f);
  say("stream=%s,%s dgram=%s seqpacket=%s back=%s,%s", a, b, c, d, e, f);
  return 0;
}
