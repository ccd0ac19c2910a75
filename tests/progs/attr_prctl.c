/* Process attributes the restore carries: command name, child subreaper, THP disable, parent
 * death signal, timer slack, nice, oom_score_adj and a membarrier registration. Set up, ready,
 * then each is read back after the restore. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "prog.h"

static int oom_score_adj(void) {
  char buf[32] = {0};
  int fd = open("/proc/self/oom_score_adj", O_RDONLY);
  if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0) return -9999;
  close(fd);
  return atoi(buf);
}

int main(void) {
  CHECK(prctl(PR_SET_NAME, "attr-named") == 0);
  CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  CHECK(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0);
  CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR2) == 0);
  CHECK(prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0) == 0);
  CHECK(setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + 3) == 0);
  const int nice = getpriority(PRIO_PROCESS, 0);
  int fd = open("/proc/self/oom_score_adj", O_WRONLY);
  CHECK(fd >= 0 && write(fd, "345", 3) == 3);  /* raising it needs no privilege */
  close(fd);
  CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0);
  say("ready nice=%d", nice);
  char line[64];
  read_line(line, sizeof line);

  char name[17] = {0};
  prctl(PR_GET_NAME, name);
  int reaper = -1, pdeath = -1;
  prctl(PR_GET_CHILD_SUBREAPER, &reaper);
  prctl(PR_GET_PDEATHSIG, &pdeath);
  /* A private expedited barrier works only when this mm is registered. */
  long barrier = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  say("name=%s subreaper=%d thp_disable=%d pdeathsig=%d slack=%d nice=%d oom=%d membarrier=%s", name, reaper,
      prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), pdeath, prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0),
      getpriority(PRIO_PROCESS, 0), oom_score_adj(), barrier == 0 ? "registered" : "unregistered");
  return 0;
}
