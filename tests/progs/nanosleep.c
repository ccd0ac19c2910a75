/* Sleep round trip: snapshotted in the middle of a 2 s nanosleep. The kernel cannot carry the
 * sleep's restart block into another process, so after restore nanosleep may return EINTR (with
 * the remaining time it had at the snapshot) instead of restarting; like any careful program this
 * one sleeps again for the remainder. Correct means: the sleep is neither cut short nor lost, and
 * the process goes on. It reports how often nanosleep was interrupted. */
#include <time.h>

#include "prog.h"

int main(void) {
  struct timespec req = {.tv_sec = 2}, rem;
  int eintr = 0;
  say("ready pid=%d", getpid());
  while (nanosleep(&req, &rem) != 0) {
    CHECK(errno == EINTR);
    CHECK(rem.tv_sec <= 2 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000);
    eintr++;
    req = rem;
  }
  say("woke eintr=%d", eintr);
  return 0;
}
