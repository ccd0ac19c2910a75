/* setitimer timers: ITIMER_REAL armed far ahead (its remaining time must survive) and a short
 * ITIMER_REAL in the "fire" mode, whose SIGALRM must arrive after the restore. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/time.h>

#include "prog.h"

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; ++alarms; }

int main(int argc, char** argv) {
  const int fire = argc > 1 && strcmp(argv[1], "fire") == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = SA_RESTART;
  CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
  struct itimerval v = {.it_interval = {7, 0}, .it_value = {fire ? 2 : 1000, 0}};
  CHECK(setitimer(ITIMER_REAL, &v, NULL) == 0);
  struct itimerval prof = {.it_interval = {0, 0}, .it_value = {500, 0}};
  CHECK(setitimer(ITIMER_PROF, &prof, NULL) == 0);
  say("ready");
  char line[64];
  read_line(line, sizeof line);
  if (fire) {
    while (alarms == 0) pause();  /* a lost timer never gets here: the test times out */
  }
  struct itimerval now, pnow;
  getitimer(ITIMER_REAL, &now);
  getitimer(ITIMER_PROF, &pnow);
  say("armed=%d interval=%ld prof_armed=%d alarms_seen=%d", now.it_value.tv_sec > 0 || now.it_value.tv_usec > 0,
      (long)now.it_interval.tv_sec, pnow.it_value.tv_sec > 400, alarms > 0);
  return 0;
}
