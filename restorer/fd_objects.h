// The restore side of kernel-object fds: each eventfd, epoll, timerfd, signalfd, pipe and
// socketpair of the image created anew in the launcher with its state, before the point of no
// return. Epoll registrations need the targets at their final numbers, so the blob adds them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

// One object per open file description of the image (OpenFile.description), keyed by it.
Result<std::map<uint32_t, UniqueFd>> create_fd_objects(const pb::Snapshot& snap);

// Every epoll registration of the image, tried first on a scratch epoll with the launcher's fds
// (`launcher_fd` maps an app fd number to the launcher's fd that will become it; -1: none) so
// the blob's epoll_ctl cannot be refused.
Result<std::vector<PwEpollAdd>> epoll_registrations(const pb::Snapshot& snap,
                                                    const std::function<int(int)>& launcher_fd);

}  // namespace prewarm
