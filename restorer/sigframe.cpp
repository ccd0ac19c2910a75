// Builds a frame the kernel's rt_sigreturn accepts (arch/x86/kernel/signal_64.c): the
// ucontext with a sigcontext, and an XSAVE area with the software-reserved bytes and the
// trailing magic that make the kernel restore the full extended state, not just SSE.
#include "restorer/sigframe.h"

#include <cpuid.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/ucontext.h>  // after <signal.h>: it needs stack_t and struct sigcontext

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace prewarm {
namespace {

struct KSigcontext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2, fpstate;
  uint64_t reserved1[8];
};
struct KStack {
  uint64_t ss_sp;
  int32_t ss_flags;
  int32_t pad;
  uint64_t ss_size;
};
struct KUcontext {
  uint64_t uc_flags;
  uint64_t uc_link;
  KStack uc_stack;
  KSigcontext mcontext;
  uint64_t sigmask;
};
struct KRtSigframe {
  uint64_t pretcode;
  KUcontext uc;
  uint8_t info[128];
};
static_assert(sizeof(KSigcontext) == 256);
static_assert(sizeof(KUcontext) == 304);
static_assert(sizeof(KRtSigframe) == 440);
// glibc's ucontext_t starts with the kernel's layout: cross-check the offsets we rely on.
static_assert(offsetof(KUcontext, mcontext) == offsetof(ucontext_t, uc_mcontext));
static_assert(offsetof(KSigcontext, rip) == REG_RIP * 8);
static_assert(offsetof(KSigcontext, fpstate) == offsetof(mcontext_t, fpregs));

constexpr size_t kSwReservedOffset = 464;  // fxregs_state.sw_reserved
constexpr uint16_t kUserCs = 0x33, kUserDs = 0x2b;  // __USER_CS, __USER_DS: not in the UAPI headers
constexpr uint64_t kRedZone = 128;

struct FpxSwBytes {
  uint32_t magic1;
  uint32_t extended_size;
  uint64_t xfeatures;
  uint32_t xstate_size;
  uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

constexpr size_t kXstateBvOffset = 512;  // xstate_header.xfeatures: the components in use
constexpr size_t kMinXstate = 512 + 64;  // legacy area and header
constexpr int kArchGetXcompPerm = 0x1022;  // ARCH_GET_XCOMP_PERM (Linux 5.16), not in older headers

}  // namespace

// What the kernel accepts back from rt_sigreturn of this process (check_xstate_in_sigframe in
// arch/x86/kernel/fpu/signal.c): at most the size of its own signal frames' XSAVE area, which
// covers the components XCR0 enables less those enabled on demand (AMX tile data) that this
// process has not been permitted (ARCH_REQ_XCOMP_PERM). A larger area makes the kernel restore
// the legacy x87/SSE state only: xmm kept, ymm and zmm silently lost. NT_X86_XSTATE, which a dump
// reads, is the size of every component XCR0 enables, permitted or not.
FrameXstate frame_xstate() {
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  FrameXstate f{(static_cast<uint64_t>(hi) << 32) | lo, kMinXstate};
  uint64_t permitted = 0;
  if (::syscall(SYS_arch_prctl, kArchGetXcompPerm, &permitted) == 0) f.features &= permitted;
  for (unsigned i = 2; i < 64; ++i) {
    unsigned size = 0, offset = 0, ecx = 0, edx = 0;
    if ((f.features >> i & 1) && __get_cpuid_count(0xd, i, &size, &offset, &ecx, &edx))
      f.size = std::max<uint64_t>(f.size, uint64_t{offset} + size);
  }
  return f;
}

Result<SigframeLayout> build_sigframe(const pb::Snapshot& snap) {
  const auto& s = snap.signals();
  return build_sigframe(snap.regs(), {s.blocked(), s.altstack_sp(), s.altstack_size(), s.altstack_flags()},
                        snap.compat().xfeatures());
}

Result<SigframeLayout> build_thread_sigframe(const pb::Snapshot& snap, int i) {
  const auto& t = snap.threads(i);
  return build_sigframe(t.regs(), {t.blocked(), t.altstack_sp(), t.altstack_size(), t.altstack_flags()},
                        snap.compat().xfeatures());
}

Result<SigframeLayout> build_sigframe(const pb::Registers& r, const SigframeSignals& sig, uint64_t xfeatures) {
  static const FrameXstate here = frame_xstate();
  return build_sigframe(r, sig, xfeatures, here);
}

Result<SigframeLayout> build_sigframe(const pb::Registers& r, const SigframeSignals& sig, uint64_t xfeatures,
                                      const FrameXstate& here) {
  const std::string& xsave = r.xsave();
  if (xsave.size() < kMinXstate)
    return data_error("the XSAVE image is " + std::to_string(xsave.size()) + " bytes, less than its header's end");
  const uint64_t features = xfeatures & here.features;
  uint64_t in_use = 0;
  std::memcpy(&in_use, xsave.data() + kXstateBvOffset, sizeof in_use);
  // Cut to the frame this process can restore: a component in use beyond it would be lost.
  if (in_use & ~features) {
    char bits[32];
    std::snprintf(bits, sizeof bits, "%#llx", static_cast<unsigned long long>(in_use & ~features));
    return data_error(std::string("the thread holds extended CPU state this process may not restore (XSAVE "
                                  "components ") + bits + (in_use & ~features & (1ull << 18)
                                                               ? ": AMX tile data, which needs ARCH_REQ_XCOMP_PERM)"
                                                               : ")"));
  }
  const uint64_t xsize = here.size;
  const uint64_t fp_off = (sizeof(KRtSigframe) + 63) & ~63ull;
  const uint64_t total = fp_off + xsize + sizeof(uint32_t);

  SigframeLayout out;
  out.dest = (r.rsp() - kRedZone - total) & ~63ull;
  out.final_sp = out.dest + sizeof(uint64_t);
  out.bytes.assign(total, '\0');

  KRtSigframe f{};
  f.uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
  if (sig.altstack_sp != 0 && !(sig.altstack_flags & SS_DISABLE)) {
    f.uc.uc_stack.ss_sp = sig.altstack_sp;
    f.uc.uc_stack.ss_size = sig.altstack_size;
    f.uc.uc_stack.ss_flags = sig.altstack_flags & ~SS_ONSTACK;  // "currently on it" is not a mode
  } else {
    f.uc.uc_stack.ss_flags = SS_DISABLE;
  }
  auto& m = f.uc.mcontext;
  m.r8 = r.r8(); m.r9 = r.r9(); m.r10 = r.r10(); m.r11 = r.r11();
  m.r12 = r.r12(); m.r13 = r.r13(); m.r14 = r.r14(); m.r15 = r.r15();
  m.rdi = r.rdi(); m.rsi = r.rsi(); m.rbp = r.rbp(); m.rbx = r.rbx();
  m.rdx = r.rdx(); m.rax = r.rax(); m.rcx = r.rcx(); m.rsp = r.rsp();
  m.rip = r.rip(); m.eflags = r.eflags();
  m.cs = kUserCs;
  m.ss = kUserDs;
  m.fpstate = out.dest + fp_off;
  f.uc.sigmask = sig.blocked;
  std::memcpy(out.bytes.data(), &f, sizeof f);

  char* fp = out.bytes.data() + fp_off;
  std::memcpy(fp, xsave.data(), std::min<uint64_t>(xsave.size(), xsize));  // the rest stays zero
  FpxSwBytes sw{};
  sw.magic1 = FP_XSTATE_MAGIC1;
  sw.extended_size = static_cast<uint32_t>(xsize + sizeof(uint32_t));
  sw.xfeatures = features;
  sw.xstate_size = static_cast<uint32_t>(xsize);
  std::memcpy(fp + kSwReservedOffset, &sw, sizeof sw);
  const uint32_t magic2 = FP_XSTATE_MAGIC2;
  std::memcpy(fp + xsize, &magic2, sizeof magic2);
  return out;
}

}  // namespace prewarm
