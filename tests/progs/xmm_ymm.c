/* Vector registers round trip: xmm and ymm registers loaded with token-derived values are held
 * across a raw read(0) syscall (where the process is snapshotted) and compared afterwards. */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>

#include "prog.h"

int main(void) {
  if (!__builtin_cpu_supports("avx")) {
    say("skip: no AVX");
    return 0;
  }
  /* want: xmm4, xmm12 (16 bytes each), then ymm1, ymm8, ymm15 (32 bytes each). */
  uint8_t want[2 * 16 + 3 * 32], got[sizeof want];
  if (getrandom(want, sizeof want, 0) != sizeof want) return 1;
  memset(got, 0, sizeof got);
  char buf[256];
  say("ready pid=%d", getpid());

  long n;
  __asm__ volatile(
      "movdqu 0(%[w]), %%xmm4\n\t"
      "movdqu 16(%[w]), %%xmm12\n\t"
      "vmovdqu 32(%[w]), %%ymm1\n\t"
      "vmovdqu 64(%[w]), %%ymm8\n\t"
      "vmovdqu 96(%[w]), %%ymm15\n\t"
      "syscall\n\t"
      "movdqu %%xmm4, 0(%[g])\n\t"
      "movdqu %%xmm12, 16(%[g])\n\t"
      "vmovdqu %%ymm1, 32(%[g])\n\t"
      "vmovdqu %%ymm8, 64(%[g])\n\t"
      "vmovdqu %%ymm15, 96(%[g])\n\t"
      "vzeroupper\n\t"
      : "=a"(n)
      : "a"((long)SYS_read), "D"(0L), "S"(buf), "d"((long)sizeof buf - 1), [w] "r"(want),
        [g] "r"(got)
      : "rcx", "r11", "memory", "xmm1", "xmm4", "xmm8", "xmm12", "xmm15");
  buf[n > 0 ? n : 0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  say("xmm=%s ymm=%s read=%ld input=%s", memcmp(want, got, 32) ? "lost" : "kept",
      memcmp(want + 32, got + 32, 96) ? "lost" : "kept", n, buf);
  return 0;
}
