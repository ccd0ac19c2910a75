/* PR_SET_THP_DISABLE and an 8 MiB private anonymous mapping with no THP advice (zdtm thp_disable):
 * after restore the mapping's VmFlags must still have neither hg nor nh, and the prctl still set. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "prog.h"

/* " hg" / " nh" among the VmFlags of the mapping at addr: 1 hg, 2 nh, 0 neither, -1 not found. */
static int advice_of(unsigned long addr) {
  const int hg = has_vm_flag(addr, "hg"), nh = has_vm_flag(addr, "nh");
  return hg < 0 ? -1 : (hg ? 1 : 0) | (nh ? 2 : 0);
}

int main(void) {
  const size_t len = 8u << 20;
  char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) return 1;
  memset(p, 7, len);
  say("ready pid=%d advice=%d", getpid(), advice_of((unsigned long)p));
  char line[64];
  read_line(line, sizeof line);
  say("thp_disable=%d advice=%d byte=%d", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), advice_of((unsigned long)p), p[len - 1]);
  return 0;
}
