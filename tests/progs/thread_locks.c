/* A thread holds a lock that records its owner's tid (argv[1]): "recursive" (taken twice),
 * "errorcheck", "pi" (the futex word is the tid), "rwlock" (held for writing), "loaderlock"
 * (parked inside a dl_iterate_phdr callback: the dynamic loader's recursive lock). After the
 * input line it checks, as the holder, that the lock knows it (taking an error-checking mutex or
 * the rwlock again gives EDEADLK, a recursive one succeeds), releases it, and the main thread must then
 * take it within a few seconds. A lock still naming the snapshot's tid fails the release or the
 * take: the answer says which. alarm() turns a hang into a death the test sees. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "prog.h"

static const char* mode;
static pthread_mutex_t mutex;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int parked, go, released = -1, holder_check = -1;

static const char* err_name(int e) {
  static char other[16];
  switch (e) {
    case 0: return "0";
    case EDEADLK: return "EDEADLK";
    case EBUSY: return "EBUSY";
    case EPERM: return "EPERM";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: snprintf(other, sizeof other, "%d", e); return other;
  }
}

static struct timespec in_seconds(int s) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += s;
  return t;
}

static void wait_for_go(void) {
  pthread_mutex_lock(&gate_lock);
  parked = 1;
  pthread_cond_broadcast(&gate_cond);
  while (!go) pthread_cond_wait(&gate_cond, &gate_lock);
  pthread_mutex_unlock(&gate_lock);
}

static int park_in_callback(struct dl_phdr_info* info, size_t size, void* data) {
  (void)info, (void)size, (void)data;
  wait_for_go();
  return 1;  /* stop the iteration: the lock is released on return */
}

static void* holder(void* arg) {
  (void)arg;
  prctl(PR_SET_NAME, "lock-holder");
  if (strcmp(mode, "rwlock") == 0) {
    if (pthread_rwlock_wrlock(&rwlock) != 0) return NULL;
    wait_for_go();
    struct timespec until = in_seconds(2);
    holder_check = pthread_rwlock_timedwrlock(&rwlock, &until);
    released = pthread_rwlock_unlock(&rwlock);
  } else if (strcmp(mode, "loaderlock") == 0) {
    holder_check = 0;
    dl_iterate_phdr(park_in_callback, NULL);
    released = 0;
  } else {
    if (pthread_mutex_lock(&mutex) != 0) return NULL;
    if (strcmp(mode, "recursive") == 0 && pthread_mutex_lock(&mutex) != 0) return NULL;
    wait_for_go();
    if (strcmp(mode, "recursive") == 0) {
      holder_check = pthread_mutex_trylock(&mutex);
      if (holder_check == 0) pthread_mutex_unlock(&mutex);
    } else if (strcmp(mode, "errorcheck") == 0) {
      struct timespec until = in_seconds(2);
      holder_check = pthread_mutex_timedlock(&mutex, &until);
    } else {
      holder_check = 0;  /* a PI mutex's release is the check: the kernel compares the tid */
    }
    released = pthread_mutex_unlock(&mutex);
    if (released == 0 && strcmp(mode, "recursive") == 0) released = pthread_mutex_unlock(&mutex);
  }
  return NULL;
}

int main(int argc, char** argv) {
  mode = argc > 1 ? argv[1] : "";
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (strcmp(mode, "recursive") == 0) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  if (strcmp(mode, "errorcheck") == 0) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (strcmp(mode, "pi") == 0) pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  pthread_mutex_init(&mutex, &attr);
  pthread_t t;
  if (pthread_create(&t, NULL, holder, NULL) != 0) return 1;
  pthread_mutex_lock(&gate_lock);
  while (!parked) pthread_cond_wait(&gate_cond, &gate_lock);
  pthread_mutex_unlock(&gate_lock);
  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);
  alarm(20);
  pthread_mutex_lock(&gate_lock);
  go = 1;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
  pthread_join(t, NULL);
  struct timespec until = in_seconds(5);
  int taken;
  if (strcmp(mode, "rwlock") == 0) {
    taken = pthread_rwlock_timedwrlock(&rwlock, &until);
  } else if (strcmp(mode, "loaderlock") == 0) {
    taken = dlopen("libm.so.6", RTLD_NOW) ? 0 : -1; /* takes the loader's lock */
  } else {
    taken = pthread_mutex_timedlock(&mutex, &until);
  }
  say("answer holder=%s released=%s taken=%s", err_name(holder_check), err_name(released), err_name(taken));
  return 0;
}
