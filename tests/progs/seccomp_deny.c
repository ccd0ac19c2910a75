/* Runs a command under a seccomp filter that fails one kind of call with EPERM and allows
 * everything else: "mremap-fixed" (mremap with MREMAP_FIXED), "mlock2", or "pr-set-mm" (prctl
 * PR_SET_MM, with EINVAL: as a kernel without CONFIG_CHECKPOINT_RESTORE). Not a feature program:
 * tests launch an app and then its restore through it, so that a call the restorer needs fails
 * as an unforeseeable kernel refusal would (tests/service/faults.sh: the blob's vDSO move, past
 * the point of no return; attrs_test: mlock2, which the launcher must find out before it).
 * Usage: prog_seccomp_deny mremap-fixed|mlock2|pr-set-mm COMMAND [ARG...] (as root, or it sets
 * no_new_privs). */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/mman.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const int fixed = argc >= 3 && strcmp(argv[1], "mremap-fixed") == 0;
  const int set_mm = argc >= 3 && strcmp(argv[1], "pr-set-mm") == 0;
  if (argc < 3 || (!fixed && !set_mm && strcmp(argv[1], "mlock2") != 0)) {
    fprintf(stderr, "usage: %s mremap-fixed|mlock2|pr-set-mm COMMAND [ARG...]\n", argv[0]);
    return 2;
  }
  /* Allow all but the one call: mlock2 always, mremap only when its flags (low word) have
   * MREMAP_FIXED (a match on mlock2 jumps straight to the EPERM). */
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, fixed ? __NR_mremap : __NR_mlock2, fixed ? 1 : 3, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MREMAP_FIXED, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  /* prctl: only when its option (args[0]) is PR_SET_MM. */
  struct sock_filter mm_code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prctl, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_MM, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  if (set_mm) prog = (struct sock_fprog){sizeof mm_code / sizeof mm_code[0], mm_code};
  if (geteuid() != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("prctl(PR_SET_NO_NEW_PRIVS)");
    return 1;
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("prctl(PR_SET_SECCOMP)");
    return 1;
  }
  execvp(argv[2], argv + 2);
  perror(argv[2]);
  return 127;
}
