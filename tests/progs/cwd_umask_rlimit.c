/* Process attributes round trip: the working directory (argv[1]), umask 027 and an unusual
 * RLIMIT_NOFILE (123 soft, 457 hard) set before the snapshot are reported after restore. */
#include <sys/resource.h>
#include <sys/stat.h>

#include "prog.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  struct rlimit lim = {.rlim_cur = 123, .rlim_max = 457};
  umask(027);
  if (chdir(argv[1]) || setrlimit(RLIMIT_NOFILE, &lim)) return 1;
  say("ready pid=%d", getpid());
  char line[256];
  read_line(line, sizeof line);

  char cwd[4096];
  mode_t mask = umask(0);
  umask(mask);
  getrlimit(RLIMIT_NOFILE, &lim);
  say("cwd=%s umask=%03o nofile=%lu/%lu", getcwd(cwd, sizeof cwd) ? cwd : "?", (unsigned)mask,
      (unsigned long)lim.rlim_cur, (unsigned long)lim.rlim_max);
  return 0;
}
