/* Open file round trip: reads the first 100 bytes of argv[1], is snapshotted, then reads the next
 * 100 bytes. The fd must come back with its number, flags and offset. */
#include <fcntl.h>

#include "prog.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  char first[101] = "", next[101] = "";
  if (fd < 0 || read(fd, first, 100) != 100) return 1;
  say("ready pid=%d fd=%d first=%s", getpid(), fd, first);
  char line[256];
  read_line(line, sizeof line);
  ssize_t n = read(fd, next, 100);
  say("fd=%d read=%zd next=%s offset=%ld cloexec=%d rdonly=%d", fd, n, n > 0 ? next : "",
      (long)lseek(fd, 0, SEEK_CUR), (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0,
      (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
  return 0;
}
