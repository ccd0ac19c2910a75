/* timerfd round trip: a one-shot 60 s timer, a 20 ms periodic timer whose expirations pile up
 * unread, an absolute CLOCK_REALTIME timer, a disarmed one, and a 1 s timer the restored process
 * waits for. Each must come back with its clock, flags, remaining time and pending ticks. */
#include <poll.h>
#include <string.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>

#include "prog.h"

static int timer(int clock, int flags, long value_ms, long interval_ms, int settime_flags) {
  int fd = timerfd_create(clock, flags);
  struct itimerspec its = {{interval_ms / 1000, interval_ms % 1000 * 1000000}, {value_ms / 1000, value_ms % 1000 * 1000000}};
  if (settime_flags & TFD_TIMER_ABSTIME) {
    struct timespec now;
    clock_gettime(clock, &now);
    its.it_value.tv_sec += now.tv_sec;
  }
  if (fd < 0 || timerfd_settime(fd, settime_flags, &its, NULL) != 0) exit(1);
  return fd;
}

/* The "settime flags" and "clockid" lines of this fd's fdinfo. */
static void fdinfo(int fd, char* out, size_t size) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE* f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = 0;
  char* s = strstr(buf, "settime flags:");
  char* c = strstr(buf, "clockid:");
  snprintf(out, size, "clock%d/flags%o", c ? atoi(c + 8) : -1, s ? (unsigned)strtoul(s + 14, NULL, 8) : 99);
}

int main(void) {
  int oneshot = timer(CLOCK_MONOTONIC, TFD_CLOEXEC, 60000, 0, 0);
  int periodic = timer(CLOCK_MONOTONIC, TFD_NONBLOCK, 20, 20, 0);
  int absolute = timer(CLOCK_REALTIME, 0, 60000, 0, TFD_TIMER_ABSTIME);
  int disarmed = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
  int wait_for = timer(CLOCK_MONOTONIC, 0, 1000, 0, 0);
  struct timespec pause = {0, 200 * 1000000};
  nanosleep(&pause, NULL);  /* the periodic timer expires ~10 times, unread */
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  struct itimerspec a, b, d;
  timerfd_gettime(oneshot, &a);
  timerfd_gettime(absolute, &b);
  timerfd_gettime(disarmed, &d);
  uint64_t ticks = 0, fired = 0;
  CHECK(read(periodic, &ticks, sizeof ticks) == sizeof ticks);
  CHECK(read(wait_for, &fired, sizeof fired) == sizeof fired); /* blocks until it fires */
  struct pollfd again = {periodic, POLLIN, 0};
  int periodic_again = poll(&again, 1, 10000) == 1; /* still periodic, not disarmed */
  uint64_t none = 0;
  int disarmed_empty = read(disarmed, &none, sizeof none) < 0 && errno == EAGAIN;
  char fa[32], fb[32], fd_[32];
  fdinfo(oneshot, fa, sizeof fa);
  fdinfo(absolute, fb, sizeof fb);
  fdinfo(disarmed, fd_, sizeof fd_);
  say("oneshot=%d,%s absolute=%d,%s disarmed=%d,%d,%s periodic_ticks_ge_10=%d periodic_again=%d interval=%ld fired=%llu",
      a.it_value.tv_sec > 0 && a.it_value.tv_sec < 60, fa, b.it_value.tv_sec > 0 && b.it_value.tv_sec < 60, fb,
      d.it_value.tv_sec == 0 && d.it_value.tv_nsec == 0, disarmed_empty, fd_, ticks >= 10, periodic_again,
      (long)(a.it_interval.tv_sec), (unsigned long long)fired);
  return 0;
}
