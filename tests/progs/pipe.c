/* Pipe round trip: a 1 MiB pipe holding 300000 bytes of a pattern (nonblocking read end, the write
 * end dup'ed) must come back with its size, bytes in order and flags, still connected: what is
 * written after restore is read after the old bytes, and closing both write fds gives EOF.
 * With "outside", the read end is closed: a pipe whose other end is not in the process, refused. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>

#include "prog.h"

#define N 300000

int main(int argc, char** argv) {
  int p[2];
  if (pipe(p) != 0 || fcntl(p[1], F_SETPIPE_SZ, 1 << 20) < 0) return 1;
  static char buf[N + 16];
  for (int i = 0; i < N; ++i) buf[i] = (char)('a' + i % 23);
  if (write(p[1], buf, N) != N) return 1;
  const int outside = argc > 1 && strcmp(argv[1], "outside") == 0;
  if (argc > 1 && strcmp(argv[1], "async") == 0) {  /* SIGIO on input: not carried */
    fcntl(p[0], F_SETOWN, getpid());
    fcntl(p[0], F_SETFL, O_ASYNC);
    say("ready pid=%d", getpid());
    char line[64];
    read_line(line, sizeof line);
    say("not snapshotted, as it must be");
    return 0;
  }
  if (outside) close(p[0]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  int w2 = dup(p[1]);
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  if (outside) {
    say("not snapshotted, as it must be");
    return 0;
  }
  CHECK(write(w2, "tail", 4) == 4);
  static char got[N + 16];
  size_t n = 0;
  ssize_t k;
  while ((k = read(p[0], got + n, sizeof got - n)) > 0) n += (size_t)k;
  int again = k < 0 && errno == EAGAIN;
  int same = n == N + 4 && memcmp(got, buf, N) == 0 && memcmp(got + N, "tail", 4) == 0;
  int size = fcntl(p[1], F_GETPIPE_SZ);
  close(p[1]);
  close(w2);
  int eof = read(p[0], got, 1) == 0;
  say("bytes=%zu same=%d nonblock_again=%d size=%d eof=%d", n, same, again, size, eof);
  return 0;
}
