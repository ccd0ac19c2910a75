/* epoll round trip: a pipe with data (level), an eventfd with a count (edge), an idle eventfd. After
 * restore epoll_wait must report the ready ones with their data, the registrations must be keyed
 * by the same fd numbers (MOD, DEL work) and a new event must wake it.
 * With "stale", a registration outlives its fd number (the file lives on in a dup): refused. */
#include <string.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "prog.h"

static void add(int ep, int fd, uint32_t events, uint64_t data) {
  struct epoll_event ev = {.events = events, .data.u64 = data};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) exit(1);
}

static void report(int ep, char* out, size_t size) {
  struct epoll_event evs[8];
  int n = epoll_wait(ep, evs, 8, 0);
  uint64_t seen = 0;
  for (int i = 0; i < n; ++i) seen |= evs[i].data.u64;
  snprintf(out, size, "%d:%llx", n, (unsigned long long)seen);
}

int main(int argc, char** argv) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int p[2];
  if (ep < 0 || pipe(p) != 0 || write(p[1], "x", 1) != 1) return 1;
  int ready_ev = eventfd(1, EFD_NONBLOCK);
  int idle_ev = eventfd(0, EFD_NONBLOCK);
  add(ep, p[0], EPOLLIN, 0x100);
  add(ep, ready_ev, EPOLLIN | EPOLLET, 0x20);
  add(ep, idle_ev, EPOLLIN, 0x3);
  add(ep, 0, EPOLLIN, 0x1000);  /* stdin: after a restore, the launch's own */
  const int stale = argc > 1 && strcmp(argv[1], "stale") == 0;
  if (stale) {
    int keep = dup(idle_ev);
    close(idle_ev);  /* the registration keeps fd number idle_ev, now closed */
    say("ready pid=%d keep=%d", getpid(), keep);
  } else {
    say("ready pid=%d", getpid());
  }
  char line[64], first[32], after_mod[32], woken[32];
  read_line(line, sizeof line);
  if (stale) {
    say("not snapshotted, as it must be");
    return 0;
  }
  report(ep, first, sizeof first);
  struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = 0x100};
  int mod = epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);  /* a read end is never writable */
  int del = epoll_ctl(ep, EPOLL_CTL_DEL, ready_ev, NULL);
  int del0 = epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);  /* stdin was registered (and is drained) */
  report(ep, after_mod, sizeof after_mod);
  uint64_t one = 1;
  CHECK(write(idle_ev, &one, sizeof one) == sizeof one);
  report(ep, woken, sizeof woken);
  say("first=%s mod=%d del=%d del0=%d after=%s woken=%s", first, mod, del, del0, after_mod, woken);
  return 0;
}
