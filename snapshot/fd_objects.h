// The dump side of kernel-object fds (eventfd, epoll, timerfd, signalfd, inotify, in-process pipes and
// socketpairs): their state read from fdinfo and from the open files themselves (pidfd_getfd), so
// the launcher can create them anew. Nothing is injected into the process and nothing is consumed.
// Sockets the launch passed (LISTEN_FDS) are recorded to be matched, not created, at restore.
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
  // FD_PASSED: which of the launch's sockets (fd 3 + index) and its LISTEN_FDNAMES entry.
  uint32_t passed_index = 0;
  std::string passed_name = {};
};

// The sockets a launch passed by systemd's protocol (sd_listen_fds(3)): LISTEN_FDS fds from 3,
// named by LISTEN_FDNAMES, meant for the process LISTEN_PID names.
struct ListenEnv {
  uint32_t count = 0;              // 0: none passed to this process
  std::vector<std::string> names;  // empty: LISTEN_FDNAMES not set
};
inline constexpr uint32_t kMaxListenFds = 1024;
// From "KEY=VALUE" strings. Nothing when LISTEN_PID is not `pid` (the variables were meant for
// another process) or LISTEN_FDS is not a number from 1 to kMaxListenFds.
ListenEnv parse_listen_env(const std::vector<std::string>& env, pid_t pid);
// From /proc/PID/environ: the environment the process was exec'ed with, so an app that called
// sd_listen_fds(1) (which unsets the variables) still shows what its launch passed.
Result<ListenEnv> read_listen_env(pid_t pid);

struct FdObjectScan {
  std::vector<pb::OpenFile> records;                 // one per carried fd
  std::vector<std::pair<int, std::string>> refused;  // fd number, why it cannot be carried
};

// Reads the state of every candidate of the frozen process `pid`. `all` is every fd of the
// process (an epoll target or a pipe's other end must be one of them). Errors are failures to
// read; what cannot be carried is in `refused`, by fd.
Result<FdObjectScan> collect_fd_objects(pid_t pid, const std::vector<FdObjectCandidate>& candidates,
                                        const std::vector<FdInfo>& all);

// A socket the launch passed, as the image records it and as a restore compares it with the
// restoring launch's: family, type, protocol, address, listening, backlog and options. "" and
// `out` filled, or why such a socket cannot be taken over (a connection: Accept=yes).
Result<std::string> passed_socket_record(int sock, uint64_t inode, pb::SockListener& out);

// The checksum of a socket's queued messages (lengths and bytes), checked at restore.
uint64_t sock_queue_hash(const google::protobuf::RepeatedPtrField<pb::SockMessage>& q);

// fdinfo parsers, exposed for unit tests. Each refuses text without the fields it needs.
Result<pb::FdEventfd> parse_eventfd_fdinfo(const std::string& text);
Result<pb::FdTimerfd> parse_timerfd_fdinfo(const std::string& text);
Result<pb::FdSignalfd> parse_signalfd_fdinfo(const std::string& text);
Result<pb::FdEpoll> parse_epoll_fdinfo(const std::string& text);

}  // namespace prewarm
