/* A socket-activated server, zdtm style: it takes its sockets from its launch by systemd's
 * protocol (LISTEN_PID, LISTEN_FDS, fds from 3), unsets the variables as sd_listen_fds(1) does,
 * makes fd 3 non-blocking, registers it in an epoll (as event-loop servers do) and draws a token
 * at start-up. Ready, it waits on stdin; then it serves one client on each socket it kept the
 * number of (a stream listener: accept and answer; a datagram socket: answer the first
 * datagram) with "token=T pid=P fd=N", fd 3 once its epoll says so, and says what it did.
 * After a restore the pid is the restored process's and the token the snapshot's. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "prog.h"

int main(void) {
  const char* lpid = getenv("LISTEN_PID");
  const char* lfds = getenv("LISTEN_FDS");
  int n = lfds && lpid && atoi(lpid) == getpid() ? atoi(lfds) : 0;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (n < 1) {
    say("no sockets passed");
    return 2;
  }
  uint32_t token = 0;
  if (getrandom(&token, sizeof token, 0) != sizeof token) return 1;
  /* Shared with the launcher's copy of the socket: a restore must leave it so. */
  fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x3333};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 3, &ev) != 0) return 1;
  say("ready pid=%d token=%08x sockets=%d", getpid(), token, n);
  char line[64];
  read_line(line, sizeof line);
  int served = 0, woken = 0;
  for (int fd = 3; fd < 3 + n; ++fd) {
    int type = 0, listening = 0;
    socklen_t l = sizeof type;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0);
    l = sizeof listening;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) == 0);
    char answer[96];
    int len = snprintf(answer, sizeof answer, "token=%08x pid=%d fd=%d", token, getpid(), fd);
    if (fd == 3) {
      struct epoll_event got;
      CHECK(epoll_wait(ep, &got, 1, 20000) == 1 && got.data.u64 == 0x3333);
      woken = 1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 20000) == 1);
    if (listening) {
      int c = accept(fd, NULL, NULL);
      CHECK(c >= 0 && write(c, answer, (size_t)len) == len);
      close(c);
    } else {
      struct sockaddr_storage from;
      socklen_t flen = sizeof from;
      char buf[64];
      CHECK(recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr*)&from, &flen) >= 0);
      CHECK(sendto(fd, answer, (size_t)len, 0, (struct sockaddr*)&from, flen) == len);
    }
    ++served;
  }
  say("served=%d nonblock=%d epoll=%d", served, (fcntl(3, F_GETFL) & O_NONBLOCK) != 0, woken);
  return 0;
}
