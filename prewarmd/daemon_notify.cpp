// Readiness notifications: received from launched apps (and from the restorer, with a restore's
// phase times), and relayed to the launch's own NOTIFY_SOCKET. The relay only ever uses a socket
// the launcher connected itself, never one of prewarmd's own, never blocks, and signs the text
// with the app's credentials, never with prewarmd's.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "prewarmd/daemon.h"
#include "prewarmd/log.h"
#include "snapshot/clock.h"
#include "snapshot/ready_message.h"

namespace prewarm {

int Daemon::on_notify(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  // Bounded per wakeup, so a flood on this socket cannot keep the loop from other peers.
  for (int round = 0; round < 256; ++round) {
    char buf[4096];
    iovec iov{buf, sizeof buf - 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return 0;
    const ucred* uc = nullptr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) uc = reinterpret_cast<const ucred*>(CMSG_DATA(c));
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {  // fd store: not supported
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) ::close(reinterpret_cast<int*>(CMSG_DATA(c))[i]);
      }
    }
    if (!uc) continue;
    const std::string message(buf, static_cast<size_t>(n));
    // The restored launch of the sender, which may be gone by now: these are sent as it dies.
    auto restored_sender = [&]() -> Launch* {
      for (auto& [id, l] : self->launches_)
        if (l->pid == uc->pid && l->mode == policy::LaunchMode::kRestored) return l.get();
      return nullptr;
    };
    // A lazy restore's page server found the image bad past the point of no return and is
    // killing the app (restorer/blob/lazy_server.h): the image goes, the next launch is cold.
    if (auto failure = ready_message::lazy_failure(message)) {
      if (Launch* l = restored_sender()) self->on_lazy_failure(*l, *failure);
      continue;
    }
    // The blob's last words before it ends the process (exit 125); on_restore_died names them.
    if (auto failure = ready_message::restore_failure(message)) {
      if (Launch* l = restored_sender()) l->restore_failure = failure->substr(0, 300);
      continue;
    }
    for (auto& [id, l] : self->launches_) {
      // A launch that exited is read only for what it sent before (see on_launch_exit).
      if (l->pid != uc->pid || (l->id != self->exiting_launch_ && !proto::process_alive(l->pidfd.get()))) continue;
      self->forward_notify(*l, ready_message::without_prewarm_fields(message));
      if (!ready_message::is_ready(message)) break;
      // A restored app's READY=1 comes from the restorer, with the restore's phase times.
      const int64_t now = mono_ns();
      auto report = l->mode == policy::LaunchMode::kRestored ? parse_restore_report(message, l->t0_ns, now) : std::nullopt;
      self->on_ready(*l, report ? report->resumed_ns : now, "notify", report);
      break;
    }
  }
  return 0;
}

// "" if `fd` may carry this launch's notifications: a connected Unix datagram socket whose peer is
// not one of prewarmd's own sockets (a relay to itself would loop).
std::string Daemon::accept_notify_socket(int fd) const {
  int type = 0, domain = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return "not a socket";
  len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX || type != SOCK_DGRAM)
    return "not a Unix datagram socket";
  sockaddr_un peer{};
  len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "not connected";
  if (len <= offsetof(sockaddr_un, sun_path)) return "its peer has no address";
  const size_t n = len - offsetof(sockaddr_un, sun_path);
  std::string name(peer.sun_path, n);
  if (auto z = name.find('\0'); !name.empty() && name[0] != '\0' && z != std::string::npos) name.resize(z);  // a path: up to its NUL
  if (name == notify_path_ || name == control_path_) return "it is prewarmd's own socket";
  return "";
}

void Daemon::forward_notify(Launch& l, const std::string& message) {
  if (!l.notify.valid()) return;
  iovec iov{const_cast<char*>(message.data()), message.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))]{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(ucred));
  // systemd accepts READY=1 only from the unit's main pid, which the app is; the uid and gid are
  // the app's, so the receiver sees who wrote the text.
  ucred uc{l.pid, l.uid, l.gid};
  std::memcpy(CMSG_DATA(c), &uc, sizeof uc);
  ssize_t r = ::sendmsg(l.notify.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (r < 0 && errno == EPERM) {
    // Without CAP_SYS_ADMIN the kernel refuses another pid: our own, still with the app's uid and
    // gid. Never without credentials: the kernel would sign the client's text as root.
    uc.pid = ::getpid();
    std::memcpy(CMSG_DATA(c), &uc, sizeof uc);
    r = ::sendmsg(l.notify.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  if (r >= 0) return;
  if (errno == EPERM) {
    log_event(LOG_WARNING, l.app + ": cannot relay to the launch's NOTIFY_SOCKET in the app's name (" +
                               std::strerror(errno) + "; prewarmd lacks CAP_SETUID/CAP_SETGID); not relaying",
              {{"PREWARM_APP", l.app}});
    l.notify.reset();
    return;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    // A full receiver: the message is dropped, never waited for.
    if (l.notify_dropped++ == 0)
      log_event(LOG_WARNING, l.app + ": the launch's NOTIFY_SOCKET is full; dropping notifications", {{"PREWARM_APP", l.app}});
    return;
  }
  log_event(LOG_WARNING, l.app + ": cannot relay to the launch's NOTIFY_SOCKET: " + std::strerror(errno) +
                             "; no more notifications are relayed",
            {{"PREWARM_APP", l.app}});
  l.notify.reset();
}

}  // namespace prewarm
