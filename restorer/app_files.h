// The app's open files (other than stdio): reopened by the launcher, put in place by the blob.
#pragma once

#include <utility>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "restorer/fd_objects.h"
#include "snapshot/fd_objects.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct AppFiles {
  std::vector<UniqueFd> fds;        // opened here, above every fd number the app uses
  std::vector<PwFdMove> moves;      // dup3 in the blob
  std::vector<PwRange> close;       // fd ranges the blob closes: everything but stdio and the app's
  std::vector<PwEpollAdd> epoll;    // registrations the blob adds once every fd is in place
  // The launch's sockets (FD_PASSED) and the O_NONBLOCK the app had on them: set just before
  // the point of no return, since systemd shares their flags and a refused restore keeps them.
  std::vector<std::pair<int, int>> passed_flags;
  std::vector<BoundSocketPath> bound_paths;  // unix listeners' socket files, gone again if refused
};

// The launcher's fd that becomes the app's fd `app_fd` at restore (stdio: its own), or -1.
int launcher_fd(const AppFiles& files, int app_fd);

// Opens each file with its flags and offset, refusing any that changed since the snapshot, and
// creates each kernel object (restorer/fd_objects.h); `launch` is this process's LISTEN_FDS.
Result<AppFiles> open_app_files(const pb::Snapshot& snap, const ListenEnv& launch);

}  // namespace prewarm
