/* A MAP_SHARED|MAP_ANONYMOUS mapping whose data is not all mapped here, at an offset into its
 * shmem object (its first page unmapped): page 0 written, page 1 written and then dropped from
 * this process's page tables (MADV_DONTNEED: the object keeps it), page 2 never written, page 3
 * written only by a child through its inherited mapping. The answer is each page's first byte
 * ('0' for zero), and whether the never-written page is in the object after the dump (mincore): a
 * dump that lists the object's data leaves it out, one that reads every page allocates it. */
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "prog.h"

enum { kPage = 4096, kPages = 4 };

int main(void) {
  char* all = mmap(NULL, (kPages + 1) * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(all != MAP_FAILED);
  CHECK(munmap(all, kPage) == 0);  /* the rest maps the object from offset 4096 */
  char* p = all + kPage;
  memset(p, 'a', kPage);
  memset(p + kPage, 'b', kPage);
  CHECK(madvise(p + kPage, kPage, MADV_DONTNEED) == 0);
  pid_t kid = fork();
  CHECK(kid >= 0);
  if (kid == 0) {
    memset(p + 3 * kPage, 'd', kPage);
    _exit(0);
  }
  int st = 0;
  CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  say("ready");
  char line[64];
  read_line(line, sizeof line);
  unsigned char in[kPages];
  CHECK(mincore(p, kPages * kPage, in) == 0);
  const int hole = in[2] & 1;  /* before anything below touches it */
  char first[kPages + 1] = {0};
  for (int i = 0; i < kPages; i++) first[i] = p[i * kPage] ? p[i * kPage] : '0';
  say("answer %s last=%c hole_in_object=%d", first, p[kPages * kPage - 1] ? p[kPages * kPage - 1] : '0', hole);
  return 0;
}
