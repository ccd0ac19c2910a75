/* mlock'ed mappings (zdtm mlock_setuid's part that needs no setuid): one locked with mlock, one
 * with mlock2(MLOCK_ONFAULT) and only its first page touched, one so locked and never touched and
 * one mlock'ed and never written (no page stored for these two: the restorer blob maps and
 * locks them), one not locked. With the argument "zeroed", only the one never written is locked,
 * with plain mlock(2) (so the program runs where mlock2 is refused). Reports each
 * mapping's lo/lf VmFlags and the process's VmLck before and after; the contents must survive. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>

#include "prog.h"

enum { kLen = 64 << 10 };

/* "lo", "lo+lf" or "-" for the mapping at addr; "?" if not found. */
static const char* locks_of(unsigned long addr) {
  const int l = has_vm_flag(addr, "lo"), lf = has_vm_flag(addr, "lf");
  return l < 0 ? "?" : l && lf ? "lo+lf" : l ? "lo" : lf ? "lf" : "-";
}

static long vm_lck_kb(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmLck: %ld kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb;
}

static char* map(void) {
  char* p = mmap(NULL, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) exit(1);
  return p;
}

int main(int argc, char** argv) {
  const int all = !(argc > 1 && strcmp(argv[1], "zeroed") == 0);
  char* locked = map();
  char* onfault = map();
  char* plain = map();
  char* untouched = map();
  char* zeroed = map();
  memset(locked, 'L', kLen);
  memset(plain, 'P', kLen);
  if (mlock(zeroed, kLen) != 0) return 1;
  if (all && (mlock(locked, kLen) != 0 || mlock2(onfault, kLen, MLOCK_ONFAULT) != 0 || mlock2(untouched, kLen, MLOCK_ONFAULT) != 0))
    return 1;
  onfault[0] = 'O';
  say("ready pid=%d locked=%s onfault=%s untouched=%s zeroed=%s plain=%s vmlck=%ld", getpid(),
      locks_of((unsigned long)locked), locks_of((unsigned long)onfault), locks_of((unsigned long)untouched),
      locks_of((unsigned long)zeroed), locks_of((unsigned long)plain), vm_lck_kb());
  char line[64];
  read_line(line, sizeof line);
  const int same = locked[kLen - 1] == 'L' && onfault[0] == 'O' && onfault[kLen - 1] == 0 && plain[kLen - 1] == 'P';
  say("locked=%s onfault=%s untouched=%s zeroed=%s plain=%s vmlck=%ld contents=%s", locks_of((unsigned long)locked),
      locks_of((unsigned long)onfault), locks_of((unsigned long)untouched), locks_of((unsigned long)zeroed),
      locks_of((unsigned long)plain), vm_lck_kb(), same && untouched[0] == 0 && zeroed[kLen - 1] == 0 ? "same" : "changed");
  return 0;
}
