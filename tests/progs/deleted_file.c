/* A deleted open file (a ghost file): argv[1] is a path in a scratch directory. The program writes
 * 50000 bytes of a pattern there, keeps it open read-write at offset 777 (and a dup of that fd),
 * and unlinks it. After restore it reads on from the same offset through one fd, sees the dup's
 * offset move with it (one open file description), appends through the other and reads that back:
 * the file is still unnamed (no link), in the same directory's file system, mode 0640.
 * With "linked", a second name keeps the file alive: refused (it is not gone, only renamed). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "prog.h"

#define N 50000

int main(int argc, char** argv) {
  const char* path = argv[1];
  const int linked = argc > 2 && strcmp(argv[2], "linked") == 0;
  static char buf[N];
  for (int i = 0; i < N; ++i) buf[i] = (char)('a' + i % 26);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  if (fd < 0 || write(fd, buf, N) != N || lseek(fd, 777, SEEK_SET) != 777) return 1;
  int dup_fd = dup(fd);
  char other[4096];
  snprintf(other, sizeof other, "%s.link", path);
  if (linked && link(path, other) != 0) return 1;
  if (unlink(path) != 0) return 1;
  struct stat dir_st;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = '\0';
  if (stat(dir, &dir_st) != 0) return 1;
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  if (linked) {
    say("not snapshotted, as it must be");
    return 0;
  }
  char got[10] = "";
  CHECK(read(fd, got, 9) == 9);
  const long shared_pos = (long)lseek(dup_fd, 0, SEEK_CUR);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  CHECK(lseek(fd, 0, SEEK_END) == N);
  CHECK(write(dup_fd, "TAIL", 4) == 4);
  char tail[5] = "";
  CHECK(pread(fd, tail, 4, N) == 4);
  say("read=%s same=%d pos=%ld size=%ld mode=%o links=%ld same_fs=%d tail=%s", got, memcmp(got, buf + 777, 9) == 0,
      shared_pos, (long)st.st_size, st.st_mode & 0777, (long)st.st_nlink, st.st_dev == dir_st.st_dev, tail);
  return 0;
}
