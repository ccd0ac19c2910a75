/* Threads round trip: N workers (argv[1], default 4), each with its own name, signal mask,
 * sigaltstack and TLS, blocked at the snapshot in a condition variable, nanosleep, a raw futex
 * wait holding xmm/ymm values, or pause(). After restore the main thread pthread_kill()s each
 * worker (its SIGUSR1 handler must run on that worker, on its altstack), then releases them;
 * each checks its own state and that pthread_setaffinity_np/getschedparam on pthread_self()
 * act on its new tid, and exits; the main thread joins them all and checks itself. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "prog.h"

#define MAX_THREADS 64
#define ALT_SIZE (64 * 1024)

struct worker {
  pthread_t thread;
  int index;
  char altstack[ALT_SIZE];
  volatile pid_t handler_tid;  /* gettid() in its SIGUSR1 handler */
  volatile int handler_on_alt;
  volatile int released;       /* out of its wait after the go */
  char fail[160];              /* "" when every check passed */
};

static struct worker workers[MAX_THREADS];
static int nthreads = 4;
static volatile uint32_t go_word;
static volatile int go;
static int parked;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static __thread int my_index = -1;
static int have_avx;

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

static void on_usr1(int sig) {
  (void)sig;
  if (my_index < 0) return;
  struct worker* w = &workers[my_index];
  char here;
  w->handler_on_alt = (uintptr_t)&here >= (uintptr_t)w->altstack && (uintptr_t)&here < (uintptr_t)w->altstack + ALT_SIZE;
  w->handler_tid = gettid_raw();
}

static int rt_signal(int i) { return SIGRTMIN + 2 + i % 8; }

/* futex(&go_word, FUTEX_WAIT_PRIVATE, 0) until go_word is set, in asm so that no call clobbers the
 * vector registers loaded around it. */
#define FUTEX_WAIT_FOR_GO          \
  "1:\n\t"                         \
  "mov $202, %%eax\n\t"            \
  "mov %[addr], %%rdi\n\t"         \
  "mov $128, %%esi\n\t"            \
  "xor %%edx, %%edx\n\t"           \
  "xor %%r10d, %%r10d\n\t"         \
  "syscall\n\t"                    \
  "cmpl $0, (%[addr])\n\t"         \
  "je 1b\n\t"

/* Blocked in a raw futex wait with xmm (and ymm) registers loaded; true if they are kept. */
static int futex_wait_holding_vectors(int i) {
  uint8_t want[64], got[64];
  for (int k = 0; k < 64; ++k) want[k] = (uint8_t)(i * 37 + k * 11 + 1);
  memset(got, 0, sizeof got);
  if (have_avx) {
    __asm__ volatile(
        "movdqu 0(%[w]), %%xmm3\n\t"
        "vmovdqu 16(%[w]), %%ymm9\n\t"
        FUTEX_WAIT_FOR_GO
        "movdqu %%xmm3, 0(%[g])\n\t"
        "vmovdqu %%ymm9, 16(%[g])\n\t"
        "vzeroupper\n\t"
        :
        : [w] "r"(want), [g] "r"(got), [addr] "r"(&go_word)
        : "rax", "rdi", "rsi", "rdx", "r10", "rcx", "r11", "memory", "xmm3", "xmm9");
    return memcmp(want, got, 48) == 0;
  }
  __asm__ volatile(
      "movdqu 0(%[w]), %%xmm3\n\t"
      FUTEX_WAIT_FOR_GO
      "movdqu %%xmm3, 0(%[g])\n\t"
      :
      : [w] "r"(want), [g] "r"(got), [addr] "r"(&go_word)
      : "rax", "rdi", "rsi", "rdx", "r10", "rcx", "r11", "memory", "xmm3");
  return memcmp(want, got, 16) == 0;
}

/* pthread_self() names the thread by glibc's cached tid: it must be this thread's new one, and
 * not the snapshot's (which may be a live process: the original). NULL when it is. */
static const char* pthread_self_is_me(void) {
  static __thread char why[96];
  cpu_set_t before, one, seen;
  if (sched_getaffinity(0, sizeof before, &before) != 0) return "getaffinity";
  int cpu = -1;
  for (int c = CPU_SETSIZE - 1; c >= 0 && cpu < 0; --c)
    if (CPU_ISSET(c, &before)) cpu = c;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof one, &one);
  if (rc != 0) return snprintf(why, sizeof why, "pthread_setaffinity_np=%s", strerror(rc)), why;
  int mine = sched_getaffinity(0, sizeof seen, &seen) == 0 && CPU_EQUAL(&seen, &one);
  sched_setaffinity(0, sizeof before, &before);
  if (!mine) return "pthread_setaffinity_np_acted_elsewhere";
  int policy;
  struct sched_param sp;
  rc = pthread_getschedparam(pthread_self(), &policy, &sp);
  if (rc != 0) return snprintf(why, sizeof why, "pthread_getschedparam=%s", strerror(rc)), why;
  return NULL;
}

#define FAIL(w, ...) (snprintf((w)->fail, sizeof (w)->fail, __VA_ARGS__), (void*)0)

static void* work(void* arg) {
  struct worker* w = arg;
  my_index = w->index;
  char name[16];
  snprintf(name, sizeof name, "worker-%d", w->index);
  prctl(PR_SET_NAME, name);
  stack_t ss = {.ss_sp = w->altstack, .ss_size = ALT_SIZE};
  sigaltstack(&ss, NULL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, rt_signal(w->index));
  pthread_sigmask(SIG_SETMASK, &mask, NULL);

  pthread_mutex_lock(&lock);
  parked++;
  int vectors_kept = 1;
  switch (w->index % 4) {
    case 0:
      while (!go) pthread_cond_wait(&cond, &lock);
      pthread_mutex_unlock(&lock);
      break;
    case 1:
      pthread_mutex_unlock(&lock);
      while (!go) nanosleep(&(struct timespec){.tv_sec = 3}, NULL);
      break;
    case 2:
      pthread_mutex_unlock(&lock);
      vectors_kept = futex_wait_holding_vectors(w->index);
      break;
    case 3:
      pthread_mutex_unlock(&lock);
      while (!go) pause();
      break;
  }

  w->released = 1;
  /* Released after restore: is this still the thread it was? */
  char now[16] = "";
  prctl(PR_GET_NAME, now);
  if (strcmp(now, name) != 0) return FAIL(w, "name=%s", now);
  if (my_index != w->index) return FAIL(w, "tls=%d", my_index);
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  for (int s = 1; s < SIGRTMAX; ++s)
    if (sigismember(&cur, s) != (s == rt_signal(w->index))) return FAIL(w, "mask_bit=%d", s);
  stack_t alt;
  sigaltstack(NULL, &alt);
  if (alt.ss_sp != w->altstack || alt.ss_size != ALT_SIZE) return FAIL(w, "altstack");
  if (!vectors_kept) return FAIL(w, "vectors_lost");
  if (w->handler_tid != gettid_raw() || !w->handler_on_alt)
    return FAIL(w, "pthread_kill handler_tid=%d tid=%d on_alt=%d", (int)w->handler_tid, (int)gettid_raw(), w->handler_on_alt);
  const char* why = pthread_self_is_me();
  if (why) return FAIL(w, "%s", why);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1) nthreads = atoi(argv[1]);
  if (nthreads < 0 || nthreads > MAX_THREADS) return 1;
  have_avx = __builtin_cpu_supports("avx");
  struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
  sigaction(SIGUSR1, &sa, NULL);
  for (int i = 0; i < nthreads; ++i) {
    workers[i].index = i;
    if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0) return 1;
  }
  for (;;) {
    pthread_mutex_lock(&lock);
    int n = parked;
    pthread_mutex_unlock(&lock);
    if (n == nthreads) break;
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
  }
  say("ready pid=%d threads=%d", getpid(), nthreads);
  char line[256];
  read_line(line, sizeof line);

  /* Each worker's handler must run on that worker. */
  for (int i = 0; i < nthreads; ++i) {
    int rc = pthread_kill(workers[i].thread, SIGUSR1);
    if (rc != 0) {
      say("FAIL pthread_kill worker-%d: %s", i, strerror(rc));
      return 1;
    }
  }
  for (int tries = 0; tries < 5000; ++tries) {
    int done = 0;
    for (int i = 0; i < nthreads; ++i) done += workers[i].handler_tid != 0;
    if (done == nthreads) break;
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
  }
  pthread_mutex_lock(&lock);
  go = 1;
  go_word = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  syscall(SYS_futex, &go_word, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
  /* nanosleep and pause() end on a signal; one may land just before the wait, so repeat. */
  for (int tries = 0; tries < 1000; ++tries) {
    int waiting = 0;
    for (int i = 0; i < nthreads; ++i)
      if (!workers[i].released && workers[i].index % 2 == 1) waiting++, pthread_kill(workers[i].thread, SIGUSR1);
    if (!waiting) break;
    nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
  }

  int ok = 0;
  for (int i = 0; i < nthreads; ++i) {
    pthread_join(workers[i].thread, NULL);
    if (workers[i].fail[0]) say("worker-%d: %s", i, workers[i].fail);
    else ok++;
  }
  /* The main thread: its name and its own tid as glibc knows it. */
  char comm[16] = "";
  prctl(PR_GET_NAME, comm);
  const char* why = pthread_self_is_me();
  say("threads=%d ok=%d main_affinity=%s main_comm=%s input=%s", nthreads, ok, why ? why : "ok", comm, line);
  return 0;
}
