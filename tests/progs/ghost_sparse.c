/* Deleted open files as CRIU's zdtm ghost_holes*, file_attr, unlink_fstat01 and shmemfd use them.
 * argv[1]: a path in a scratch directory; argv[2] the case:
 *   sparse  a ghost file of 6 pages: hole, data, hole, data, hole, hole (ftruncate), its mtime and
 *           atime set to fixed times; after restore the holes must still be holes (SEEK_HOLE,
 *           st_blocks), the data where it was, the times unchanged.
 *   wronly  a ghost file open write-only only (the dump cannot read through the app's fd).
 *   shmem   an fd of a MAP_SHARED anonymous mapping opened through /proc/self/map_files, made
 *           O_APPEND: its F_GETFL flags must come back as they were. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "prog.h"

#define PG 4096

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const char* path = argv[1];
  const char* mode = argv[2];
  static char page[PG];
  int fd = -1;
  int flags_before = 0;
  memset(page, 'd', sizeof page);
  if (strcmp(mode, "sparse") == 0) {
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || pwrite(fd, page, PG, 1 * PG) != PG || pwrite(fd, page, PG, 3 * PG) != PG || ftruncate(fd, 6 * PG))
      return 1;
    const struct timespec times[2] = {{1000000, 250}, {2000000, 500}};
    if (futimens(fd, times) != 0 || unlink(path) != 0) return 1;
    /* Not every file system keeps holes: say what this one does, the test compares to it. */
    say("ready pid=%d hole0=%ld blocks=%ld", getpid(), (long)lseek(fd, 0, SEEK_HOLE), ({
          struct stat s;
          fstat(fd, &s) == 0 ? (long)s.st_blocks : -1L;
        }));
  } else if (strcmp(mode, "wronly") == 0) {
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "written", 7) != 7 || unlink(path) != 0) return 1;
    say("ready pid=%d", getpid());
  } else {
    void* addr = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_SHARED, -1, 0);
    char mf[128];
    snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", (long)addr, (long)addr + PG);
    fd = open(mf, O_RDWR);
    if (addr == MAP_FAILED || fd < 0 || munmap(addr, PG) != 0 || ftruncate(fd, 0) != 0 || fcntl(fd, F_SETFL, O_APPEND) != 0 ||
        write(fd, "hello", 5) != 5)
      return 1;
    flags_before = fcntl(fd, F_GETFL);
    say("ready pid=%d", getpid());
  }
  char line[64];
  read_line(line, sizeof line);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  if (strcmp(mode, "sparse") == 0) {
    char got[PG];
    CHECK(pread(fd, got, PG, 3 * PG) == PG);
    say("size=%ld hole0=%ld data=%ld hole1=%ld data3=%ld hole4=%ld blocks=%ld same=%d atime=%ld.%ld mtime=%ld.%ld",
        (long)st.st_size, (long)lseek(fd, 0, SEEK_HOLE), (long)lseek(fd, 0, SEEK_DATA), (long)lseek(fd, PG, SEEK_HOLE),
        (long)lseek(fd, 2 * PG, SEEK_DATA), (long)lseek(fd, 3 * PG, SEEK_HOLE), (long)st.st_blocks,
        memcmp(got, page, PG) == 0, (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec,
        st.st_mtim.tv_nsec);
  } else if (strcmp(mode, "wronly") == 0) {
    say("size=%ld acc=%d links=%ld", (long)st.st_size, fcntl(fd, F_GETFL) & O_ACCMODE, (long)st.st_nlink);
  } else {
    char got[6] = "";
    CHECK(pread(fd, got, 5, 0) == 5);
    say("flags_same=%d flags=%x read=%s", fcntl(fd, F_GETFL) == flags_before, fcntl(fd, F_GETFL) & ~0100000, got);
  }
  return 0;
}
