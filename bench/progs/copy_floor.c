/* The copy floor: preadv a file into a freshly mmapped anonymous buffer of its size (first-touch
 * faults included, as every copy-based restore pays them). Prints milliseconds. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return 1;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char* p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct iovec iov = {p, (size_t)st.st_size};
  ssize_t n = preadv(fd, &iov, 1, 0);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (p == MAP_FAILED || n != st.st_size) return 1;
  printf("%.3f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
  return 0;
}
