/* memfd round trip: a memfd "jit-cache" holding 100000 bytes of a pattern, mode 0600, its offset at
 * 1234, sealed against shrinking and growing. After restore it reads on from the same offset,
 * has the same size, name and seals, and refuses to grow.
 * With "mapped", the memfd is also mapped shared: refused (mappings of memfds are not carried). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "prog.h"

#define N 100000

int main(int argc, char** argv) {
  int fd = memfd_create("jit-cache", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  static char buf[N];
  for (int i = 0; i < N; ++i) buf[i] = (char)('A' + i % 26);
  if (fd < 0 || write(fd, buf, N) != N || fchmod(fd, 0600) || lseek(fd, 1234, SEEK_SET) != 1234 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
    return 1;
  if (argc > 1 && strcmp(argv[1], "mapped") == 0 && mmap(NULL, N, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED) return 1;
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  if (argc > 1) {
    say("not snapshotted, as it must be");
    return 0;
  }
  char got[10] = "";
  CHECK(read(fd, got, 9) == 9);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  char link[64] = "", path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  CHECK(readlink(path, link, sizeof link - 1) > 0);
  int seals = fcntl(fd, F_GET_SEALS);
  int grow_refused = ftruncate(fd, N + 1) != 0 && errno == EPERM;
  say("read=%s same=%d size=%ld mode=%o link=%s seals=%d grow_refused=%d cloexec=%d", got,
      memcmp(got, buf + 1234, 9) == 0, (long)st.st_size, st.st_mode & 0777, link,
      seals == (F_SEAL_SHRINK | F_SEAL_GROW), grow_refused, (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  return 0;
}
