/* A thread waits in vfork for its child, in an uninterruptible sleep that no ptrace interrupt
 * ends: a freeze cannot hold it. The child (sharing the memory) waits for the input line; then
 * the thread returns from vfork and reaps it: "answer STATUS" (0: the child exited as it should). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "prog.h"

static volatile int release, vforker_tid, status = -1;

static void* vforker(void* arg) {
  (void)arg;
  vforker_tid = (int)syscall(SYS_gettid);
  const pid_t child = vfork();
  if (child == 0) {
    struct timespec t = {0, 1000000};
    while (!release) syscall(SYS_nanosleep, &t, NULL);
    _exit(0);
  }
  int st = 0;
  if (child > 0 && waitpid(child, &st, 0) == child) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return NULL;
}

static char state_of(int tid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE* f = fopen(path, "r");
  if (!f) return '?';
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* close = strrchr(buf, ')');
  return close && close[1] && close[2] ? close[2] : '?';
}

int main(void) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, vforker, NULL) == 0);
  struct timespec nap = {0, 1000000};
  while (!vforker_tid || state_of(vforker_tid) != 'D') nanosleep(&nap, NULL);
  say("ready vforker=%d", vforker_tid);
  char line[64];
  read_line(line, sizeof line);
  release = 1;
  pthread_join(t, NULL);
  say("answer %d", status);
  return 0;
}
