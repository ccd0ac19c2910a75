/* madvise state the kernel shows in VmFlags: MADV_SEQUENTIAL (sr), MADV_RANDOM (rr) and, where
 * the kernel has KSM, MADV_MERGEABLE (mg), each on a mapping with a page written (staged by the
 * launcher) and on one never touched (mapped by the restorer blob). Reports each mapping's flags
 * before and after; the contents must survive. */
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

static char* map(int advice, int touch) {
  char* p = mmap(NULL, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) exit(1);
  if (touch) p[0] = 'x';
  if (advice >= 0 && madvise(p, kLen, advice) != 0) return NULL;
  return p;
}

int main(void) {
  /* Unadvised, touched mappings between the others keep neighbours from merging. */
  char *m[6], *gap[6];
  const int advice[3] = {MADV_SEQUENTIAL, MADV_RANDOM, MADV_MERGEABLE};
  for (int i = 0; i < 6; ++i) {
    m[i] = map(advice[i % 3], i < 3);  /* NULL for MADV_MERGEABLE without CONFIG_KSM */
    gap[i] = map(-1, 1);
    if ((!m[i] && i % 3 != 2) || !gap[i]) return 1;
  }
  char* seq = m[0];
  char* rnd = m[1];
  char* ksm = m[2];
  char report[256];
  snprintf(report, sizeof report, "untouched: seq=%s rnd=%s ksm=%s", advice_of((unsigned long)m[3]),
           advice_of((unsigned long)m[4]), m[5] ? advice_of((unsigned long)m[5]) : "none");
  say("ready pid=%d seq=%s rnd=%s ksm=%s %s", getpid(), advice_of((unsigned long)seq), advice_of((unsigned long)rnd),
      ksm ? advice_of((unsigned long)ksm) : "none", report);
  char line[64];
  read_line(line, sizeof line);
  const int same = seq[0] == 'x' && rnd[0] == 'x' && (!ksm || ksm[0] == 'x') && seq[kLen - 1] == 0;
  snprintf(report, sizeof report, "untouched: seq=%s rnd=%s ksm=%s", advice_of((unsigned long)m[3]),
           advice_of((unsigned long)m[4]), m[5] ? advice_of((unsigned long)m[5]) : "none");
  say("seq=%s rnd=%s ksm=%s %s contents=%s", advice_of((unsigned long)seq), advice_of((unsigned long)rnd),
      ksm ? advice_of((unsigned long)ksm) : "none", report, same && m[3][kLen - 1] == 0 ? "same" : "changed");
  return 0;
}
