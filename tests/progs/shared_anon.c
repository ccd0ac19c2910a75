/* A MAP_SHARED|MAP_ANONYMOUS mapping whose data is not all mapped here: page 0 written, page 1
 * written and then dropped from this process's page tables (MADV_DONTNEED: the shmem object keeps
 * it), page 2 never written, page 3 written only by a child through its inherited mapping. The
 * answer is each page's first byte ('0' for zero): a dump that trusts the page tables loses 1 and 3. */
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "prog.h"

enum { kPage = 4096, kPages = 4 };

int main(void) {
  char* p = mmap(NULL, kPages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
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
  char first[kPages + 1] = {0};
  for (int i = 0; i < kPages; i++) first[i] = p[i * kPage] ? p[i * kPage] : '0';
  say("answer %s last=%c", first, p[kPages * kPage - 1] ? p[kPages * kPage - 1] : '0');
  return 0;
}
