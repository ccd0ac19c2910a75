/* Threads hold locks that record their owner's tid (argv[1]): "pi", three threads each holding a
 * PI mutex (the futex word is the tid); "pi_page_end", the same with each mutex in the last 24
 * bytes of a page, its robust-list fields on the next page, which stays zero (a page the dump
 * skips); "pi_shared", process-shared PI mutexes in a MAP_SHARED|MAP_ANONYMOUS mapping (the
 * restore's own copy of the object); "rwlock", three each holding an rwlock for writing;
 * "loaderlock", one parked inside a dl_iterate_phdr callback (the dynamic loader's recursive
 * lock). After the input line each holder checks the lock is its own (taking its rwlock again
 * gives EDEADLK) and releases it, and the main thread must then take every one within seconds. A
 * lock still naming the snapshot's tid, or another thread's, fails the release (EPERM; glibc
 * aborts for PI) or the take: the answer says which. alarm() turns a hang into a death. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#include "prog.h"

#define HOLDERS 3

static const char* mode;
static pthread_mutex_t mutex_array[HOLDERS];
static pthread_mutex_t* mutexes[HOLDERS];
static pthread_rwlock_t rwlocks[HOLDERS];
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int parked, go, released[HOLDERS], holder_check[HOLDERS];

static const char* err_name(int e) {
  static char other[HOLDERS + 1][16];
  static int next;
  switch (e) {
    case 0: return "0";
    case EDEADLK: return "EDEADLK";
    case EBUSY: return "EBUSY";
    case EPERM: return "EPERM";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: next = (next + 1) % (HOLDERS + 1); snprintf(other[next], sizeof other[next], "%d", e); return other[next];
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
  parked++;
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
  const int i = (int)(intptr_t)arg;
  char name[16];
  snprintf(name, sizeof name, "lock-holder-%d", i);
  prctl(PR_SET_NAME, name);
  if (strcmp(mode, "rwlock") == 0) {
    if (pthread_rwlock_wrlock(&rwlocks[i]) != 0) return NULL;
    wait_for_go();
    struct timespec until = in_seconds(2);
    holder_check[i] = pthread_rwlock_timedwrlock(&rwlocks[i], &until);
    released[i] = pthread_rwlock_unlock(&rwlocks[i]);
  } else if (strcmp(mode, "loaderlock") == 0) {
    dl_iterate_phdr(park_in_callback, NULL);
  } else {
    if (pthread_mutex_lock(mutexes[i]) != 0) return NULL;
    wait_for_go();
    released[i] = pthread_mutex_unlock(mutexes[i]);
  }
  return NULL;
}

int main(int argc, char** argv) {
  mode = argc > 1 ? argv[1] : "";
  const int holders = strcmp(mode, "loaderlock") == 0 ? 1 : HOLDERS;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
  pthread_t t[HOLDERS];
  char* pages = NULL;
  const int shared = strcmp(mode, "pi_shared") == 0;
  if (shared) pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (strcmp(mode, "pi_page_end") == 0 || shared) {
    pages = mmap(NULL, 2 * HOLDERS * 4096, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS,
                 -1, 0);
    if (pages == MAP_FAILED) return 1;
  }
  for (int i = 0; i < holders; i++) {
    mutexes[i] = shared ? (pthread_mutex_t*)(pages + i * 64)
                 : pages ? (pthread_mutex_t*)(pages + (2 * i + 1) * 4096 - 24)
                         : &mutex_array[i];
    pthread_mutex_init(mutexes[i], &attr);
    pthread_rwlock_init(&rwlocks[i], NULL);
    if (pthread_create(&t[i], NULL, holder, (void*)(intptr_t)i) != 0) return 1;
  }
  pthread_mutex_lock(&gate_lock);
  while (parked < holders) pthread_cond_wait(&gate_cond, &gate_lock);
  pthread_mutex_unlock(&gate_lock);
  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);
  alarm(20);
  pthread_mutex_lock(&gate_lock);
  go = 1;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
  char answer[256] = "answer";
  for (int i = 0; i < holders; i++) {
    pthread_join(t[i], NULL);
    struct timespec until = in_seconds(5);
    int taken;
    if (strcmp(mode, "rwlock") == 0)
      taken = pthread_rwlock_timedwrlock(&rwlocks[i], &until);
    else if (strcmp(mode, "loaderlock") == 0)
      taken = dlopen("libm.so.6", RTLD_NOW) ? 0 : -1; /* takes the loader's lock */
    else
      taken = pthread_mutex_timedlock(mutexes[i], &until);
    size_t n = strlen(answer);
    snprintf(answer + n, sizeof answer - n, " %s/%s/%s", err_name(holder_check[i]), err_name(released[i]),
             err_name(taken));
  }
  say("%s", answer);
  return 0;
}
