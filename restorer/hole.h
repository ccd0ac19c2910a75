// The hole: an address range free in both the launcher and the snapshot, holding the blob's
// code, the plan and its stacks, the vDSO hop slot and each staged mapping. Where it goes and
// how it is laid out are pure functions of the image and of this process's special mappings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "snapshot/cpu_compat.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

inline constexpr uint64_t kTaskSize = 0x7ffffffff000ull;  // TASK_SIZE with 4-level page tables
inline constexpr uint64_t kHoleLowest = 1ull << 32;        // clear of non-PIE binaries and brk
inline constexpr int kMaxRestoredThreads = 1024;           // policy::kMaxThreads refuses more at dump
inline constexpr uint64_t kBlobThreadStack = 16 * 1024;  // a thread's blob code needs a few hundred bytes
inline constexpr size_t kMaxReadyMessageBytes = 4096;    // without its phase fields

struct Interval {
  uint64_t start = 0, end = 0;
};

// A mapping's stored runs are page_runs[first, last).
struct MappingRuns {
  int first = 0, last = 0;
  bool staged() const { return last > first; }
};

struct HoleLayout {
  std::vector<MappingRuns> runs;   // per mapping
  std::vector<uint64_t> slot_off;  // per mapping: offset of its staged copy in the hole
  uint64_t blob_len = 0, plan_len = 0;
  uint64_t thread_stacks_off = 0;  // within the plan region: one blob stack per extra thread
  uint64_t hop_off = 0;  // the slot the vDSO pair passes through
  uint64_t vdso_span = 0;  // its size
  uint64_t hole_len = 0;
};

// Sizes the hole: blob code, plan and blob stack, the vDSO hop slot, then each staged mapping
// at its own offset within a 2 MiB page. `message_size` is the readiness message without the
// phase fields; `fd_entries` the number of fd moves and close ranges. Refuses images whose total
// would not fit the address space.
Result<HoleLayout> layout_hole(const pb::Snapshot& snap, const SpecialMappings& own, uint64_t blob_size,
                               uint64_t frame_size, uint64_t message_size, uint64_t fd_entries);

// Where a hole of `size` bytes may go, best first: aligned spots inside the gaps between the
// snapshot's mappings (`taken`, sorted), largest gap first. The caller still has to find one
// that is free in this process.
std::vector<uint64_t> hole_candidates(const std::vector<Interval>& taken, uint64_t size);

// Reserves `size` bytes (PROT_NONE) outside every interval in `taken` (sorted, disjoint).
Result<UniqueMapping> reserve_hole(const std::vector<Interval>& taken, uint64_t size);

// This kernel's special mappings (vvar, vvar_vclock, vdso) that this process has.
struct Special {
  pb::Mapping::Kind kind;
  uint64_t start, end;
};
std::vector<Special> specials_of(const SpecialMappings& own);
// One of those in the image: moved to its old address, never mapped, advised or locked.
bool is_special(const pb::Mapping& m);

}  // namespace prewarm
