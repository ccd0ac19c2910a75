/* flock and OFD locks belong to the open file: the restore reopens the file and takes the lock
 * again. After the restore the program finds its lock in its own fdinfo, and a second open file
 * description of the same file cannot take a conflicting lock. A POSIX lock ("posix") belongs to
 * the process: a second fd on the file is open at the snapshot (a close of either would drop
 * the lock, as the launcher's closes would), and a child process is what cannot take it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>

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
  const int ofd = strcmp(argv[1], "ofd") == 0, posix = strcmp(argv[1], "posix") == 0;
  int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
  CHECK(fd >= 0);
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  int second = -1;
  if (posix) {
    struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 0};
    CHECK(fcntl(fd, F_SETLK, &l) == 0 && fcntl(fd, F_SETLK, &r) == 0);
    second = open(argv[2], O_RDONLY);
    CHECK(second >= 0);
  } else if (ofd) {
    CHECK(fcntl(fd, F_OFD_SETLK, &l) == 0);
  } else {
    CHECK(flock(fd, LOCK_EX) == 0);
  }
  say("ready fd=%d", fd);
  char line[64];
  read_line(line, sizeof line);
  if (posix) {
    pid_t child = fork();
    if (child == 0) {
      /* Conflicts: a write lock inside the write-locked range, and one in the read-locked tail;
       * a read lock of the tail does not. */
      int f = open(argv[2], O_RDWR);
      struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 1};
      struct flock t = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 300, .l_len = 1};
      struct flock rd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 300, .l_len = 1};
      _exit(f >= 0 && fcntl(f, F_SETLK, &w) != 0 && fcntl(f, F_SETLK, &t) != 0 && fcntl(f, F_SETLK, &rd) == 0 ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    say("locked=%d conflict=%d", has_lock(fd, "POSIX") && fcntl(second, F_GETFD) >= 0,
        WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return 0;
  }
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
