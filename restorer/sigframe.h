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

// Builds the frame for the snapshot's registers, to be copied to its place on the app's stack.
Result<SigframeLayout> build_sigframe(const pb::Snapshot& snap);

}  // namespace prewarm
