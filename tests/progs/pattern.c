/* Memory round trip: 64 MiB of anonymous memory and a brk-heap area filled with a pattern derived
 * from a random token (every eighth page left zero), so a restore that loses, shifts or zeroes a
 * page changes the checksum. */
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "prog.h"

enum { kPage = 4096 };

static uint64_t next(uint64_t* x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

static void fill(uint64_t* p, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len / 8; ++i)
    p[i] = (i * 8 / kPage) % 8 == 7 ? 0 : next(&seed);
}

static uint64_t checksum(const uint64_t* p, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len / 8; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int main(void) {
  uint64_t token;
  if (getrandom(&token, sizeof token, 0) != sizeof token) return 1;
  token |= 1;  /* xorshift needs a non-zero seed */

  const size_t anon_len = 64u << 20, heap_len = 4u << 20;
  uint64_t* anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  /* Keep malloc on brk so this area is the [heap] mapping, not another anonymous mmap. */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  uint64_t* heap = malloc(heap_len);
  if (anon == MAP_FAILED || heap == NULL || (void*)heap >= sbrk(0)) return 1;
  fill(anon, anon_len, token);
  fill(heap, heap_len, ~token);

  say("ready token=%016lx sum=%016lx pid=%d", (unsigned long)token,
      (unsigned long)(checksum(anon, anon_len) ^ checksum(heap, heap_len)), getpid());
  char line[256];
  read_line(line, sizeof line);
  say("token=%016lx sum=%016lx pid=%d input=%s", (unsigned long)token,
      (unsigned long)(checksum(anon, anon_len) ^ checksum(heap, heap_len)), getpid(), line);
  return 0;
}
