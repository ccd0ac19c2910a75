// Builds a frame the kernel's rt_sigreturn accepts (arch/x86/kernel/signal_64.c): the
// ucontext with a sigcontext, and an XSAVE area with the software-reserved bytes and the
// trailing magic that make the kernel restore the full extended state, not just SSE.
#include "restorer/sigframe.h"

#include <signal.h>
#include <ucontext.h>
#include <asm/ucontext.h>  // after <signal.h>: it needs stack_t and struct sigcontext

#include <cstddef>
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

}  // namespace

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
  const std::string& xsave = r.xsave();
  const uint64_t fp_off = (sizeof(KRtSigframe) + 63) & ~63ull;
  const uint64_t total = fp_off + xsave.size() + sizeof(uint32_t);

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
  std::memcpy(fp, xsave.data(), xsave.size());
  FpxSwBytes sw{};
  sw.magic1 = FP_XSTATE_MAGIC1;
  sw.extended_size = static_cast<uint32_t>(xsave.size() + sizeof(uint32_t));
  sw.xfeatures = xfeatures;
  sw.xstate_size = static_cast<uint32_t>(xsave.size());
  std::memcpy(fp + kSwReservedOffset, &sw, sizeof sw);
  const uint32_t magic2 = FP_XSTATE_MAGIC2;
  std::memcpy(fp + xsave.size(), &magic2, sizeof magic2);
  return out;
}

}  // namespace prewarm
