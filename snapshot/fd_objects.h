// The dump side of kernel-object fds (eventfd, epoll, timerfd, signalfd, in-process pipes and
// socketpairs): their state read from fdinfo and from the open files themselves (pidfd_getfd), so
// the launcher can create them anew. Nothing is injected into the process and nothing is consumed.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "snapshot/proc_fds.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"

namespace prewarm {

struct FdObjectCandidate {
  const FdInfo* fd;
  pb::FdKind kind;  // from the policy's class of the fd's target
};

struct FdObjectScan {
  std::vector<pb::OpenFile> records;                 // one per carried fd
  std::vector<std::pair<int, std::string>> refused;  // fd number, why it cannot be carried
};

// Reads the state of every candidate of the frozen process `pid`. `all` is every fd of the
// process (an epoll target or a pipe's other end must be one of them). Errors are failures to
// read; what cannot be carried is in `refused`, by fd.
Result<FdObjectScan> collect_fd_objects(pid_t pid, const std::vector<FdObjectCandidate>& candidates,
                                        const std::vector<FdInfo>& all);

// The checksum of a socket's queued messages (lengths and bytes), checked at restore.
uint64_t sock_queue_hash(const google::protobuf::RepeatedPtrField<pb::SockMessage>& q);

// fdinfo parsers, exposed for unit tests. Each refuses text without the fields it needs.
Result<pb::FdEventfd> parse_eventfd_fdinfo(const std::string& text);
Result<pb::FdTimerfd> parse_timerfd_fdinfo(const std::string& text);
Result<pb::FdSignalfd> parse_signalfd_fdinfo(const std::string& text);
Result<pb::FdEpoll> parse_epoll_fdinfo(const std::string& text);

}  // namespace prewarm
