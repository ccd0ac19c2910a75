/* Attributes prewarm does not carry: each mode sets one up, says ready and waits. The test
 * expects `prewarm dump` to exit 3 and to name the attribute. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "prog.h"

int main(int argc, char** argv) {
  CHECK(argc == 3);
  const char* mode = argv[1];
  const char* file = argv[2];  /* a scratch file for the lock modes */
  int fd = open(file, O_RDWR | O_CREAT, 0600);
  CHECK(fd >= 0);
  pid_t kid = 0;
  if (strcmp(mode, "mlockall") == 0) {
    CHECK(mlockall(MCL_FUTURE | MCL_ONFAULT) == 0);
  } else if (strcmp(mode, "flock") == 0) {
    CHECK(flock(fd, LOCK_EX) == 0);
  } else if (strcmp(mode, "ofd_lock") == 0) {
    struct flock l = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    CHECK(fcntl(fd, F_OFD_SETLK, &l) == 0);
  } else if (strcmp(mode, "cwd_deleted") == 0) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s.dir", file);
    CHECK(mkdir(dir, 0700) == 0 && chdir(dir) == 0 && rmdir(dir) == 0);
  } else if (strcmp(mode, "lease") == 0) {
    close(fd);
    fd = open(file, O_RDONLY);
    CHECK(fd >= 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0);
  } else if (strcmp(mode, "posix_timer") == 0) {
    /* On its own CPU clock named by pid: the restored process has another pid. */
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    clockid_t clock;
    timer_t t;
    CHECK(clock_getcpuclockid(getpid(), &clock) == 0);
    CHECK(timer_create(clock, &ev, &t) == 0);
  } else if (strcmp(mode, "pending_signal") == 0) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);
  } else if (strcmp(mode, "child") == 0 || strcmp(mode, "zombie") == 0) {
    /* A restore has no children: wait() would give ECHILD (zdtm's wait00, zombie00). */
    const int zombie = strcmp(mode, "zombie") == 0;
    kid = fork();
    CHECK(kid >= 0);
    if (kid == 0) {
      if (!zombie) pause();
      _exit(0);
    }
    if (zombie) {
      siginfo_t si;
      CHECK(waitid(P_PID, kid, &si, WEXITED | WNOWAIT) == 0);  /* exited, not reaped */
    }
  } else if (strcmp(mode, "dumpable") == 0) {
    CHECK(prctl(PR_SET_DUMPABLE, 0) == 0);
  } else if (strcmp(mode, "own_cgroup") == 0) {
    /* Moves itself to the cgroup whose cgroup.procs $CGROUP_PROCS names. */
    const char* procs = getenv("CGROUP_PROCS");
    CHECK(procs != NULL);
    int p = open(procs, O_WRONLY);
    CHECK(p >= 0 && write(p, "0", 1) == 1 && close(p) == 0);
  } else if (strcmp(mode, "own_uts") == 0) {
    /* A host name of its own (root): a restore runs in its launcher's namespaces. */
    CHECK(unshare(CLONE_NEWUTS) == 0 && sethostname("prewarm-own", 11) == 0);
  } else if (strcmp(mode, "own_mnt") == 0) {
    /* A mount only its own namespace has (zdtm's mntns_* tests). */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s.mnt", file);
    CHECK(mkdir(dir, 0700) == 0 && unshare(CLONE_NEWNS) == 0);
    CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 && mount("tmpfs", dir, "tmpfs", 0, NULL) == 0);
  } else {
    CHECK(!"unknown mode");
  }
  say("ready mode=%s", mode);
  char line[64];
  read_line(line, sizeof line);
  say("not restored");
  if (kid > 0) {
    kill(kid, SIGKILL);
    CHECK(waitpid(kid, NULL, 0) == kid);
  }
  return 0;
}
