// Creating the image's kernel objects in the launcher. Each is made with its state (counter,
// timer, mask, inotify watches, buffered bytes, queued messages) and flags; the blob only dup3s it into place.
#include "restorer/fd_objects.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <string_view>

#include "snapshot/fd_objects.h"
#include "snapshot/file_identity.h"
#include "snapshot/image.h"
#include "snapshot/inotify.h"
#include "snapshot/sock_diag.h"

namespace prewarm {
namespace {

// include/uapi/linux/timerfd.h (that header clashes with glibc's sys/timerfd.h).
constexpr unsigned long kTfdIocSetTicks = _IOW('T', 0, uint64_t);

std::string fd_name(const pb::OpenFile& f) { return "the app's fd " + std::to_string(f.fd()) + " (" + f.path() + ")"; }

Result<void> set_nonblock(int fd, const pb::OpenFile& f) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return errno_error("F_GETFL");
  fl = (fl & ~O_NONBLOCK) | (static_cast<int>(f.flags()) & O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, fl) != 0) return errno_error("set the flags of " + fd_name(f));
  return ok();
}

Result<UniqueFd> make_eventfd(const pb::OpenFile& f) {
  const auto& e = f.eventfd();
  if (e.count() == ~0ull) return data_error(fd_name(f) + ": invalid eventfd counter");
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | (e.semaphore() ? EFD_SEMAPHORE : 0)));
  if (!fd.valid()) return errno_error("eventfd for " + fd_name(f));
  const uint64_t count = e.count();
  if (count != 0 && ::write(fd.get(), &count, sizeof count) != sizeof count)
    return errno_error("set the counter of " + fd_name(f));
  PW_TRY(set_nonblock(fd.get(), f));
  return fd;
}

// The remaining time is carried, as CRIU does: a restore resumes the app as it was at the
// snapshot, so a timer due 5 s after it is due 5 s after the restore. An absolute timer is armed
// absolute (its flags stay visible) at now + remaining on its own clock.
Result<UniqueFd> make_timerfd(const pb::OpenFile& f) {
  const auto& t = f.timerfd();
  if (t.value_nsec() >= 1000000000ull || t.interval_nsec() >= 1000000000ull ||
      t.value_sec() > (1ull << 40) || t.interval_sec() > (1ull << 40))
    return data_error(fd_name(f) + ": invalid timer");
  UniqueFd fd(::timerfd_create(t.clockid(), TFD_CLOEXEC | TFD_NONBLOCK));
  if (!fd.valid()) return errno_error("timerfd_create(clock " + std::to_string(t.clockid()) + ") for " + fd_name(f));
  itimerspec its{};
  its.it_value = {static_cast<time_t>(t.value_sec()), static_cast<long>(t.value_nsec())};
  its.it_interval = {static_cast<time_t>(t.interval_sec()), static_cast<long>(t.interval_nsec())};
  const bool armed = t.value_sec() != 0 || t.value_nsec() != 0;
  const int flags = static_cast<int>(t.settime_flags()) & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
  if (armed && (flags & TFD_TIMER_ABSTIME)) {
    // timerfd clocks: the *_ALARM clocks read as their base clocks.
    clockid_t base = t.clockid() == CLOCK_REALTIME_ALARM  ? CLOCK_REALTIME
                     : t.clockid() == CLOCK_BOOTTIME_ALARM ? CLOCK_BOOTTIME
                                                          : t.clockid();
    timespec now{};
    if (::clock_gettime(base, &now) != 0) return errno_error("clock_gettime for " + fd_name(f));
    its.it_value.tv_sec += now.tv_sec;
    its.it_value.tv_nsec += now.tv_nsec;
    if (its.it_value.tv_nsec >= 1000000000) its.it_value.tv_sec += 1, its.it_value.tv_nsec -= 1000000000;
  }
  if (armed || flags != 0) {
    if (::timerfd_settime(fd.get(), armed ? flags : 0, &its, nullptr) != 0)
      return errno_error("arm the timer of " + fd_name(f));
  }
  // Expirations the app has not read yet (timerfd_settime reset them to 0).
  if (t.ticks() != 0) {
    uint64_t ticks = t.ticks();
    if (::ioctl(fd.get(), kTfdIocSetTicks, &ticks) != 0)
      return errno_error("set the pending expirations of " + fd_name(f) + " (TFD_IOC_SET_TICKS)");
  }
  PW_TRY(set_nonblock(fd.get(), f));
  return fd;
}

std::string watch_name(const pb::OpenFile& f, const pb::InotifyWatch& w) {
  return fd_name(f) + ": inotify watch " + std::to_string(w.wd()) + " on " + w.path();
}

// That `w`'s path still names its file, unchanged since the snapshot (whatever changed it made an
// event the app will never read). `entries_may_change`: a directory the restore itself has made
// entries in (a ghost file made and unlinked, a socket bound again), whose own times it then no
// longer compares; its entries still are (a socket by its type only).
Result<void> check_watched(const std::string& what, const pb::InotifyWatch& w, bool entries_may_change) {
  struct stat st {};
  if (::lstat(w.path().c_str(), &st) != 0) return unsupported_error(what + ": " + std::strerror(errno));
  bool same = same_inode(from_proto(w.file()), FileIdentity::of(st));
  if (same && !w.handle().empty()) {  // an inode number given to a new file is told apart by its handle
    auto h = has_file_handle(w.path(), w.handle_type(), w.handle());
    same = h ? *h : h.error().code == EOPNOTSUPP;
  }
  if (!same) return unsupported_error(what + ": the path names another file than the one watched at the snapshot");
  if (auto why = changed(from_proto(w.file()), FileIdentity::of(st)); why && !entries_may_change)
    return unsupported_error(what + ": the file changed since the snapshot (" + std::string(*why) + ")");
  if (w.children_listed()) {
    UniqueFd dir(::open(w.path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    uint64_t sum = 0;
    uint32_t n = 0;
    if (!dir.valid() || !children_sum(dir.get(), child_stamps(w.mask(), st.st_mode), sum, n))
      return unsupported_error(what + ": its entries cannot be listed to tell whether one changed");
    if (sum != w.children_sum() || n != w.children())
      return unsupported_error(what + ": an entry of the directory changed since the snapshot");
  }
  return ok();
}

// Each watch is added again by path at its wd, with no events yet (arm_inotify gives them their
// masks once the restore has done everything else it does to the file system, which the app would
// otherwise see). A wd comes from a cursor that only moves forward, so a gap is passed by adding
// and removing the watch until it gets its number; the IN_IGNORED events of the removals are
// read away here. `budget`: wds the image may still pass over, for all its instances.
Result<UniqueFd> make_inotify(const pb::OpenFile& f, int64_t& budget) {
  constexpr uint32_t kCarriedMask = IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK;
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd.valid()) return errno_error("inotify_init1 for " + fd_name(f));
  std::set<int32_t> wanted;
  auto drain = [&]() -> Result<void> {
    alignas(inotify_event) char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EAGAIN) return ok();
      if (n <= 0) return errno_error("read the new inotify instance of " + fd_name(f));
      for (ssize_t at = 0; at < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
        const bool ours = (ev->mask & IN_IGNORED) && !wanted.count(ev->wd);
        if (!ours && !(ev->mask & IN_Q_OVERFLOW))
          return unsupported_error(fd_name(f) + ": inotify watch " + std::to_string(ev->wd) +
                                   " ended while it was being restored (its file was removed?)");
        at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
  };
  int32_t last = 0;
  for (const auto& w : f.inotify().watches()) {
    const std::string what = watch_name(f, w);
    if (w.wd() <= last || (w.mask() & ~kCarriedMask) || w.path().empty() || w.path()[0] != '/')
      return data_error(what + ": invalid watch in the image");
    budget -= w.wd() - last - 1;
    if (budget < 0)
      return unsupported_error(fd_name(f) + ": inotify wds up to " + std::to_string(w.wd()) +
                               ": the image's instances leave more wds unused than a restore passes over");
    PW_TRY(check_watched(what, w, /*entries_may_change=*/false));
    wanted.insert(w.wd());
    for (int64_t tries = 0;; ++tries) {
      const int got = ::inotify_add_watch(fd.get(), w.path().c_str(), IN_DONT_FOLLOW);  // no events yet
      if (got < 0) return unsupported_error(what + ": inotify_add_watch: " + std::strerror(errno));
      if (got == w.wd()) break;
      if (got <= last || got > w.wd()) return data_error(what + ": the kernel gave wd " + std::to_string(got));
      if (::inotify_rm_watch(fd.get(), got) != 0) return errno_error(what + ": inotify_rm_watch");
      if (tries % 1024 == 1023) PW_TRY(drain());  // the queue holds 16384 events by default
    }
    last = w.wd();
  }
  PW_TRY(drain());
  PW_TRY(set_nonblock(fd.get(), f));
  return fd;
}

Result<UniqueFd> make_signalfd(const pb::OpenFile& f) {
  uint64_t mask = f.signalfd().mask();
  UniqueFd fd(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, O_CLOEXEC | O_NONBLOCK)));
  if (!fd.valid()) return errno_error("signalfd for " + fd_name(f));
  PW_TRY(set_nonblock(fd.get(), f));
  return fd;
}

// At the fd's offset, or at `at` (pwrite) when it is not negative.
Result<void> write_whole(int fd, std::string_view data, const std::string& what, off_t at = -1) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = at < 0 ? ::write(fd, data.data() + done, data.size() - done)
                       : ::pwrite(fd, data.data() + done, data.size() - done, at + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errno_error("put back the bytes of " + what);
    done += static_cast<size_t>(n);
  }
  return ok();
}

// Both ends of one pipe: its capacity, its bytes, each end's flags.
Result<void> make_pipe(const pb::OpenFile& read_end, const pb::OpenFile& write_end,
                       std::map<uint32_t, UniqueFd>& out) {
  const auto& p = read_end.pipe();
  if (p.data().size() > p.capacity() || p.capacity() > (1u << 30))
    return data_error(fd_name(read_end) + ": pipe bytes larger than the pipe");
  if (xxh3_64(p.data().data(), p.data().size()) != p.data_xxh3())
    return data_error(fd_name(read_end) + ": the pipe's stored bytes do not match their checksum");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("pipe for " + fd_name(read_end));
  UniqueFd r(fds[0]), w(fds[1]);
  int cap = ::fcntl(w.get(), F_GETPIPE_SZ);
  if (cap < 0 || (static_cast<uint32_t>(cap) != p.capacity() &&
                  ::fcntl(w.get(), F_SETPIPE_SZ, static_cast<int>(p.capacity())) < 0))
    return errno_error("give the pipe of " + fd_name(read_end) + " its size of " + std::to_string(p.capacity()));
  PW_TRY(write_whole(w.get(), p.data(), fd_name(read_end)));
  PW_TRY(set_nonblock(r.get(), read_end));
  PW_TRY(set_nonblock(w.get(), write_end));
  out[read_end.description()] = std::move(r);
  out[write_end.description()] = std::move(w);
  return ok();
}

Result<void> set_buf(int fd, int force_opt, int opt, int kernel_value) {
  // getsockopt reports twice what setsockopt asked for (the kernel's bookkeeping share).
  int v = kernel_value / 2;
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0) return ok();
  if (::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) == 0) return ok();
  return errno_error("set socket buffer size");
}

// Both ends of a socketpair; each end's queue is sent again by its twin, in order.
Result<void> make_sockpair(const pb::OpenFile& a, const pb::OpenFile& b, std::map<uint32_t, UniqueFd>& out) {
  const int type = a.sockpair().type();
  if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
    return data_error(fd_name(a) + ": invalid socket type");
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    return errno_error("socketpair for " + fd_name(a));
  UniqueFd s[2] = {UniqueFd(sv[0]), UniqueFd(sv[1])};
  const pb::OpenFile* rec[2] = {&a, &b};
  for (int i = 0; i < 2; ++i) {
    const auto& e = rec[i]->sockpair();
    if (sock_queue_hash(e.queued()) != e.queued_xxh3())
      return data_error(fd_name(*rec[i]) + ": the socket's stored messages do not match their checksum");
    PW_TRY(set_buf(s[i].get(), SO_SNDBUFFORCE, SO_SNDBUF, e.sndbuf()));
    PW_TRY(set_buf(s[i].get(), SO_RCVBUFFORCE, SO_RCVBUF, e.rcvbuf()));
    int passcred = e.passcred() ? 1 : 0;
    if (::setsockopt(s[i].get(), SOL_SOCKET, SO_PASSCRED, &passcred, sizeof passcred) != 0)
      return errno_error("SO_PASSCRED for " + fd_name(*rec[i]));
  }
  for (int i = 0; i < 2; ++i) {
    for (const auto& m : rec[i]->sockpair().queued()) {
      size_t done = 0;
      do {  // a datagram goes in one send; a stream may take several
        ssize_t n = ::send(s[1 - i].get(), m.data().data() + done, m.data().size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
          return errno_error("put back the " + std::to_string(m.data().size()) + " queued bytes of " + fd_name(*rec[i]));
        done += static_cast<size_t>(n);
      } while (done < m.data().size() && type == SOCK_STREAM);
    }
  }
  for (int i = 0; i < 2; ++i) {
    int off = rec[i]->sockpair().peek_off();
    if (off >= 0 && ::setsockopt(s[i].get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0)
      return errno_error("SO_PEEK_OFF for " + fd_name(*rec[i]));
    PW_TRY(set_nonblock(s[i].get(), *rec[i]));
  }
  out[a.description()] = std::move(s[0]);
  out[b.description()] = std::move(s[1]);
  return ok();
}

// Binds a unix socket to the file-system name in `addr` again. The name is in use when the
// snapshotted app (or another) still listens there, and also when only its socket file is left:
// that one, a socket file of this user no socket is bound to, is unlinked and the bind retried.
Result<void> bind_unix_path(int fd, const sockaddr_un& addr, socklen_t len, const pb::OpenFile& f,
                            std::vector<BoundSocketPath>& bound) {
  const std::string name(addr.sun_path, strnlen(addr.sun_path, len - offsetof(sockaddr_un, sun_path)));
  if (name.empty()) return data_error(fd_name(f) + ": unix socket with an empty name");
  // A relative name is bound from its directory (so getsockname reads the same), then the
  // launcher's cwd is put back; every other use of the file goes by its absolute path.
  std::string path = name;
  UniqueFd back;
  if (name[0] != '/') {
    const std::string& dir = f.listener().path_dir();
    if (dir.empty() || dir[0] != '/') return data_error(fd_name(f) + ": relative unix socket name without its directory");
    path = dir + "/" + name;
    back.reset(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!back.valid()) return errno_error("open the launcher's cwd");
    if (::chdir(dir.c_str()) != 0) return errno_error("enter " + dir + " to bind " + fd_name(f));
  }
  struct Return {
    int fd;
    ~Return() {
      if (fd >= 0) (void)::fchdir(fd);
    }
  } ret{back.get()};
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    if (errno != EADDRINUSE) return errno_error("bind " + fd_name(f) + " to " + path + " again");
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != ::geteuid())
      return make_error(EADDRINUSE, "bind " + fd_name(f) + ": " + path + " is taken by a file that is not this user's socket");
    PW_ASSIGN(bool live, unix_socket_bound_to(st.st_dev, st.st_ino));
    if (live) return make_error(EADDRINUSE, "bind " + fd_name(f) + ": another process has a socket bound to " + path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove the stale socket file " + path);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0)
      return errno_error("bind " + fd_name(f) + " to " + path + " again");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error("stat " + path + " after bind");
  bound.emplace_back(path, st.st_dev, st.st_ino);
  if (f.listener().has_path_mode() && ::chmod(path.c_str(), f.listener().path_mode() & 07777) != 0)
    return errno_error("chmod " + path);
  return ok();
}

}  // namespace

BoundSocketPath::~BoundSocketPath() {
  struct stat st {};
  if (!path_.empty() && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
}

namespace {

// A listener at its old address. Binding fails while another process holds the address (the
// snapshotted app itself, if it still runs): then the restore is refused, as a second cold start
// would fail to bind too.
Result<UniqueFd> make_listener(const pb::OpenFile& f, std::vector<BoundSocketPath>& bound) {
  const auto& l = f.listener();
  if (l.address().size() > sizeof(sockaddr_storage) || l.address().size() < sizeof(sa_family_t) ||
      (l.family() != AF_INET && l.family() != AF_INET6 && l.family() != AF_UNIX))
    return data_error(fd_name(f) + ": invalid socket address");
  UniqueFd fd(::socket(l.family(), l.type() | SOCK_CLOEXEC | SOCK_NONBLOCK, l.protocol()));
  if (!fd.valid()) return errno_error("socket for " + fd_name(f));
  for (const auto& o : l.options()) {
    int v = o.value();
    if (o.level() == SOL_SOCKET && (o.name() == SO_SNDBUF || o.name() == SO_RCVBUF)) {
      PW_TRY(set_buf(fd.get(), o.name() == SO_SNDBUF ? SO_SNDBUFFORCE : SO_RCVBUFFORCE, o.name(), v));
      continue;
    }
    if (::setsockopt(fd.get(), o.level(), o.name(), &v, sizeof v) != 0)
      return errno_error("setsockopt(" + std::to_string(o.level()) + ", " + std::to_string(o.name()) + ") for " + fd_name(f));
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, l.address().data(), l.address().size());
  const auto alen = static_cast<socklen_t>(l.address().size());
  const bool inet = l.family() == AF_INET || l.family() == AF_INET6;
  const bool port = l.family() == AF_INET    ? reinterpret_cast<const sockaddr_in&>(addr).sin_port != 0
                    : l.family() == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(addr).sin6_port != 0
                                             : false;
  // Never bound: a unix one without a name (a bind with none would autobind an abstract one), an
  // inet one without a port (a bind would take one).
  const bool never_bound = (l.family() == AF_UNIX && alen <= offsetof(sockaddr_un, sun_path)) || (inet && !port);
  if (!never_bound && l.family() == AF_UNIX && reinterpret_cast<const sockaddr_un&>(addr).sun_path[0] != '\0') {
    PW_TRY(bind_unix_path(fd.get(), reinterpret_cast<const sockaddr_un&>(addr), alen, f, bound));
  } else if (!never_bound && ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), alen) != 0) {
    // The app may have bound with IP_FREEBIND and cleared it after: bind so, then clear it.
    int on = 1, off = 0;
    if (errno != EADDRNOTAVAIL || !inet || ::setsockopt(fd.get(), IPPROTO_IP, IP_FREEBIND, &on, sizeof on) != 0 ||
        ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), static_cast<socklen_t>(l.address().size())) != 0 ||
        ::setsockopt(fd.get(), IPPROTO_IP, IP_FREEBIND, &off, sizeof off) != 0)
      return errno_error("bind " + fd_name(f) + " to its address again");
  }
  if (l.listening() && ::listen(fd.get(), l.backlog()) != 0) return errno_error("listen on " + fd_name(f));
  PW_TRY(set_nonblock(fd.get(), f));
  return fd;
}

// A sockaddr as people write it: 127.0.0.1:80, [::1]:80, /run/x.sock, @abstract.
std::string address_text(const std::string& raw) {
  sockaddr_storage a{};
  std::memcpy(&a, raw.data(), std::min(raw.size(), sizeof a));
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET && raw.size() >= sizeof(sockaddr_in)) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (a.ss_family == AF_INET6 && raw.size() >= sizeof(sockaddr_in6)) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6.sin6_port));
  }
  if (a.ss_family == AF_UNIX) {
    const size_t off = offsetof(sockaddr_un, sun_path);
    if (raw.size() <= off) return "(unnamed unix socket)";
    std::string path = raw.substr(off);
    if (path[0] == '\0') return "@" + path.substr(1);
    return path.substr(0, path.find('\0'));
  }
  return "(an address of family " + std::to_string(a.ss_family) + ")";
}

std::string socket_kind_text(const pb::SockListener& s) {
  std::string family = s.family() == AF_INET    ? "IPv4"
                       : s.family() == AF_INET6 ? "IPv6"
                       : s.family() == AF_UNIX  ? "unix"
                                                : "family " + std::to_string(s.family());
  std::string type = s.type() == SOCK_STREAM      ? "stream"
                     : s.type() == SOCK_DGRAM     ? "datagram"
                     : s.type() == SOCK_SEQPACKET ? "seqpacket"
                                                  : "type " + std::to_string(s.type());
  return family + " " + type + (s.listening() ? " listening" : "") + " socket on " + address_text(s.address());
}

// This launch's socket at the snapshot's number, checked to be the same socket in all the app
// could have seen, as a dup (the launch's own number is closed by the blob or taken by dup3).
Result<UniqueFd> take_passed(const pb::OpenFile& f, const ListenEnv& launch) {
  const uint32_t index = f.passed().index();
  const std::string what =
      fd_name(f) + ", which its launch passed (LISTEN_FDS socket " + std::to_string(index + 1ull) + ")";
  if (index >= launch.count)  // launch.count <= kMaxListenFds
    return unsupported_error(what + ": this launch passes only " + std::to_string(launch.count));
  const int from = 3 + static_cast<int>(index);
  struct stat st {};
  if (::fstat(from, &st) != 0 || !S_ISSOCK(st.st_mode))
    return unsupported_error(what + ": this launch's fd " + std::to_string(from) + " is not a socket");
  pb::SockListener have;
  PW_ASSIGN(std::string why, passed_socket_record(from, st.st_ino, have));
  if (!why.empty()) return unsupported_error(what + ": this launch's fd " + std::to_string(from) + " is " + why);
  if (std::string diff = passed_socket_difference(f.listener(), have); !diff.empty())
    return unsupported_error(what + ": this launch's fd " + std::to_string(from) + " " + diff);
  // Its O_NONBLOCK is left alone here: it belongs to the open file description, which systemd
  // shares, so a restore refused later must not have changed it (restore.cpp sets it last).
  UniqueFd fd(::fcntl(from, F_DUPFD_CLOEXEC, 3));
  if (!fd.valid()) return errno_error("duplicate this launch's fd " + std::to_string(from));
  return fd;
}

// A file made read-write and filled, given the app's access mode (it may have reopened it read- or
// write-only through /proc), offset and flags.
// reopen: a file made with O_TMPFILE keeps __O_TMPFILE in its F_GETFL flags, which the app's
// description had not; a reopen through /proc gives a plain description of the same file.
Result<void> as_the_app_had_it(UniqueFd& fd, const pb::OpenFile& f, bool reopen = false) {
  const int acc = static_cast<int>(f.flags()) & O_ACCMODE;
  if (acc != O_RDWR || reopen) {
    UniqueFd other(::open(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), acc | O_CLOEXEC));
    if (!other.valid()) return errno_error("reopen " + fd_name(f));
    fd = std::move(other);
  }
  if (::lseek(fd.get(), static_cast<off_t>(f.pos()), SEEK_SET) < 0) return errno_error("seek " + fd_name(f));
  if (::fcntl(fd.get(), F_SETFL, static_cast<int>(f.flags()) & (O_APPEND | O_NONBLOCK)) != 0)
    return errno_error("set the flags of " + fd_name(f));
  return ok();
}

// A memfd with its bytes, mode, offset and seals (sealing last: F_SEAL_WRITE forbids the fill).
Result<UniqueFd> make_memfd(const pb::OpenFile& f) {
  const auto& m = f.memfd();
  if (xxh3_64(m.data().data(), m.data().size()) != m.data_xxh3())
    return data_error(fd_name(f) + ": the memfd's stored bytes do not match their checksum");
  if (m.name().size() > 249 || m.name().find('\0') != std::string::npos)
    return data_error(fd_name(f) + ": invalid memfd name");
  UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, m.name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd.valid()) return errno_error("memfd_create for " + fd_name(f));
  PW_TRY(write_whole(fd.get(), m.data(), fd_name(f)));
  if (::fchmod(fd.get(), static_cast<mode_t>(m.mode() & 07777)) != 0) return errno_error("chmod " + fd_name(f));
  PW_TRY(as_the_app_had_it(fd, f));
  if (m.seals() != 0 && ::fcntl(fd.get(), F_ADD_SEALS, static_cast<int>(m.seals())) != 0)
    return errno_error("seal " + fd_name(f));
  return fd;
}

// A shared anonymous mapping's file, as an app opens it through /proc/self/map_files (its name
// "/dev/zero (deleted)"), made the same way so it is the same kind of file; empty. Invalid if
// this process may not open map_files (CAP_SYS_ADMIN): the caller then makes an unnamed file.
UniqueFd shared_anon_file() {
  void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return UniqueFd();
  const auto at = reinterpret_cast<unsigned long>(m);
  char mf[80];
  std::snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", at, at + 4096);
  UniqueFd fd(::open(mf, O_RDWR | O_CLOEXEC));
  ::munmap(m, 4096);
  if (fd.valid() && ::ftruncate(fd.get(), 0) != 0) return UniqueFd();
  return fd;
}

// A deleted file: made at its old path and unlinked at once, so /proc/PID/fd names it as the app
// saw it ("PATH (deleted)"); if the name is taken now, an unnamed file (O_TMPFILE) in the same
// directory, on the same file system. Then its bytes, mode, access mode, offset and flags.
Result<UniqueFd> make_deleted(const pb::OpenFile& f) {
  const auto& d = f.deleted();
  if (xxh3_64(d.data().data(), d.data().size()) != d.data_xxh3())
    return data_error(fd_name(f) + ": the deleted file's stored bytes do not match their checksum");
  const std::string& path = d.path();
  const size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || path.find('\0') != std::string::npos)
    return data_error(fd_name(f) + ": invalid path of a deleted file");
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  bool tmpfile = false;
  UniqueFd fd = path == "/dev/zero" ? shared_anon_file() : UniqueFd();
  if (fd.valid()) {
    // The kernel's own "/dev/zero" shmem file, nothing to unlink.
  } else if (fd = UniqueFd(::open(path.c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0600)); fd.valid()) {
    // Unlinked only if the name is still this file (the directory may be shared).
    struct stat mine {}, there {};
    if (::fstat(fd.get(), &mine) != 0 || ::lstat(path.c_str(), &there) != 0 || mine.st_ino != there.st_ino ||
        mine.st_dev != there.st_dev || ::unlink(path.c_str()) != 0)
      return errno_error("unlink the remade deleted file " + fd_name(f));
  } else {
    fd = UniqueFd(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, static_cast<mode_t>(0600)));
    if (!fd.valid()) return errno_error("make the deleted file " + fd_name(f) + " again in " + dir);
    tmpfile = true;
  }
  if (d.sparse()) {
    // Each data extent at its offset, then the length: what lies between stays a hole.
    uint64_t used = 0;
    for (const auto& e : d.extents()) {
      if (e.length() > d.data().size() - used || e.offset() + e.length() > d.size() || e.offset() + e.length() < e.offset() ||
          d.size() > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
        return data_error(fd_name(f) + ": a data extent of the deleted file is out of range");
      PW_TRY(write_whole(fd.get(), std::string_view(d.data()).substr(used, e.length()), fd_name(f),
                         static_cast<off_t>(e.offset())));
      used += e.length();
    }
    if (used != d.data().size()) return data_error(fd_name(f) + ": the deleted file's extents do not cover its bytes");
    if (::ftruncate(fd.get(), static_cast<off_t>(d.size())) != 0) return errno_error("set the size of " + fd_name(f));
  } else {
    PW_TRY(write_whole(fd.get(), d.data(), fd_name(f)));
  }
  if (::fchmod(fd.get(), static_cast<mode_t>(d.mode() & 07777)) != 0) return errno_error("chmod " + fd_name(f));
  PW_TRY(as_the_app_had_it(fd, f, tmpfile));
  if (d.has_times()) {
    // Last: every write above moved the mtime.
    auto ts = [](int64_t ns) { return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)}; };
    const timespec times[2] = {ts(d.atime_ns()), ts(d.mtime_ns())};
    if (::futimens(fd.get(), times) != 0) return errno_error("set the times of " + fd_name(f));
  }
  return fd;
}

}  // namespace

std::string launch_sockets_difference(const pb::Snapshot& snap, const ListenEnv& launch) {
  const auto& want = snap.launch_sockets();
  auto count = [](uint32_t n) {
    return n == 0 ? std::string("none") : std::to_string(n) + (n == 1 ? " socket" : " sockets");
  };
  if (want.count() != launch.count)
    return "the snapshot's launch passed " + count(want.count()) + " (LISTEN_FDS), this launch passes " +
           count(launch.count);
  std::vector<std::string> names(want.names().begin(), want.names().end());
  auto joined = [](const std::vector<std::string>& v) {
    std::string all;
    for (const auto& n : v) all += (all.empty() ? "" : ":") + n;
    return v.empty() ? std::string("(none)") : "'" + all + "'";
  };
  if (names != launch.names)
    return "the snapshot's launch named its sockets " + joined(names) + " (LISTEN_FDNAMES), this launch " +
           joined(launch.names);
  return {};
}

std::string passed_socket_difference(const pb::SockListener& want, const pb::SockListener& have) {
  if (want.family() != have.family() || want.type() != have.type() || want.protocol() != have.protocol() ||
      want.listening() != have.listening() || want.address() != have.address())
    return "is: " + socket_kind_text(have) + "; the snapshot's: " + socket_kind_text(want);
  if (want.backlog() != have.backlog())
    return "has a backlog of " + std::to_string(have.backlog()) + ", the snapshot's " + std::to_string(want.backlog());
  for (const auto& o : want.options()) {
    const pb::SockOption* mine = nullptr;
    for (const auto& h : have.options())
      if (h.level() == o.level() && h.name() == o.name()) mine = &h;
    if (mine == nullptr || mine->value() != o.value())
      return "has socket option " + std::to_string(o.level()) + "/" + std::to_string(o.name()) + " set to " +
             (mine ? std::to_string(mine->value()) : std::string("its default")) + ", the snapshot's " +
             std::to_string(o.value()) + " (the app may have set it)";
  }
  return {};
}

Result<std::map<uint32_t, UniqueFd>> create_fd_objects(const pb::Snapshot& snap, const ListenEnv& launch,
                                                       std::vector<BoundSocketPath>& bound) {
  std::map<uint32_t, UniqueFd> out;
  int64_t inotify_budget = 1 << 16;  // two syscalls each: well under a second in all
  // The app may have parsed LISTEN_FDS already: what it holds are fd numbers, and those must
  // name sockets like its launch's, the same count, under the same names.
  if (std::string diff = launch_sockets_difference(snap, launch); !diff.empty()) return unsupported_error(diff);
  // Pipes and socketpairs: the records that carry each end (the ones with the bytes first).
  std::map<uint32_t, const pb::OpenFile*> pipe_read, pipe_write;
  std::map<uint32_t, const pb::OpenFile*> pair_end[2];
  for (const auto& f : snap.files()) {
    if (f.kind() == pb::FD_FILE) continue;
    if (f.description() == 0) return data_error(fd_name(f) + ": kernel object without a description");
    if (f.kind() == pb::FD_PIPE) {
      auto& slot = (f.pipe().write_end() ? pipe_write : pipe_read)[f.pipe().pipe_id()];
      if (slot == nullptr || (f.pipe().has_data() && !slot->pipe().has_data())) slot = &f;
    } else if (f.kind() == pb::FD_SOCKPAIR) {
      auto& slot = pair_end[f.sockpair().second()][f.sockpair().pair_id()];
      if (slot == nullptr || f.sockpair().queued_size() > 0) slot = &f;
    }
  }
  // Inotify instances first, their files checked before the restore makes any change of its own.
  for (const auto& f : snap.files()) {
    if (f.kind() != pb::FD_INOTIFY || out.count(f.description())) continue;
    if (f.description() == 0) return data_error(fd_name(f) + ": kernel object without a description");
    PW_ASSIGN(out[f.description()], make_inotify(f, inotify_budget));
  }
  for (const auto& f : snap.files()) {
    if (f.kind() == pb::FD_FILE || out.count(f.description())) continue;
    switch (f.kind()) {
      case pb::FD_EVENTFD: {
        PW_ASSIGN(out[f.description()], make_eventfd(f));
        break;
      }
      case pb::FD_TIMERFD: {
        PW_ASSIGN(out[f.description()], make_timerfd(f));
        break;
      }
      case pb::FD_SIGNALFD: {
        PW_ASSIGN(out[f.description()], make_signalfd(f));
        break;
      }
      case pb::FD_MEMFD: {
        PW_ASSIGN(out[f.description()], make_memfd(f));
        break;
      }
      case pb::FD_DELETED: {
        PW_ASSIGN(out[f.description()], make_deleted(f));
        break;
      }
      case pb::FD_LISTENER: {
        PW_ASSIGN(out[f.description()], make_listener(f, bound));
        break;
      }
      case pb::FD_PASSED: {
        PW_ASSIGN(out[f.description()], take_passed(f, launch));
        break;
      }
      case pb::FD_EPOLL: {
        UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
        if (!ep.valid()) return errno_error("epoll_create1 for " + fd_name(f));
        out[f.description()] = std::move(ep);
        break;
      }
      case pb::FD_PIPE: {
        const auto* r = pipe_read[f.pipe().pipe_id()];
        const auto* w = pipe_write[f.pipe().pipe_id()];
        if (r == nullptr || w == nullptr || !r->pipe().has_data())
          return data_error(fd_name(f) + ": the image lacks an end of its pipe");
        PW_TRY(make_pipe(*r, *w, out));
        break;
      }
      case pb::FD_SOCKPAIR: {
        const auto* a = pair_end[0][f.sockpair().pair_id()];
        const auto* b = pair_end[1][f.sockpair().pair_id()];
        if (a == nullptr || b == nullptr || a->sockpair().type() != b->sockpair().type())
          return data_error(fd_name(f) + ": the image lacks an end of its socketpair");
        PW_TRY(make_sockpair(*a, *b, out));
        break;
      }
      default:
        return data_error(fd_name(f) + ": unknown kind of fd in the image");
    }
    if (!out.count(f.description())) return data_error(fd_name(f) + ": inconsistent descriptions in the image");
  }
  return out;
}

Result<void> arm_inotify(const pb::Snapshot& snap, const std::function<int(int)>& launcher_fd,
                         const std::vector<BoundSocketPath>& bound) {
  // Directories the restore made entries in: a ghost file's (made, then unlinked) and each unix
  // listener's (its socket file made again).
  std::set<std::pair<uint64_t, uint64_t>> touched;
  auto touch_dir_of = [&](const std::string& path) {
    const size_t slash = path.rfind('/');
    struct stat st {};
    if (slash != std::string::npos && ::stat(slash == 0 ? "/" : path.substr(0, slash).c_str(), &st) == 0)
      touched.insert({st.st_dev, st.st_ino});
  };
  for (const auto& f : snap.files())
    if (f.kind() == pb::FD_DELETED) touch_dir_of(f.deleted().path());
  for (const auto& b : bound) touch_dir_of(b.path());
  std::set<uint32_t> done;
  for (const auto& f : snap.files()) {
    if (f.kind() != pb::FD_INOTIFY || !done.insert(f.description()).second) continue;
    const int fd = launcher_fd(f.fd());
    if (fd < 0) return data_error(fd_name(f) + ": not among the launcher's fds");
    for (const auto& w : f.inotify().watches()) {
      const std::string what = watch_name(f, w);
      if (::inotify_add_watch(fd, w.path().c_str(), w.mask() | IN_DONT_FOLLOW) != w.wd())
        return unsupported_error(what + " could not be given its mask (its file was replaced?)");
      // Checked again now that it hears: a change between the first check and here made no event.
      PW_TRY(check_watched(what, w, touched.count({w.file().dev(), w.file().inode()}) != 0));
    }
    // The kernel's own account of the instance, against the image's.
    PW_ASSIGN(std::string info, read_file("/proc/self/fdinfo/" + std::to_string(fd)));
    PW_ASSIGN(auto marks, parse_inotify_fdinfo(info));
    const auto& watches = f.inotify().watches();
    bool same = marks.size() == static_cast<size_t>(watches.size());
    for (size_t i = 0; same && i < marks.size(); ++i) {
      const auto& w = watches[static_cast<int>(i)];
      same = marks[i].wd == w.wd() && marks[i].ino == w.file().inode() && marks[i].mask == w.mask();
    }
    if (!same) return unsupported_error(fd_name(f) + ": the restored inotify watches differ from the snapshot's");
  }
  return ok();
}

Result<std::vector<PwEpollAdd>> epoll_registrations(const pb::Snapshot& snap,
                                                    const std::function<int(int)>& launcher_fd) {
  std::vector<PwEpollAdd> out;
  UniqueFd scratch;
  for (const auto& f : snap.files()) {
    if (f.kind() != pb::FD_EPOLL) continue;
    for (const auto& t : f.epoll().targets()) {
      const int from = launcher_fd(t.fd());
      if (from < 0) return data_error(fd_name(f) + ": epoll target fd " + std::to_string(t.fd()) + " is not in the image");
      if (!scratch.valid()) scratch.reset(::epoll_create1(EPOLL_CLOEXEC));
      if (!scratch.valid()) return errno_error("epoll_create1");
      epoll_event ev{};
      ev.events = t.events();
      ev.data.u64 = t.data();
      // Tried here so the blob's epoll_ctl cannot fail; the scratch registration goes with it.
      if (::epoll_ctl(scratch.get(), EPOLL_CTL_ADD, from, &ev) != 0)
        return errno_error(fd_name(f) + ": register target fd " + std::to_string(t.fd()));
      if (::epoll_ctl(scratch.get(), EPOLL_CTL_DEL, from, nullptr) != 0) return errno_error("epoll_ctl");
      out.push_back({f.fd(), t.fd(), t.events(), 0, t.data()});
    }
  }
  return out;
}

}  // namespace prewarm
