/* madvise state the kernel shows in VmFlags: MADV_SEQUENTIAL (sr), MADV_RANDOM (rr) and, where
 * the kernel has KSM, MADV_MERGEABLE (mg), each on a mapping of its own with one page written and
 * one never touched. Reports each mapping's flags before and after; the contents must survive. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>

#include "prog.h"

enum { kLen = 64 << 10 };

/* Which of sr, rr, mg the mapping at addr has ("-": none, "?": not found). */
static const char* advice_of(unsigned long addr) {
  static char out[4][16];
  static int slot;
  char* r = out[slot++ % 4];
  r[0] = 0;
  for (const char* const* k = (const char* const[]){"sr", "rr", "mg", NULL}; *k; ++k) {
    const int has = has_vm_flag(addr, *k);
    if (has < 0) return "?";
    if (has) strcat(r[0] ? strcat(r, "+") : r, *k);
  }
  return r[0] ? r : "-";
}

static char* map(int advice) {
  char* p = mmap(NULL, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) exit(1);
  p[0] = 'x';
  if (advice >= 0 && madvise(p, kLen, advice) != 0) return NULL;
  return p;
}

int main(void) {
  char* seq = map(MADV_SEQUENTIAL);
  char* gap1 = map(-1);
  char* rnd = map(MADV_RANDOM);
  char* gap2 = map(-1);
  char* ksm = map(MADV_MERGEABLE);  /* NULL without CONFIG_KSM */
  if (!seq || !rnd || !gap1 || !gap2) return 1;
  say("ready pid=%d seq=%s rnd=%s ksm=%s", getpid(), advice_of((unsigned long)seq), advice_of((unsigned long)rnd),
      ksm ? advice_of((unsigned long)ksm) : "none");
  char line[64];
  read_line(line, sizeof line);
  const int same = seq[0] == 'x' && rnd[0] == 'x' && (!ksm || ksm[0] == 'x') && seq[kLen - 1] == 0;
  say("seq=%s rnd=%s ksm=%s contents=%s", advice_of((unsigned long)seq), advice_of((unsigned long)rnd),
      ksm ? advice_of((unsigned long)ksm) : "none", same ? "same" : "changed");
  return 0;
}
