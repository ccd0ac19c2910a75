/* A second thread, idle in pause(): the smallest multi-threaded round trip. */
#include <pthread.h>

#include "prog.h"

static void* idle(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, idle, NULL) != 0) return 1;
  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);
  say("input=%s", line);
  return 0;
}
