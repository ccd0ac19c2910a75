/* Shared by the feature programs: how they read their one input line and report. */
#ifndef PREWARM_TESTS_PROGS_PROG_H
#define PREWARM_TESTS_PROGS_PROG_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prints a line and flushes at once: the test reads stdout as a pipe, line by line. */
static inline void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

/* Reads one line from fd 0 with plain read(2), so the process is blocked in read(0, ...) when the
 * test snapshots it. The newline is dropped. */
static inline void read_line(char* buf, size_t size) {
  size_t n = 0;
  while (n + 1 < size) {
    char c;
    ssize_t r = read(0, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || c == '\n') break;
    buf[n++] = c;
  }
  buf[n] = '\0';
}

/* A check that failed after restore: the test prints stdout, so say what and exit 1. */
#define CHECK(cond)                                             \
  do {                                                          \
    if (!(cond)) {                                              \
      say("FAIL %s:%d: %s", __FILE__, __LINE__, #cond);         \
      exit(1);                                                  \
    }                                                           \
  } while (0)

/* Whether the mapping that starts at addr has VmFlag `flag` (two letters) in /proc/self/smaps:
 * 1 yes, 0 no, -1 no mapping starts there. */
static inline int has_vm_flag(unsigned long addr, const char* flag) {
  FILE* f = fopen("/proc/self/smaps", "r");
  char line[512], want[8];
  snprintf(want, sizeof want, " %s", flag);
  int in = 0, r = -1;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) in = lo == addr;
    else if (in && strncmp(line, "VmFlags:", 8) == 0) r = strstr(line, want) != NULL;
  }
  if (f) fclose(f);
  return r;
}

#endif
