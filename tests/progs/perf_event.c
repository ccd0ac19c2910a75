/* A mapping prewarm cannot restore: the ring buffer of a perf event (the stand-in here for GPU/DRM
 * buffers, with the same VmFlags `pf io`). The fd is closed, so only the mapping remains; a dump
 * must refuse it (exit 3) and name it, and leave the process running. */
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "prog.h"

int main(void) {
  struct perf_event_attr attr = {.type = PERF_TYPE_SOFTWARE,
                                 .size = sizeof attr,
                                 .config = PERF_COUNT_SW_DUMMY,
                                 .disabled = 1,
                                 .exclude_kernel = 1,  /* allowed unprivileged at paranoid 2 */
                                 .exclude_hv = 1};
  int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) {
    say("skip: perf_event_open: %m");
    return 0;
  }
  size_t len = (1 + 8) * (size_t)sysconf(_SC_PAGESIZE);
  void* ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (ring == MAP_FAILED) return 1;
  close(fd);
  say("ready pid=%d ring=%lx", getpid(), (unsigned long)ring);
  char line[256];
  read_line(line, sizeof line);
  say("input=%s", line);
  return 0;
}
