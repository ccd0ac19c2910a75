/* signalfd round trip: SIGUSR1 and SIGUSR2 blocked and read through a nonblocking signalfd. The
 * test sends SIGUSR1 to the restored process: the signalfd must report it, then be empty. */
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>

#include "prog.h"

int main(void) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) return 1;
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return 1;
  say("ready pid=%d", getpid());
  char line[64];
  read_line(line, sizeof line);
  struct signalfd_siginfo si;
  memset(&si, 0, sizeof si);
  ssize_t n = read(sfd, &si, sizeof si);
  int empty = read(sfd, &si, sizeof si) < 0 && errno == EAGAIN;
  say("signo=%d empty=%d", n == sizeof si ? (int)si.ssi_signo : -1, empty);
  return 0;
}
