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

// Builds a frame for one thread's registers, to be copied to its place on that thread's stack.
Result<SigframeLayout> build_sigframe(const pb::Registers& regs, const SigframeSignals& sig, uint64_t xfeatures);
// The main thread's frame (the snapshot's regs and signals).
Result<SigframeLayout> build_sigframe(const pb::Snapshot& snap);
// Thread i's frame (snap.threads(i)).
Result<SigframeLayout> build_thread_sigframe(const pb::Snapshot& snap, int i);

}  // namespace prewarm
