// The last steps of the launcher: copy the blob into the hole and jump to it.
#pragma once

#include <cstdint>
#include <string_view>

#include "snapshot/result.h"

namespace prewarm {

std::string_view restorer_blob();

// glibc registered an rseq area in the launcher's TLS; the kernel would write to it after the
// launcher is gone. Unregistering can fail (unexpected libc), so it is done, and checked,
// before the point of no return.
Result<void> drop_own_rseq();

// Blocks every signal (including the ones glibc reserves) until rt_sigreturn installs the app's
// mask: a handler of the launcher must never run once its code is unmapped.
Result<void> block_all_signals();

// The point of no return.
[[noreturn]] void jump_to_blob(uint64_t entry, uint64_t plan, uint64_t stack_top);

}  // namespace prewarm
