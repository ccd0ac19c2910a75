/* vDSO round trip: glibc resolves clock_gettime into [vdso] at start-up and keeps calling through
 * that pointer, which reads [vvar]. After restore both must be back where the snapshot had them:
 * the call must work, agree with the real syscall and be monotonic, and /proc/self/maps must show
 * [vdso] at the address in the process's auxv. */
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>

#include "prog.h"

static int64_t ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static unsigned long vdso_in_maps(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long start = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, "[vdso]")) sscanf(line, "%lx-", &start);
  if (f) fclose(f);
  return start;
}

int main(void) {
  struct timespec before, after, sys;
  unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
  if (vdso == 0 || clock_gettime(CLOCK_MONOTONIC, &before)) return 1;
  say("ready pid=%d vdso=%lx", getpid(), vdso);
  char line[256];
  read_line(line, sizeof line);

  /* Bracketed by two real syscalls, as the kernel's vDSO selftest does: a vDSO reading a wrong
   * [vvar] falls outside, and no bound on how long this machine takes between the calls. */
  struct timespec sys_after;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &sys);
  int ok = clock_gettime(CLOCK_MONOTONIC, &after) == 0;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &sys_after);
  say("works=%d monotonic=%d agrees_with_syscall=%d vdso_in_maps=%d", ok,
      ns(after) >= ns(before), ns(sys) <= ns(after) && ns(after) <= ns(sys_after),
      vdso_in_maps() == vdso);
  return 0;
}
