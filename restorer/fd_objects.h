// The restore side of kernel-object fds: each eventfd, epoll, timerfd, signalfd, inotify, pipe and
// socketpair of the image created anew in the launcher with its state, before the point of no
// return. Epoll registrations need the targets at their final numbers, so the blob adds them.
// Sockets the snapshot's launch passed (LISTEN_FDS) are this launch's own, checked to match.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "snapshot/fd_objects.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// The socket file of a unix listener the restore bound to its path: unlinked again when a refused
// restore drops it (if the path still names that file), so the cold start finds the path free.
// release() at the point of no return: the file is then the restored app's.
class BoundSocketPath {
 public:
  BoundSocketPath(std::string path, dev_t dev, ino_t ino) : path_(std::move(path)), dev_(dev), ino_(ino) {}
  BoundSocketPath(BoundSocketPath&& o) noexcept : path_(std::move(o.path_)), dev_(o.dev_), ino_(o.ino_) {
    o.path_.clear();
  }
  BoundSocketPath(const BoundSocketPath&) = delete;
  BoundSocketPath& operator=(const BoundSocketPath&) = delete;
  BoundSocketPath& operator=(BoundSocketPath&&) = delete;
  ~BoundSocketPath();
  void release() { path_.clear(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  dev_t dev_;
  ino_t ino_;
};

// One object per open file description of the image (OpenFile.description), keyed by it. A
// socket the snapshot's launch passed (FD_PASSED) is a dup of this launch's own at the same
// number (`launch`: this process's LISTEN_FDS); a launch that passes other sockets is refused
// (Error.unsupported), naming the difference. A unix listener bound to a path takes it again: a
// socket file nobody listens on is replaced, one another process listens on refuses the restore
// (a cold start would not get it either); each file bound is added to `bound`.
Result<std::map<uint32_t, UniqueFd>> create_fd_objects(const pb::Snapshot& snap, const ListenEnv& launch,
                                                       std::vector<BoundSocketPath>& bound);

// Why this launch's sockets cannot stand in for the snapshot's launch's ("" if they can): their
// count and names (LISTEN_FDS, LISTEN_FDNAMES). Exposed for unit tests, as is the next.
std::string launch_sockets_difference(const pb::Snapshot& snap, const ListenEnv& launch);
// Why socket `have` (this launch's) is not `want` (the snapshot's), "" if it is.
std::string passed_socket_difference(const pb::SockListener& want, const pb::SockListener& have);

// Gives every inotify watch of the image its mask (create_fd_objects adds them with none), and
// checks each instance against the image through its fdinfo. Called after the restore's last
// change to the file system before the point of no return, so the app gets no event of it;
// `bound`: the socket files create_fd_objects bound.
Result<void> arm_inotify(const pb::Snapshot& snap, const std::function<int(int)>& launcher_fd,
                         const std::vector<BoundSocketPath>& bound);

// Every epoll registration of the image, tried first on a scratch epoll with the launcher's fds
// (`launcher_fd` maps an app fd number to the launcher's fd that will become it; -1: none) so
// the blob's epoll_ctl cannot be refused.
Result<std::vector<PwEpollAdd>> epoll_registrations(const pb::Snapshot& snap,
                                                    const std::function<int(int)>& launcher_fd);

}  // namespace prewarm
