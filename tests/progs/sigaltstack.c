/* Signal state round trip: a SIGUSR1 handler installed with SA_ONSTACK on an alternate stack, and
 * SIGUSR2 blocked. After restore the test sends both signals, then a line; the program reports
 * whether the handler ran on the alternate stack and whether SIGUSR2 stayed pending. */
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "prog.h"

static char altstack[64 * 1024];
static volatile sig_atomic_t runs, on_altstack;

static void on_usr1(int sig) {
  (void)sig;
  char here;
  runs++;
  on_altstack = (uintptr_t)&here >= (uintptr_t)altstack &&
                (uintptr_t)&here < (uintptr_t)altstack + sizeof altstack;
}

int main(void) {
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART};
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  if (sigaltstack(&ss, NULL) || sigaction(SIGUSR1, &sa, NULL) ||
      sigprocmask(SIG_BLOCK, &usr2, NULL))
    return 1;

  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);

  sigset_t pending, blocked;
  sigpending(&pending);
  sigprocmask(SIG_BLOCK, NULL, &blocked);
  stack_t now;
  sigaltstack(NULL, &now);
  say("usr1_runs=%d usr1_on_altstack=%d usr2_pending=%d usr2_blocked=%d altstack_kept=%d",
      (int)runs, (int)on_altstack, sigismember(&pending, SIGUSR2), sigismember(&blocked, SIGUSR2),
      now.ss_sp == altstack && now.ss_size == sizeof altstack);
  return 0;
}
