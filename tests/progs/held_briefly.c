/* A thread holds a recursive mutex of the program's own (in the heap, outside glibc's data, where
 * a dump does not rewrite its tid) only until the process has been frozen once: a watcher thread
 * waits in sigwaitinfo for a signal nobody sends, which a ptrace freeze ends with EINTR. On the
 * input line the main thread joins the holder and takes the mutex: "answer RELEASE TAKE" (0 0
 * when the holder released a lock that was its own). An image that caught the mutex held names
 * the snapshot's tid as owner: the restored holder's release fails (EPERM) and the take times out. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "prog.h"

static pthread_mutex_t* lock;
static volatile int stopped, released = -1;

static void nap(void) {
  struct timespec t = {0, 1000000};
  nanosleep(&t, NULL);
}

static void* watcher(void* arg) {
  sigset_t* never = arg;
  while (sigwaitinfo(never, NULL) < 0 && errno != EINTR) {
  }
  stopped = 1;
  return NULL;
}

static void* holder(void* arg) {
  (void)arg;
  pthread_mutex_lock(lock);
  while (!stopped) nap();
  released = pthread_mutex_unlock(lock);
  return NULL;
}

int main(void) {
  static sigset_t never;
  sigemptyset(&never);
  sigaddset(&never, SIGUSR2);
  CHECK(pthread_sigmask(SIG_BLOCK, &never, NULL) == 0);  /* in every thread: only sigwaitinfo takes it */
  lock = malloc(sizeof *lock);
  CHECK(lock != NULL);
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(lock, &a);
  pthread_t w, h;
  pthread_create(&h, NULL, holder, NULL);
  while (pthread_mutex_trylock(lock) == 0) pthread_mutex_unlock(lock), nap();  /* the holder has it */
  pthread_create(&w, NULL, watcher, &never);
  say("ready");
  char line[64];
  read_line(line, sizeof line);
  pthread_join(h, NULL);
  pthread_join(w, NULL);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  const int take = pthread_mutex_timedlock(lock, &until);
  say("answer %d %d", released, take);
  return 0;
}
