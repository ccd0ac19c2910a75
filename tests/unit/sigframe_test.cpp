// Tests the rt_sigreturn frame: its layout read back through glibc's own ucontext_t (an
// independent description of the kernel ABI), and, in a child, that the real kernel accepts it
// and restores registers, AVX state, the signal mask and the alternate stack from it.
#include "restorer/sigframe.h"

#include <cpuid.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

// Values the kernel checks (arch/x86/include/uapi/asm/sigcontext.h, ucontext.h).
constexpr uint32_t kMagic1 = 0x46505853, kMagic2 = 0x46505845;
constexpr size_t kSwBytes = 464;  // fxsave area: software-reserved bytes
constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
constexpr int kSsAutodisarm = static_cast<int>(1u << 31);  // not in glibc's headers

template <typename T>
T load(const std::string& bytes, uint64_t off) {
  T v{};
  EXPECT_LE(off + sizeof v, bytes.size());
  if (off + sizeof v <= bytes.size()) std::memcpy(&v, bytes.data() + off, sizeof v);
  return v;
}

// Registers each with its own value, so a field written to the wrong slot shows.
pb::Snapshot sample(uint64_t rsp, size_t xsave_size) {
  pb::Snapshot snap;
  auto* r = snap.mutable_regs();
  r->set_r8(0x108); r->set_r9(0x109); r->set_r10(0x110); r->set_r11(0x111);
  r->set_r12(0x112); r->set_r13(0x113); r->set_r14(0x114); r->set_r15(0x115);
  r->set_rdi(0x201); r->set_rsi(0x202); r->set_rbp(0x203); r->set_rbx(0x204);
  r->set_rdx(0x205); r->set_rax(0x206); r->set_rcx(0x207);
  r->set_rsp(rsp);
  r->set_rip(0x55d4c8a01234);
  r->set_eflags(0x246);
  std::string xsave(xsave_size, '\0');
  for (size_t i = 0; i < xsave.size(); ++i) xsave[i] = static_cast<char>(i * 13 + 1);
  const uint64_t in_use = 0x7;  // XSTATE_BV: x87, SSE, AVX
  std::memcpy(xsave.data() + 512, &in_use, sizeof in_use);
  r->set_xsave(xsave);
  snap.mutable_signals()->set_blocked((1ull << (SIGUSR1 - 1)) | (1ull << (SIGTERM - 1)));
  snap.mutable_signals()->set_altstack_flags(SS_DISABLE);
  snap.mutable_compat()->set_xfeatures(0x2e7);  // x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU
  return snap;
}

SigframeLayout build(const pb::Snapshot& snap) {
  auto f = build_sigframe(snap);
  EXPECT_TRUE(f.ok()) << f.error().describe();
  return f.ok() ? *f : SigframeLayout{};
}

// The ucontext follows the 8-byte return address (pretcode) at the bottom of the frame.
ucontext_t ucontext_of(const SigframeLayout& f) { return load<ucontext_t>(f.bytes, 8); }

class SigframeLayoutTest : public ::testing::TestWithParam<uint64_t> {};

// An rsp of any alignment, as the app may have been stopped anywhere.
INSTANTIATE_TEST_SUITE_P(StackPointers, SigframeLayoutTest,
                         ::testing::Values(0x7ffd5c900000, 0x7ffd5c8ff8a8, 0x7ffd5c8ff8a3));

TEST_P(SigframeLayoutTest, FrameSitsBelowTheRedZoneWhereRtSigreturnLooks) {
  const uint64_t rsp = GetParam();
  auto f = build(sample(rsp, 2696));
  ASSERT_FALSE(f.bytes.empty());
  EXPECT_LE(f.dest + f.bytes.size(), rsp - 128) << "frame overlaps the red zone";
  EXPECT_GT(f.dest + f.bytes.size() + 128 + 64, rsp) << "frame is needlessly far below rsp";
  // rt_sigreturn finds the frame at rsp - 8, just past the return address slot.
  EXPECT_EQ(f.final_sp, f.dest + 8);
}

TEST_P(SigframeLayoutTest, FpstatePointsAtAnAlignedXsaveAreaInsideTheFrame) {
  const auto snap = sample(GetParam(), 2696);
  auto f = build(snap);
  const auto fp = reinterpret_cast<uint64_t>(ucontext_of(f).uc_mcontext.fpregs);
  EXPECT_EQ(fp % 64, 0u) << "XRSTOR needs a 64-byte aligned area";
  // Past the ucontext, which ends with the 8-byte kernel sigmask.
  ASSERT_GE(fp, f.dest + 8 + offsetof(ucontext_t, uc_sigmask) + 8);
  const uint64_t off = fp - f.dest;
  const uint64_t size = frame_xstate().size;
  ASSERT_LE(off + size + 4, f.bytes.size());

  // The XSAVE image is copied unchanged up to this process's frame size, except for the
  // software-reserved bytes; past the image, zeros.
  const std::string& xsave = snap.regs().xsave();
  const size_t n = std::min<size_t>(xsave.size(), size);
  const std::string copied = f.bytes.substr(off, size);
  EXPECT_EQ(copied.substr(0, kSwBytes), xsave.substr(0, kSwBytes));
  EXPECT_EQ(copied.substr(512, n - 512), xsave.substr(512, n - 512));
  EXPECT_EQ(copied.substr(n), std::string(size - n, '\0'));
}

TEST_P(SigframeLayoutTest, XsaveMagicTellsTheKernelToRestoreTheFullState) {
  const auto snap = sample(GetParam(), 2696);
  auto f = build(snap);
  const uint64_t fp = reinterpret_cast<uint64_t>(ucontext_of(f).uc_mcontext.fpregs) - f.dest;
  const uint64_t size = frame_xstate().size;
  EXPECT_EQ(load<uint32_t>(f.bytes, fp + kSwBytes), kMagic1);
  EXPECT_EQ(load<uint32_t>(f.bytes, fp + kSwBytes + 4), size + 4);                        // extended_size
  EXPECT_EQ(load<uint64_t>(f.bytes, fp + kSwBytes + 8), 0x2e7u & frame_xstate().features);  // xfeatures
  EXPECT_EQ(load<uint32_t>(f.bytes, fp + kSwBytes + 16), size);                           // xstate_size
  EXPECT_EQ(load<uint32_t>(f.bytes, fp + size), kMagic2);
}

// NT_X86_XSTATE is the size of every component XCR0 enables (with AMX: 11 KiB); a process not
// permitted AMX gets frames of 2.7 KiB, and the kernel restores only x87/SSE from a larger one.
TEST(Sigframe, TheImageIsCutToTheFrameOfThisProcess) {
  const FrameXstate here{0x7, 576 + 256};  // x87, SSE, AVX
  auto snap = sample(0x7ffd5c900000, 11008);
  auto f = build_sigframe(snap.regs(), {}, 0x600e7, here);
  ASSERT_TRUE(f.ok()) << f.error().describe();
  const uint64_t fp = reinterpret_cast<uint64_t>(ucontext_of(*f).uc_mcontext.fpregs) - f->dest;
  EXPECT_EQ(load<uint32_t>(f->bytes, fp + kSwBytes + 16), here.size);
  EXPECT_EQ(load<uint64_t>(f->bytes, fp + kSwBytes + 8), 0x7u);
  EXPECT_EQ(load<uint32_t>(f->bytes, fp + here.size), kMagic2);
  EXPECT_EQ(f->bytes.size(), fp + here.size + 4);
}

TEST(Sigframe, AComponentInUseBeyondTheFrameIsAnErrorNotALoss) {
  const FrameXstate here{0x7, 576 + 256};
  auto snap = sample(0x7ffd5c900000, 11008);
  std::string x = snap.regs().xsave();
  const uint64_t in_use = 0x7 | (1ull << 18);  // AMX tile data
  std::memcpy(x.data() + 512, &in_use, sizeof in_use);
  snap.mutable_regs()->set_xsave(x);
  auto f = build_sigframe(snap.regs(), {}, 0x600e7, here);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().describe().find("AMX tile data"), std::string::npos) << f.error().describe();
  snap.mutable_regs()->set_xsave(x.substr(0, 500));
  EXPECT_FALSE(build_sigframe(snap.regs(), {}, 0x7, here).ok()) << "an image shorter than its header";
}

TEST(Sigframe, RegistersSegmentsFlagsAndMaskLandInGlibcsSlots) {
  const auto snap = sample(0x7ffd5c900000, 1088);
  auto f = build(snap);
  const ucontext_t uc = ucontext_of(f);
  const auto* g = uc.uc_mcontext.gregs;
  const auto& r = snap.regs();
  const std::pair<int, uint64_t> want[] = {
      {REG_R8, r.r8()},   {REG_R9, r.r9()},   {REG_R10, r.r10()}, {REG_R11, r.r11()},
      {REG_R12, r.r12()}, {REG_R13, r.r13()}, {REG_R14, r.r14()}, {REG_R15, r.r15()},
      {REG_RDI, r.rdi()}, {REG_RSI, r.rsi()}, {REG_RBP, r.rbp()}, {REG_RBX, r.rbx()},
      {REG_RDX, r.rdx()}, {REG_RAX, r.rax()}, {REG_RCX, r.rcx()}, {REG_RSP, r.rsp()},
      {REG_RIP, r.rip()}, {REG_EFL, r.eflags()}};
  for (const auto& [reg, value] : want)
    EXPECT_EQ(static_cast<uint64_t>(g[reg]), value) << "gregs[" << reg << "]";
  // cs, gs, fs, ss as 16-bit fields: user code and data selectors.
  const auto csgsfs = static_cast<uint64_t>(g[REG_CSGSFS]);
  EXPECT_EQ(csgsfs & 0xffff, 0x33u);
  EXPECT_EQ(csgsfs >> 48, 0x2bu);
  EXPECT_EQ(uc.uc_flags & (kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs),
            kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs);
  uint64_t mask = 0;
  std::memcpy(&mask, &uc.uc_sigmask, sizeof mask);
  EXPECT_EQ(mask, snap.signals().blocked());
}

TEST(Sigframe, AltstackIsCarriedWithoutTheOnStackBit) {
  auto snap = sample(0x7ffd5c900000, 1088);
  auto* sig = snap.mutable_signals();
  sig->set_altstack_sp(0x7f0012340000);
  sig->set_altstack_size(64 * 1024);
  sig->set_altstack_flags(SS_ONSTACK | kSsAutodisarm);
  const stack_t st = ucontext_of(build(snap)).uc_stack;
  EXPECT_EQ(reinterpret_cast<uint64_t>(st.ss_sp), 0x7f0012340000u);
  EXPECT_EQ(st.ss_size, 64u * 1024);
  EXPECT_EQ(st.ss_flags, kSsAutodisarm);
}

TEST(Sigframe, NoOrDisabledAltstackIsDisabled) {
  auto snap = sample(0x7ffd5c900000, 1088);
  auto* sig = snap.mutable_signals();
  sig->set_altstack_flags(0);  // sp 0: never set up
  EXPECT_EQ(ucontext_of(build(snap)).uc_stack.ss_flags, SS_DISABLE);
  sig->set_altstack_sp(0x7f0012340000);
  sig->set_altstack_size(8192);
  sig->set_altstack_flags(SS_DISABLE);
  EXPECT_EQ(ucontext_of(build(snap)).uc_stack.ss_flags, SS_DISABLE);
}

}  // namespace
}  // namespace prewarm

// The real kernel: a child builds a frame for a made-up state and rt_sigreturns into it. The
// landing stub is assembly, so it records the registers before compiled code can touch them.
namespace {
constexpr uint64_t kRdi = 0x1122334455667788;
constexpr uint64_t kXmm0 = 0x0123456789abcdef, kYmm0Hi = 0xfedcba9876543210;
uint64_t g_want_rsp;
stack_t g_want_altstack;
}  // namespace

extern "C" {
uint64_t pw_sigframe_test_rsp, pw_sigframe_test_xmm0, pw_sigframe_test_ymm0_hi[2];
void pw_sigframe_test_landing();
[[noreturn]] void pw_sigframe_test_landed(uint64_t rdi);
}

asm(R"(
  .text
  .type pw_sigframe_test_landing, @function
pw_sigframe_test_landing:
  movq %rsp, pw_sigframe_test_rsp(%rip)
  movq %xmm0, pw_sigframe_test_xmm0(%rip)
  vextractf128 $1, %ymm0, pw_sigframe_test_ymm0_hi(%rip)
  jmp pw_sigframe_test_landed
  .size pw_sigframe_test_landing, .-pw_sigframe_test_landing
)");

// Exit codes say which check failed (see kLandingFailures).
__attribute__((used)) void pw_sigframe_test_landed(uint64_t rdi) {
  if (rdi != kRdi) _exit(10);
  if (pw_sigframe_test_rsp != g_want_rsp) _exit(11);
  if (pw_sigframe_test_xmm0 != kXmm0) _exit(12);
  if (pw_sigframe_test_ymm0_hi[0] != kYmm0Hi) _exit(13);
  sigset_t mask;
  sigprocmask(SIG_BLOCK, nullptr, &mask);
  if (!sigismember(&mask, SIGUSR1) || sigismember(&mask, SIGUSR2)) _exit(14);
  stack_t ss{};
  sigaltstack(nullptr, &ss);
  if (ss.ss_sp != g_want_altstack.ss_sp || ss.ss_size != g_want_altstack.ss_size ||
      (ss.ss_flags & SS_DISABLE))
    _exit(15);
  _exit(0);
}

namespace prewarm {
namespace {

const char* const kLandingFailures[] = {"rdi", "rsp", "xmm0", "ymm0 upper half (AVX state)",
                                        "signal mask", "sigaltstack"};

// What the kernel itself puts in this process's signal frames (the software-reserved bytes of
// the fpstate): the XSAVE size and features it accepts back from rt_sigreturn. It can be less
// than CPUID reports for XCR0: features enabled on demand (AMX tile data) are left out until the
// process asks for them, and a larger frame makes the kernel restore the legacy state only.
struct KernelXstate {
  uint32_t size = 0;
  uint64_t xfeatures = 0;
};
KernelXstate g_kernel_xstate;

KernelXstate kernel_xstate() {
  struct sigaction sa {}, old {};
  sa.sa_flags = SA_SIGINFO;
  sa.sa_sigaction = [](int, siginfo_t*, void* ctx) {
    const auto* fp = reinterpret_cast<const char*>(static_cast<ucontext_t*>(ctx)->uc_mcontext.fpregs);
    uint32_t magic = 0;
    std::memcpy(&magic, fp + kSwBytes, 4);
    if (magic != kMagic1) return;
    std::memcpy(&g_kernel_xstate.xfeatures, fp + kSwBytes + 8, 8);
    std::memcpy(&g_kernel_xstate.size, fp + kSwBytes + 16, 4);
  };
  g_kernel_xstate = {};
  if (::sigaction(SIGUSR2, &sa, &old) != 0) return {};
  ::raise(SIGUSR2);
  ::sigaction(SIGUSR2, &old, nullptr);
  return g_kernel_xstate;
}

alignas(64) char g_xsave_area[16384];

TEST(SigframeOnTheKernel, FrameXstateIsWhatTheKernelPutsInItsOwnFrames) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) GTEST_SKIP() << "CPU or kernel without XSAVE";
  const KernelXstate k = kernel_xstate();
  ASSERT_NE(k.size, 0u) << "the kernel's own signal frame has no XSAVE magic";
  EXPECT_EQ(frame_xstate().size, k.size);
  EXPECT_EQ(frame_xstate().features, k.xfeatures);
}

// The child's own XSAVE image (standard format, as NT_X86_XSTATE gives it), with xmm0/ymm0 set,
// `size` bytes long.
std::string own_xsave(size_t size) {
  std::memset(g_xsave_area, 0, sizeof g_xsave_area);  // XSAVE leaves the rest of the header alone
  asm volatile("xsave64 (%0)" ::"r"(g_xsave_area), "a"(~0u), "d"(~0u) : "memory");
  std::string x(g_xsave_area, size);
  std::memcpy(x.data() + 160, &kXmm0, 8);       // XMM0 in the legacy area
  std::memcpy(x.data() + 576 + 0, &kYmm0Hi, 8);  // YMM0 bits 128..191 in the AVX component
  uint64_t bv = load<uint64_t>(x, 512) | 0x6;    // XSTATE_BV: SSE and AVX in use
  std::memcpy(x.data() + 512, &bv, 8);
  return x;
}

// The image at the kernel's own frame size, and at CPUID's size for all of XCR0 (what a dump reads
// through NT_X86_XSTATE: larger where AMX is enabled but not permitted to the process).
class SigframeOnTheKernelSized : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(ImageSizes, SigframeOnTheKernelSized, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? std::string("AllOfXcr0") : std::string("FrameSize"); });

TEST_P(SigframeOnTheKernelSized, RtSigreturnRestoresRegistersAvxMaskAndAltstack) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE) || !(ecx & bit_AVX))
    GTEST_SKIP() << "CPU or kernel without XSAVE/AVX";
  __cpuid_count(0xd, 0, eax, ebx, ecx, edx);
  if (ebx > sizeof g_xsave_area) GTEST_SKIP() << "XSAVE area of " << ebx << " bytes: larger than this test's buffer";
  const KernelXstate k = kernel_xstate();
  ASSERT_NE(k.size, 0u) << "the kernel's own signal frame has no XSAVE magic";
  ASSERT_LE(k.size, ebx) << "the kernel's signal frame is larger than CPUID's XSAVE area";
  ASSERT_EQ(k.xfeatures & 0x6, 0x6u) << "the kernel does not carry SSE and AVX state in signal frames";

  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const size_t stack_len = 1 << 20;
    auto* stack = static_cast<char*>(::mmap(nullptr, 2 * stack_len, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (stack == MAP_FAILED) _exit(2);
    g_want_altstack = {stack + stack_len, 0, stack_len};
    g_want_rsp = reinterpret_cast<uint64_t>(stack + stack_len) - 8;  // as if just called

    pb::Snapshot snap;
    snap.mutable_regs()->set_xsave(own_xsave(GetParam() ? ebx : k.size));
    snap.mutable_compat()->set_xfeatures(k.xfeatures);
    snap.mutable_regs()->set_rip(reinterpret_cast<uint64_t>(&pw_sigframe_test_landing));
    snap.mutable_regs()->set_rsp(g_want_rsp);
    snap.mutable_regs()->set_rdi(kRdi);
    snap.mutable_regs()->set_eflags(0x202);
    auto* sig = snap.mutable_signals();
    sig->set_blocked(1ull << (SIGUSR1 - 1));
    sig->set_altstack_sp(reinterpret_cast<uint64_t>(g_want_altstack.ss_sp));
    sig->set_altstack_size(stack_len);
    auto f = build_sigframe(snap);
    if (!f.ok()) _exit(3);
    std::memcpy(reinterpret_cast<void*>(f->dest), f->bytes.data(), f->bytes.size());
    asm volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall" ::"r"(f->final_sp) : "memory");
    _exit(4);  // not reached: rt_sigreturn does not return
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "the kernel refused the frame: signal " << WTERMSIG(status);
  ASSERT_TRUE(WIFEXITED(status));
  const int code = WEXITSTATUS(status);
  if (code >= 10 && code < 10 + static_cast<int>(std::size(kLandingFailures)))
    FAIL() << "after rt_sigreturn, wrong " << kLandingFailures[code - 10];
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace prewarm
