// The rt_sigreturn frame that restores the app's registers, FPU/AVX state and signal mask.
#pragma once

#include <cstdint>
#include <string>

#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"

namespace prewarm {

struct SigframeLayout {
  uint64_t dest = 0;      // where the frame goes (on the app's stack, below the red zone)
  uint64_t final_sp = 0;  // rsp for the rt_sigreturn syscall
  std::string bytes;
};

// What a frame restores besides the registers.
struct SigframeSignals {
  uint64_t blocked = 0;
  uint64_t altstack_sp = 0, altstack_size = 0;
  int32_t altstack_flags = 0;
};

// The XSAVE area of this process's own signal frames: the components the kernel restores from a
// frame (enabled in XCR0 and permitted to this process) and the area's size in the standard layout.
struct FrameXstate {
  uint64_t features = 0;
  uint64_t size = 0;
};
FrameXstate frame_xstate();

// Builds a frame for one thread's registers, to be copied to its place on that thread's stack: its
// XSAVE image cut to this process's frame_xstate() (an error if a component in use would be cut).
Result<SigframeLayout> build_sigframe(const pb::Registers& regs, const SigframeSignals& sig, uint64_t xfeatures);
Result<SigframeLayout> build_sigframe(const pb::Registers& regs, const SigframeSignals& sig, uint64_t xfeatures,
                                      const FrameXstate& here);
// The main thread's frame (the snapshot's regs and signals).
Result<SigframeLayout> build_sigframe(const pb::Snapshot& snap);
// Thread i's frame (snap.threads(i)).
Result<SigframeLayout> build_thread_sigframe(const pb::Snapshot& snap, int i);

}  // namespace prewarm
