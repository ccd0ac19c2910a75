// The app's open files (other than stdio): reopened by the launcher, put in place by the blob.
#pragma once

#include <vector>

#include "restorer/blob/plan_abi.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct AppFiles {
  std::vector<UniqueFd> fds;        // opened here, above every fd number the app uses
  std::vector<PwFdMove> moves;      // dup3 in the blob
  std::vector<PwRange> close;       // fd ranges the blob closes: everything but stdio and the app's
  std::vector<PwEpollAdd> epoll;    // registrations the blob adds once every fd is in place
};

// Opens each file with its flags and offset, refusing any that changed since the snapshot, and
// creates each kernel object (restorer/fd_objects.h).
Result<AppFiles> open_app_files(const pb::Snapshot& snap);

}  // namespace prewarm
