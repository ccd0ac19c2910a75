// Lazy restore with userfaultfd, the launcher's half: whether it can be used here, which
// mappings it serves, and the page server's region (restorer/blob/lazy_server.h is the rest).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// A userfaultfd for this process's mm that serves kernel-mode faults too (never
// UFFD_USER_MODE_ONLY: a read(2) into a missing page would fail with EFAULT), O_NONBLOCK, with the
// mm events the server handles (REMAP, REMOVE, UNMAP). `given`: one opened earlier (by a root
// launcher before it dropped to the app's user), or -1 to make one: userfaultfd(2), else
// /dev/userfaultfd. The error says why lazy restore is not possible here.
Result<UniqueFd> open_lazy_uffd(int given = -1);
// Only the first step of that: a userfaultfd not yet set up (UFFDIO_API works once per fd), for
// a launcher to make while it still has the privilege and pass as `given` later.
Result<UniqueFd> create_full_uffd();

// What the lazy restore serves and what is left to staging. Lazy: private anonymous mappings
// with stored pages, not stacks (MAP_GROWSDOWN), each run at most kMaxLazyRun.
struct LazySetup {
  pb::Snapshot eager_view;           // the image without the lazy mappings' runs: what the plan stages
  std::vector<int> lazy_runs;        // indexes into the image's page_runs: working set, then pages.img order
  std::vector<PwRange> ranges;       // the lazy mappings
  std::vector<uint32_t> dontfork;    // parallel to ranges: the app had MADV_DONTFORK there
  uint64_t pages = 0;                // pages served lazily
  uint64_t prefetched_pages = 0;     // of those, in the working set
  uint64_t region_len = 0;           // the server's region
  uint64_t max_run = 0;
};
inline constexpr uint64_t kMaxLazyRun = 16ull << 20;

// Empty `lazy_runs` when nothing in the image would be served lazily. Runs in `working_set`
// (indexes into page_runs) come first in `lazy_runs`: the server fills them before the rest.
// (Not staged: a staged mapping's first touches may fill whole huge pages with zeros, which a
// registration afterwards would take for the app's own pages.)
LazySetup plan_lazy(const pb::Snapshot& snap, const std::vector<uint32_t>& working_set = {});

// The working set file beside an image (`prewarm restore --lazy --images DIR`: DIR/workingset):
// a 16-byte header (magic, the pages.img size), then the page_runs index of each run a lazy
// launch faulted on, 4 bytes each, appended by the page server. Indexes out of range, a torn last
// record or another image's header read as nothing: the file only orders work.
std::vector<uint32_t> read_working_set(int fd, const pb::Snapshot& snap);
// Starts the file again with `runs` (what this launch prefetches): later faults add to it.
Result<void> restart_working_set(int fd, const pb::Snapshot& snap, const std::vector<uint32_t>& runs);

// Maps the server's region at `region` and writes its header and tables. `notify_fd`: the
// readiness socket (-1: none), which the server tells if it has to kill the app.
Result<void> write_lazy_region(const pb::Snapshot& snap, const LazySetup& s, uint64_t region, int uffd,
                               int pages_fd, int notify_fd, int ws_fd, bool trace);

}  // namespace prewarm
