/* eventfd round trip: a counter of 7 (nonblocking, shared by a dup) and a semaphore of 3 must come
 * back with their counts, flags and sharing. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>

#include "prog.h"

static const char* rd(int fd) {
  static char out[8][32];
  static int k;
  uint64_t v = 0;
  char* o = out[k++ & 7];
  if (read(fd, &v, sizeof v) != sizeof v)
    snprintf(o, 32, "%s", errno == EAGAIN ? "EAGAIN" : "ERR");
  else
    snprintf(o, 32, "%llu", (unsigned long long)v);
  return o;
}

int main(void) {
  int counter = eventfd(7, EFD_NONBLOCK | EFD_CLOEXEC);
  int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
  int dup_of_counter = dup(counter);
  if (counter < 0 || sem < 0 || dup_of_counter < 0) return 1;
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  uint64_t five = 5;
  const char* c1 = rd(counter);
  CHECK(write(dup_of_counter, &five, sizeof five) == sizeof five);
  const char* c2 = rd(counter);
  const char* c3 = rd(counter);
  const char* s1 = rd(sem);
  const char* s2 = rd(sem);
  const char* s3 = rd(sem);
  const char* s4 = rd(sem);
  say("counter=%s shared=%s empty=%s sem=%s,%s,%s,%s nonblock=%d", c1, c2, c3, s1, s2, s3, s4,
      (fcntl(counter, F_GETFL) & O_NONBLOCK) != 0);
  return 0;
}
