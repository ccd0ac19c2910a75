/* flock and OFD locks belong to the open file: the restore reopens the file and takes the lock
 * again. After the restore the program finds its lock in its own fdinfo, and a second open file
 * description of the same file cannot take a conflicting lock. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "prog.h"

static int has_lock(int fd, const char* kind) {
  char path[64], buf[4096] = {0};
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  int info = open(path, O_RDONLY);
  if (info < 0 || read(info, buf, sizeof buf - 1) < 0) return 0;
  close(info);
  return strstr(buf, kind) != NULL;
}

int main(int argc, char** argv) {
  CHECK(argc == 3);
  const int ofd = strcmp(argv[1], "ofd") == 0;
  int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
  CHECK(fd >= 0);
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  if (ofd)
    CHECK(fcntl(fd, F_OFD_SETLK, &l) == 0);
  else
    CHECK(flock(fd, LOCK_EX) == 0);
  say("ready fd=%d", fd);
  char line[64];
  read_line(line, sizeof line);
  int other = open(argv[2], O_RDWR);
  CHECK(other >= 0);
  int conflict;
  if (ofd) {
    struct flock t = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 1};
    conflict = fcntl(other, F_OFD_SETLK, &t) != 0;
  } else {
    conflict = flock(other, LOCK_EX | LOCK_NB) != 0;
  }
  say("locked=%d conflict=%d", has_lock(fd, ofd ? "OFDLCK" : "FLOCK"), conflict);
  return 0;
}
