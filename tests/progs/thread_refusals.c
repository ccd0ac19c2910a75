/* A thread with state a restore cannot carry (argv[1]): "creds", its own effective uid (a raw
 * setresuid, which glibc would otherwise apply to every thread); "pending", a blocked signal
 * pending for it; "robust", a robust mutex it holds; "nice", a nice value of its own; "affinity",
 * a CPU affinity of its own; "uts", a uts namespace of its own (unshare acts on the calling thread
 * only). The dump must refuse with exit 3 naming the thread, and the process must go on. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "prog.h"

static const char* mode;
static pthread_mutex_t robust;
static volatile int parked;

static void* odd_thread(void* arg) {
  (void)arg;
  prctl(PR_SET_NAME, "odd-thread");
  if (strcmp(mode, "creds") == 0) {
    if (syscall(SYS_setresuid, -1, 65534, -1) != 0) return NULL;
  } else if (strcmp(mode, "pending") == 0) {
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    pthread_kill(pthread_self(), SIGUSR2);
  } else if (strcmp(mode, "robust") == 0) {
    if (pthread_mutex_lock(&robust) != 0) return NULL;
  } else if (strcmp(mode, "nice") == 0) {
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), getpriority(PRIO_PROCESS, 0) + 3) != 0) return NULL;
  } else if (strcmp(mode, "affinity") == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) return NULL;
  } else if (strcmp(mode, "uts") == 0) {
    if (unshare(CLONE_NEWUTS) != 0) return NULL;
  }
  parked = 1;
  for (;;) pause();
}

int main(int argc, char** argv) {
  mode = argc > 1 ? argv[1] : "";
  if ((strcmp(mode, "creds") == 0 || strcmp(mode, "uts") == 0) && geteuid() != 0) {
    say("skip: a thread of its own uid or namespace needs root");
    return 0;
  }
  cpu_set_t all;
  if (strcmp(mode, "affinity") == 0 && (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2)) {
    say("skip: a thread affinity of its own needs two CPUs to choose from");
    return 0;
  }
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &attr);
  pthread_t t;
  if (pthread_create(&t, NULL, odd_thread, NULL) != 0) return 1;
  while (!parked) usleep(1000);
  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);
  say("input=%s", line);
  return 0;
}
