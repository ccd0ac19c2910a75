/* Lazy restore: MiB (argv[1]) of patterned anonymous memory, every sixteenth page left zero, a
 * [heap] area, and THREADS (argv[2]) parked threads. After the restore one input line names
 * what to do first, before anything else touches the memory (so it meets pages not yet filled):
 *   check     syscalls into lazy pages (write(2) from one, read(2) into one), then every byte
 *   threads   every thread checks its own slice at the same time
 *   dontneed  MADV_DONTNEED on 1 MiB: zeros there, the pattern elsewhere
 *   remap     mremap of 8 MiB to a new place, munmap + fresh mmap of 1 MiB, mprotect of 1 MiB
 *   fork      a child checks every byte; the parent reports how it ended
 *   touch     only the first page (for bench/lazy.py)
 * and then answers "ok ..." or "FAIL ...". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "prog.h"

enum { kPage = 4096 };

static uint64_t* mem;
static size_t mem_len;
static uint64_t* heap;
static const size_t heap_len = 2u << 20;
static int nthreads;
static int gate[2];
static int results[2];

static uint64_t word(uint64_t seed, size_t i) {
  uint64_t x = seed + i * 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return (x ^ (x >> 31)) | 1;
}
static uint64_t expect(uint64_t seed, size_t i) { return (i * 8 / kPage) % 16 == 15 ? 0 : word(seed, i); }

static void fill(uint64_t* p, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len / 8; ++i) p[i] = expect(seed, i);
}

/* Index of the first wrong word of [from, to) (words), or (size_t)-1. */
static size_t first_bad(const uint64_t* p, uint64_t seed, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i)
    if (p[i] != expect(seed, i)) return i;
  return (size_t)-1;
}

static int check_all(void) {
  size_t bad = first_bad(mem, 1, 0, mem_len / 8);
  if (bad != (size_t)-1) {
    say("FAIL mem word %zu (page %zu) is %016lx, expected %016lx", bad, bad * 8 / kPage,
        (unsigned long)mem[bad], (unsigned long)expect(1, bad));
    return 0;
  }
  if ((bad = first_bad(heap, 2, 0, heap_len / 8)) != (size_t)-1) {
    say("FAIL heap word %zu", bad);
    return 0;
  }
  return 1;
}

static void* worker(void* arg) {
  const long k = (long)arg;
  char c;
  while (read(gate[0], &c, 1) != 1) {
  }
  const size_t words = mem_len / 8, per = words / (size_t)nthreads;
  const size_t from = per * (size_t)k, to = k == nthreads - 1 ? words : from + per;
  char r = first_bad(mem, 1, from, to) == (size_t)-1 ? 'y' : 'n';
  if (write(results[1], &r, 1) != 1) _exit(1);
  return NULL;
}

/* Kernel-mode accesses to pages not yet filled: write(2) reads one, read(2) writes into one. */
static int check_syscalls(void) {
  int p[2];
  CHECK(pipe(p) == 0);
  const size_t page = mem_len / kPage / 2 + 3; /* a page far from anything touched so far */
  uint64_t copy[kPage / 8];
  CHECK(write(p[1], (char*)mem + page * kPage, kPage) == kPage);
  CHECK(read(p[0], copy, kPage) == kPage);
  for (size_t i = 0; i < kPage / 8; ++i)
    if (copy[i] != expect(1, page * kPage / 8 + i)) return say("FAIL write(2) from a lazy page"), 0;
  const size_t into = mem_len / kPage / 4 + 5;
  const uint64_t marker[2] = {0x1111111111111111ull, 0x2222222222222222ull};
  CHECK(write(p[1], marker, sizeof marker) == sizeof marker);
  CHECK(read(p[0], (char*)mem + into * kPage + 64, sizeof marker) == sizeof marker);
  const uint64_t* w = mem + into * kPage / 8;
  if (w[8] != marker[0] || w[9] != marker[1]) return say("FAIL read(2) into a lazy page"), 0;
  for (size_t i = 0; i < kPage / 8; ++i)
    if (i != 8 && i != 9 && w[i] != expect(1, into * kPage / 8 + i)) return say("FAIL around read(2)"), 0;
  /* Put the two words back so check_all sees the pattern. */
  mem[into * kPage / 8 + 8] = expect(1, into * kPage / 8 + 8);
  mem[into * kPage / 8 + 9] = expect(1, into * kPage / 8 + 9);
  close(p[0]);
  close(p[1]);
  return 1;
}

int main(int argc, char** argv) {
  mem_len = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
  nthreads = argc > 2 ? atoi(argv[2]) : 0;
  mem = mmap(NULL, mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  heap = malloc(heap_len);
  if (mem == MAP_FAILED || heap == NULL || pipe(gate) || pipe(results)) return 1;
  fill(mem, mem_len, 1);
  fill(heap, heap_len, 2);
  pthread_t t[64];
  if (nthreads > 64) return 1;
  for (long k = 0; k < nthreads; ++k)
    if (pthread_create(&t[k], NULL, worker, (void*)k)) return 1;

  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);

  if (strcmp(line, "check") == 0) {
    if (!check_syscalls() || !check_all()) return 1;
    say("ok check");
  } else if (strcmp(line, "threads") == 0) {
    CHECK(nthreads > 0);
    char go[64];
    memset(go, 'g', sizeof go);
    CHECK(write(gate[1], go, (size_t)nthreads) == nthreads);
    int good = 0;
    for (int k = 0; k < nthreads; ++k) {
      char r;
      CHECK(read(results[0], &r, 1) == 1);
      good += r == 'y';
    }
    for (int k = 0; k < nthreads; ++k) pthread_join(t[k], NULL);
    if (good != nthreads || !check_all()) return say("FAIL threads good=%d of %d", good, nthreads), 1;
    say("ok threads=%d", nthreads);
  } else if (strcmp(line, "dontneed") == 0) {
    const size_t off = mem_len / 3 & ~(size_t)(kPage - 1), len = 1u << 20;
    CHECK(madvise((char*)mem + off, len, MADV_DONTNEED) == 0);
    for (size_t i = 0; i < len / 8; ++i)
      if (mem[off / 8 + i] != 0) return say("FAIL not zero after MADV_DONTNEED at word %zu", i), 1;
    /* Make the range match the pattern again, then everything must. */
    for (size_t i = 0; i < len / 8; ++i) mem[off / 8 + i] = expect(1, off / 8 + i);
    if (!check_all()) return 1;
    say("ok dontneed");
  } else if (strcmp(line, "remap") == 0) {
    /* mremap: 8 MiB from the middle moves elsewhere and must arrive with its bytes. */
    const size_t off = mem_len / 2 & ~(size_t)((2u << 20) - 1), len = 8u << 20;
    void* dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(dst != MAP_FAILED);
    uint64_t* moved = mremap((char*)mem + off, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    CHECK(moved == dst);
    for (size_t i = 0; i < len / 8; ++i)
      if (moved[i] != expect(1, off / 8 + i)) return say("FAIL moved word %zu", i), 1;
    CHECK(mremap(moved, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (char*)mem + off) == (char*)mem + off);
    /* munmap, then a fresh mapping at the same place: zeros, not the snapshot's bytes. */
    const size_t off2 = mem_len / 5 & ~(size_t)(kPage - 1), len2 = 1u << 20;
    CHECK(munmap((char*)mem + off2, len2) == 0);
    uint64_t* fresh = mmap((char*)mem + off2, len2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(fresh == (uint64_t*)((char*)mem + off2));
    for (size_t i = 0; i < len2 / 8; ++i)
      if (fresh[i] != 0) return say("FAIL not zero in a fresh mapping at word %zu", i), 1;
    for (size_t i = 0; i < len2 / 8; ++i) fresh[i] = expect(1, off2 / 8 + i);
    /* mprotect of pages not yet filled: readable with their bytes. */
    const size_t off3 = mem_len / 7 * 6 & ~(size_t)(kPage - 1);
    CHECK(mprotect((char*)mem + off3, 1u << 20, PROT_READ) == 0);
    size_t bad = first_bad(mem, 1, off3 / 8, (off3 + (1u << 20)) / 8);
    if (bad != (size_t)-1)
      return say("FAIL after mprotect: word %zu (page %zu) is %016lx", bad - off3 / 8, (bad - off3 / 8) * 8 / kPage,
                 (unsigned long)mem[bad]), 1;
    CHECK(mprotect((char*)mem + off3, 1u << 20, PROT_READ | PROT_WRITE) == 0);
    if (!check_all()) return 1;
    say("ok remap");
  } else if (strcmp(line, "touch") == 0) { /* bench/lazy.py: an app that needs little to answer */
    if (first_bad(mem, 1, 0, kPage / 8) != (size_t)-1) return say("FAIL first page"), 1;
    say("ok touch");
  } else if (strcmp(line, "fork") == 0) {
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) _exit(check_all() ? 0 : 1);
    int st = 0;
    CHECK(waitpid(c, &st, 0) == c);
    if (!check_all()) return 1;
    if (WIFEXITED(st))
      say("ok fork child=exit%d", WEXITSTATUS(st));
    else
      say("ok fork child=signal%d", WTERMSIG(st));
  } else {
    say("FAIL unknown command %s", line);
    return 1;
  }
  return 0;
}
