/* An fd on the process's own /proc entry, opened by pid number: after a restore it must be the
 * restored process's entry, not the snapshotted one's (nor an error). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>

#include "prog.h"

int main(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", (int)getpid());
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  say("ready fd=%d", fd);
  char line[64];
  read_line(line, sizeof line);
  char buf[4096] = {0};
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
  CHECK(read(fd, buf, sizeof buf - 1) > 0);
  const char* p = strstr(buf, "\nPid:");
  CHECK(p != NULL);
  say("own_pid=%d", atoi(p + 5) == (int)getpid());
  return 0;
}
