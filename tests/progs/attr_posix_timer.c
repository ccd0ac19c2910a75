/* POSIX timers (timer_create): the restore recreates them with their ids, since the app holds
 * them as timer_t. Timer 1 (timer 0 was deleted, so its id is not the first free one) is armed
 * 1000 s ahead with a 5 s interval; in "fire" mode a 2 s timer's SIGUSR1 with its sigev_value must
 * arrive after the restore. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "prog.h"

static volatile sig_atomic_t fired, value_ok;
static void on_usr1(int sig, siginfo_t* si, void* ctx) {
  (void)sig, (void)ctx;
  ++fired;
  value_ok = si->si_value.sival_int == 0x1234;
}

int main(int argc, char** argv) {
  const int fire = argc > 1 && strcmp(argv[1], "fire") == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
  struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
  ev.sigev_value.sival_int = 0x1234;
  timer_t first, kept;
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &first) == 0);
  CHECK(timer_create(CLOCK_MONOTONIC, &ev, &kept) == 0);
  CHECK(timer_delete(first) == 0);
  struct itimerspec v = {.it_interval = {5, 0}, .it_value = {fire ? 2 : 1000, 0}};
  CHECK(timer_settime(kept, 0, &v, NULL) == 0);
  say("ready id=%ld", (long)(intptr_t)kept);
  char line[64];
  read_line(line, sizeof line);
  if (fire)
    while (fired == 0) pause();  /* a lost timer never gets here: the test times out */
  struct itimerspec now;
  CHECK(timer_gettime(kept, &now) == 0);
  say("armed=%d interval=%ld fired=%d value_ok=%d", now.it_value.tv_sec > 0 || now.it_value.tv_nsec > 0,
      (long)now.it_interval.tv_sec, fired > 0, (int)value_ok);
  return 0;
}
