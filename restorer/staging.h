// The staged mappings inside the hole (restorer/hole.h): contents read from pages.img and
// verified before the point of no return.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct StagedRead {
  uint64_t bytes = 0;
};

// Maps `m` at `slot` (inside the hole) the way the snapshot had it, reads its page runs
// [first_run, last_run) into place and verifies each run's checksum, then applies its
// protections. `file_fd` is the mapped file for FILE mappings, else -1.
Result<void> stage_mapping(const pb::Snapshot& snap, const pb::Mapping& m, int first_run,
                           int last_run, uint64_t slot, int pages_fd, int file_fd,
                           StagedRead& stats);

int mmap_flags_for(const pb::Mapping& m);

// madvise state to re-create (PW_ADVISE_* bits). Large private anonymous mappings also get
// transparent huge pages: refilling them costs one fault per 2 MiB instead of per 4 KiB, which
// on these VMs is most of the restore time (the VMA then carries VmFlags `hg`). Not when the app
// turned THP off (PR_SET_THP_DISABLE): it would run on huge pages it refused.
uint32_t advice_for(const pb::Mapping& m, bool app_thp_disabled = false);
Result<void> apply_advice(void* addr, uint64_t len, uint32_t advice);

}  // namespace prewarm
