// Kernel-object fds of a frozen process. fdinfo gives eventfd, timerfd, signalfd, epoll and
// inotify state (snapshot/inotify resolves the watches);
// pidfd_getfd gives us the app's very open file, so pipe bytes are copied with tee(2) and socket
// queues read with MSG_PEEK, both of which leave the app's data where it was.
#include "snapshot/fd_objects.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/inet_diag.h>
#include <linux/kcmp.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>

#include "snapshot/image.h"
#include "snapshot/inotify.h"
#include "snapshot/sock_diag.h"
#include "snapshot/tcp_use.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr size_t kMaxQueuedBytes = 16u << 20;  // per socket: more is not a socketpair at rest
constexpr size_t kMaxMessages = 65536;

// The value after "key" on its line of an fdinfo text ("" when absent).
std::string field(const std::string& text, const std::string& key) {
  size_t at = 0;
  while ((at = text.find(key, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      size_t from = at + key.size();
      size_t end = text.find('\n', from);
      std::string v = text.substr(from, end == std::string::npos ? std::string::npos : end - from);
      size_t b = v.find_first_not_of(" \t");
      return b == std::string::npos ? std::string() : v.substr(b);
    }
    at += key.size();
  }
  return {};
}

bool parse_u64(const std::string& s, int base, uint64_t& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoull(s.c_str(), &end, base);
  return errno == 0 && end != s.c_str();
}

long kcmp(pid_t pid, int type, unsigned long a, unsigned long b) {
  return ::syscall(SYS_kcmp, pid, pid, type, a, b);
}

Result<UniqueFd> get_fd(int pidfd, int fd) {
  int got = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0));
  if (got < 0) return errno_error("pidfd_getfd of fd " + std::to_string(fd));
  return UniqueFd(got);
}

// A deleted file's data extents (SEEK_DATA/SEEK_HOLE) and their bytes; the holes between them
// are not stored and come back as holes. A file system without SEEK_DATA reports one extent.
Result<std::string> data_extents(int file, const struct stat& st, pb::FdDeleted& d, std::string& why) {
  constexpr size_t kMaxExtents = 65536;
  std::string data;
  d.set_sparse(true);
  d.set_size(static_cast<uint64_t>(st.st_size));
  off_t at = 0;
  while (at < st.st_size) {
    off_t start = ::lseek(file, at, SEEK_DATA);
    if (start < 0 && errno == ENXIO) break;  // only a hole is left
    if (start < 0) return errno_error("SEEK_DATA in a deleted file");
    off_t end = ::lseek(file, start, SEEK_HOLE);
    if (end < 0) return errno_error("SEEK_HOLE in a deleted file");
    end = std::min(end, st.st_size);
    if (end <= start) break;
    const size_t len = static_cast<size_t>(end - start);
    if (data.size() + len > kMaxQueuedBytes) {
      why = "deleted file with more than 16 MiB of data is not carried";
      return data;
    }
    if (d.extents_size() >= static_cast<int>(kMaxExtents)) {
      why = "deleted file with more than 65536 data extents is not carried";
      return data;
    }
    auto* e = d.add_extents();
    e->set_offset(static_cast<uint64_t>(start));
    e->set_length(len);
    const size_t was = data.size();
    data.resize(was + len);
    PW_TRY(pread_all(file, data.data() + was, len, start));
    at = end;
  }
  return data;
}

// Inode from "pipe:[N]" / "socket:[N]".
uint64_t bracket_inode(const std::string& target) {
  size_t b = target.find('[');
  uint64_t v = 0;
  if (b == std::string::npos || !parse_u64(target.substr(b + 1), 10, v)) return 0;
  return v;
}

struct UnixDiag {
  uint8_t state = 0;
  uint32_t peer = 0;
  uint8_t shutdown = 0;
  bool has_name = false;
  bool abstract_name = false;
  std::string path;                 // a name bound in the file system ("" if abstract or none)
  bool has_vfs = false;             // the socket file's inode, as bound (UNIX_DIAG_VFS)
  uint32_t vfs_ino = 0, vfs_dev = 0;  // vfs_dev: the kernel's encoding, major << 20 | minor
  uint32_t rqueue = 0, wqueue = 0;  // listening: pending connections and the backlog
};

// One AF_UNIX socket by inode, through NETLINK_SOCK_DIAG (the kernel's only way to name a peer).
Result<UnixDiag> unix_diag(uint64_t inode) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_ino = static_cast<uint32_t>(inode);
  req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS;
  req.udiag_cookie[0] = req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE
  PW_ASSIGN(UniqueFd nl, sock_diag_send(req));
  alignas(nlmsghdr) char buf[8192];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) return errno_error("sock_diag reply");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<unsigned>(n))) return data_error("sock_diag: short reply");
  if (h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
    return make_error(-e->error, "sock_diag of socket:[" + std::to_string(inode) + "]");
  }
  auto* d = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
  UnixDiag out;
  out.state = d->udiag_state;
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *d));
  for (auto* a = reinterpret_cast<nlattr*>(d + 1); len >= static_cast<int>(sizeof(nlattr)) &&
                                                   a->nla_len >= sizeof(nlattr) && a->nla_len <= len;
       len -= NLA_ALIGN(a->nla_len), a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len))) {
    const char* payload = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
    switch (a->nla_type) {
      case UNIX_DIAG_PEER: std::memcpy(&out.peer, payload, 4); break;
      case UNIX_DIAG_SHUTDOWN: std::memcpy(&out.shutdown, payload, 1); break;
      case UNIX_DIAG_NAME:
        out.has_name = a->nla_len > NLA_HDRLEN;
        out.abstract_name = out.has_name && payload[0] == '\0';
        if (out.has_name && !out.abstract_name)
          out.path.assign(payload, strnlen(payload, static_cast<size_t>(a->nla_len - NLA_HDRLEN)));
        break;
      case UNIX_DIAG_VFS:
        if (a->nla_len >= NLA_HDRLEN + sizeof(unix_diag_vfs)) {
          unix_diag_vfs v{};
          std::memcpy(&v, payload, sizeof v);
          out.has_vfs = true, out.vfs_ino = v.udiag_vfs_ino, out.vfs_dev = v.udiag_vfs_dev;
        }
        break;
      case UNIX_DIAG_RQLEN: {
        unix_diag_rqlen q{};
        std::memcpy(&q, payload, sizeof q);
        out.rqueue = q.udiag_rqueue;
        out.wqueue = q.udiag_wqueue;
        break;
      }
      default: break;
    }
  }
  return out;
}

// A TCP or UDP socket's queue lengths by inode (for a listener: pending connections and the
// backlog), from an inet_diag dump of its family and protocol.
Result<std::pair<uint32_t, uint32_t>> inet_queues(int family, int protocol, uint64_t inode) {
  inet_diag_req_v2 req{};
  req.sdiag_family = static_cast<uint8_t>(family);
  req.sdiag_protocol = static_cast<uint8_t>(protocol);
  req.idiag_states = ~0u;
  PW_ASSIGN(UniqueFd nl, sock_diag_send(req, NLM_F_DUMP));
  alignas(nlmsghdr) static thread_local char buf[32768];
  for (;;) {
    ssize_t got = ::recv(nl.get(), buf, sizeof buf, 0);
    if (got < 0) return errno_error("inet_diag reply");
    // NLMSG_OK/NLMSG_NEXT by hand: the macros mix signed and unsigned lengths.
    size_t left = static_cast<size_t>(got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); left >= sizeof(nlmsghdr) && h->nlmsg_len >= sizeof(nlmsghdr) &&
                                                     h->nlmsg_len <= left;
         left -= std::min<size_t>(left, NLMSG_ALIGN(h->nlmsg_len)),
              h = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(h) + NLMSG_ALIGN(h->nlmsg_len))) {
      if (h->nlmsg_type == NLMSG_DONE) return data_error("socket:[" + std::to_string(inode) + "] not found by inet_diag");
      if (h->nlmsg_type == NLMSG_ERROR) return make_error(-static_cast<nlmsgerr*>(NLMSG_DATA(h))->error, "inet_diag");
      auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (d->idiag_inode == inode) return std::make_pair(d->idiag_rqueue, d->idiag_wqueue);
    }
  }
}

// Options a recreated socket is given, read as ints; `only` limits one to a family.
struct OptionName {
  int level, name;
  int only;  // 0: every family the level applies to, else AF_INET6 or AF_UNIX
  const char* text;
};
constexpr OptionName kListenerOptions[] = {
    {SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR"}, {SOL_SOCKET, SO_REUSEPORT, 0, "SO_REUSEPORT"},
    {SOL_SOCKET, SO_KEEPALIVE, 0, "SO_KEEPALIVE"}, {SOL_SOCKET, SO_BROADCAST, 0, "SO_BROADCAST"},
    {SOL_SOCKET, SO_SNDBUF, 0, "SO_SNDBUF"},       {SOL_SOCKET, SO_RCVBUF, 0, "SO_RCVBUF"},
    {SOL_SOCKET, SO_PASSCRED, AF_UNIX, "SO_PASSCRED"}, {SOL_SOCKET, SO_PRIORITY, 0, "SO_PRIORITY"},
    {SOL_SOCKET, SO_RCVLOWAT, 0, "SO_RCVLOWAT"},   {SOL_SOCKET, SO_OOBINLINE, 0, "SO_OOBINLINE"},
    {SOL_SOCKET, SO_DONTROUTE, 0, "SO_DONTROUTE"}, {SOL_SOCKET, SO_TIMESTAMP, 0, "SO_TIMESTAMP"},
    {SOL_SOCKET, SO_TIMESTAMPNS, 0, "SO_TIMESTAMPNS"}, {SOL_SOCKET, SO_PASSSEC, AF_UNIX, "SO_PASSSEC"},
    {SOL_SOCKET, SO_BUF_LOCK, 0, "SO_BUF_LOCK"},
    {IPPROTO_IPV6, IPV6_V6ONLY, AF_INET6, "IPV6_V6ONLY"}, {IPPROTO_IPV6, IPV6_UNICAST_HOPS, AF_INET6, "IPV6_UNICAST_HOPS"},
    {IPPROTO_IPV6, IPV6_TCLASS, AF_INET6, "IPV6_TCLASS"},
    {IPPROTO_IP, IP_TOS, 0, "IP_TOS"},             {IPPROTO_IP, IP_TTL, 0, "IP_TTL"},
    {IPPROTO_IP, IP_RECVERR, 0, "IP_RECVERR"},     {IPPROTO_IP, IP_MTU_DISCOVER, 0, "IP_MTU_DISCOVER"},
    {IPPROTO_TCP, TCP_NODELAY, 0, "TCP_NODELAY"},   {IPPROTO_TCP, TCP_DEFER_ACCEPT, 0, "TCP_DEFER_ACCEPT"},
    {IPPROTO_TCP, TCP_KEEPIDLE, 0, "TCP_KEEPIDLE"}, {IPPROTO_TCP, TCP_KEEPINTVL, 0, "TCP_KEEPINTVL"},
    {IPPROTO_TCP, TCP_KEEPCNT, 0, "TCP_KEEPCNT"},   {IPPROTO_TCP, TCP_FASTOPEN, 0, "TCP_FASTOPEN"},
    {IPPROTO_TCP, TCP_CORK, 0, "TCP_CORK"},         {IPPROTO_TCP, TCP_MAXSEG, 0, "TCP_MAXSEG"},
    {IPPROTO_TCP, TCP_SYNCNT, 0, "TCP_SYNCNT"},     {IPPROTO_TCP, TCP_LINGER2, 0, "TCP_LINGER2"},
    {IPPROTO_TCP, TCP_WINDOW_CLAMP, 0, "TCP_WINDOW_CLAMP"}, {IPPROTO_TCP, TCP_USER_TIMEOUT, 0, "TCP_USER_TIMEOUT"},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, 0, "TCP_NOTSENT_LOWAT"},
    // Before bind: an address not on this host binds only with it (SOL_IP on AF_INET6 too).
    {IPPROTO_IP, IP_FREEBIND, 0, "IP_FREEBIND"},
};
// Options that are not ints or need privileges to set: one that differs from a new socket's
// refuses the socket, named (zdtm's socket-linger, sock_opts01 lost them silently).
constexpr OptionName kCheckedOptions[] = {
    {SOL_SOCKET, SO_LINGER, 0, "SO_LINGER"},         {SOL_SOCKET, SO_RCVTIMEO, 0, "SO_RCVTIMEO"},
    {SOL_SOCKET, SO_SNDTIMEO, 0, "SO_SNDTIMEO"},     {SOL_SOCKET, SO_BINDTODEVICE, 0, "SO_BINDTODEVICE"},
    {SOL_SOCKET, SO_MARK, 0, "SO_MARK"},             {SOL_SOCKET, SO_ATTACH_FILTER, 0, "SO_ATTACH_FILTER (a socket filter)"},
    {IPPROTO_IP, IP_OPTIONS, 0, "IP_OPTIONS"},       {IPPROTO_TCP, TCP_CONGESTION, 0, "TCP_CONGESTION"},
    {IPPROTO_TCP, TCP_ULP, 0, "TCP_ULP"},
};

bool applies(const OptionName& o, int domain, bool tcp) {
  const bool inet = domain == AF_INET || domain == AF_INET6;
  if (o.only != 0 && o.only != domain) return false;
  if (o.level == IPPROTO_TCP) return tcp;
  return o.level == SOL_SOCKET || inet;
}

// getsockopt's bytes ("" if the kernel has no such option for the socket). For SO_ATTACH_FILTER
// (SO_GET_FILTER) a zero-length read gives the filter's instruction count as the length.
std::string option_bytes(int sock, const OptionName& o) {
  if (o.level == SOL_SOCKET && o.name == SO_ATTACH_FILTER) {
    socklen_t n = 0;
    if (::getsockopt(sock, o.level, o.name, nullptr, &n) != 0) return "";
    return std::to_string(n);
  }
  char buf[64] = {};
  socklen_t l = sizeof buf;
  if (::getsockopt(sock, o.level, o.name, buf, &l) != 0) return "";
  return std::string(buf, l);
}

// A socket of out's kind as socket(2) makes it: the defaults options are compared with.
Result<UniqueFd> new_socket_like(const pb::SockListener& out) {
  UniqueFd fresh(::socket(out.family(), out.type() | SOCK_CLOEXEC, out.protocol()));
  if (!fresh.valid()) return errno_error("a new socket to compare options with");
  return fresh;
}

// The options of kListenerOptions that apply to a socket of `domain` (TCP ones only for TCP) and
// differ from a new socket's of its kind.
Result<void> read_socket_options(int sock, int domain, bool tcp, pb::SockListener& out) {
  PW_ASSIGN(UniqueFd fresh, new_socket_like(out));
  for (const auto& o : kListenerOptions) {
    if (!applies(o, domain, tcp)) continue;
    int v = 0, d = 0;
    socklen_t l = sizeof v, dl = sizeof d;
    if (::getsockopt(sock, o.level, o.name, &v, &l) != 0) {
      if (errno == ENOPROTOOPT || errno == EOPNOTSUPP) continue;  // not on this kernel: never set either
      return errno_error(std::string("getsockopt ") + o.text);
    }
    if (::getsockopt(fresh.get(), o.level, o.name, &d, &dl) == 0 && v == d) continue;  // its default
    auto* opt = out.add_options();
    opt->set_level(o.level);
    opt->set_name(o.name);
    opt->set_value(v);
  }
  return ok();
}

// "" or why the socket is not carried: an option of kCheckedOptions that differs from a new socket's.
Result<std::string> uncarried_option(int sock, int domain, bool tcp, const pb::SockListener& out) {
  PW_ASSIGN(UniqueFd fresh, new_socket_like(out));
  for (const auto& o : kCheckedOptions)
    if (applies(o, domain, tcp) && option_bytes(sock, o) != option_bytes(fresh.get(), o))
      return std::string("socket option ") + o.text + " is not carried";
  return std::string();
}

}  // namespace

// Connections waiting to be accepted are the socket's, not the app's: the next launch's socket
// has its own, so they are no reason to refuse.
Result<std::string> passed_socket_record(int sock, uint64_t inode, pb::SockListener& out) {
  int domain = 0, type = 0, protocol = 0, listening = 0;
  socklen_t l = sizeof domain;
  if (::getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0) return errno_error("SO_DOMAIN");
  l = sizeof type;
  if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &l) != 0) return errno_error("SO_TYPE");
  l = sizeof protocol;
  if (::getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &protocol, &l) != 0) return errno_error("SO_PROTOCOL");
  l = sizeof listening;
  if (::getsockopt(sock, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0) return errno_error("SO_ACCEPTCONN");
  sockaddr_storage addr{}, peer{};
  socklen_t alen = sizeof addr, plen = sizeof peer;
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) return errno_error("getsockname");
  // systemd's Accept=yes passes one connection: the next launch's is another peer's.
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&peer), &plen) == 0)
    return std::string("a connected socket (Accept=yes) is another connection at each launch");
  const bool inet = domain == AF_INET || domain == AF_INET6;
  const bool tcp = inet && type == SOCK_STREAM && protocol == IPPROTO_TCP;
  uint32_t backlog = 0;
  if (listening && tcp) {
    auto q = inet_queues(domain, protocol, inode);
    if (!q) return "its backlog cannot be read (" + q.error().describe() + ")";
    backlog = q->second;
  } else if (listening && domain == AF_UNIX) {
    auto d = unix_diag(inode);
    if (!d) return "its backlog cannot be read (" + d.error().describe() + ")";
    backlog = d->wqueue;
  }
  out.set_family(domain);
  out.set_type(type);
  out.set_protocol(protocol);
  out.set_address(std::string(reinterpret_cast<const char*>(&addr), alen));
  out.set_listening(listening != 0);
  out.set_backlog(static_cast<int32_t>(backlog));
  // Options systemd set are the launch's: recorded, to compare with the next launch's socket.
  PW_TRY(read_socket_options(sock, domain, tcp, out));
  return std::string();
}

namespace {

// A listening or bound socket recreated at its address (or, for an unconnected unix socket that is
// not bound, a fresh one of its type): "" and `out` filled, or why not.
Result<std::string> listener_record(pid_t pid, int sock, int domain, int type, uint64_t inode, pb::SockListener& out) {
  int protocol = 0, listening = 0;
  socklen_t l = sizeof protocol;
  if (::getsockopt(sock, SOL_SOCKET, SO_PROTOCOL, &protocol, &l) != 0) return errno_error("SO_PROTOCOL");
  l = sizeof listening;
  if (::getsockopt(sock, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0) return errno_error("SO_ACCEPTCONN");
  sockaddr_storage addr{};
  socklen_t alen = sizeof addr;
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) return errno_error("getsockname");
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  const bool connected = ::getpeername(sock, reinterpret_cast<sockaddr*>(&peer), &plen) == 0;
  const bool inet = domain == AF_INET || domain == AF_INET6;
  const bool tcp = inet && type == SOCK_STREAM && protocol == IPPROTO_TCP;
  const bool udp = inet && type == SOCK_DGRAM && protocol == IPPROTO_UDP;
  uint32_t pending = 0, backlog = 0;
  if (domain == AF_UNIX) {
    auto d = unix_diag(inode);
    if (!d) return d.error();
    // Not listening: only one that was never connected (a stream socket whose peer closed keeps
    // the peer's inode, or its shutdown bits) and has nothing queued either way.
    if (!listening && (d->peer != 0 || connected || d->shutdown != 0 || (type != SOCK_DGRAM && d->state != TCP_CLOSE)))
      return std::string("unix socket that is neither a socketpair end, listening, nor unconnected");
    if (!listening && (d->rqueue != 0 || d->wqueue != 0)) return std::string("unconnected unix socket with messages queued");
    if (d->has_name && !d->abstract_name) {
      // Bound again at restore, so the name must still be this socket's file. A relative name is
      // taken to be relative to the process's cwd, as it was when bound if it names the socket
      // there: the restore binds it from that directory, so getsockname reads the same.
      if (d->path.empty()) return std::string("unix socket with an empty name");
      std::string where = d->path;
      if (d->path[0] != '/') {
        char cwd[PATH_MAX];
        const ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/cwd").c_str(), cwd, sizeof cwd - 1);
        if (n <= 0 || cwd[0] != '/') return std::string("unix socket bound to a relative path, and the cwd is unknown");
        out.set_path_dir(std::string(cwd, static_cast<size_t>(n)));
        where = "/proc/" + std::to_string(pid) + "/cwd/" + d->path;
      }
      struct stat st {};
      if (::lstat(where.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || !d->has_vfs || st.st_ino != d->vfs_ino ||
          major(st.st_dev) != (d->vfs_dev >> 20) || minor(st.st_dev) != (d->vfs_dev & 0xfffff))
        return "unix socket bound to " + d->path + (d->path[0] == '/' ? "" : " (from its cwd)") +
               ", which no longer names it (unlinked, replaced, or bound from another directory)";
      out.set_path_mode(st.st_mode & 07777);
    }
    if (listening) pending = d->rqueue, backlog = d->wqueue;
  } else if (tcp || udp) {
    if (connected) return std::string(tcp ? "connected TCP socket (its peer is outside the process)" : "connected UDP socket");
    // Not bound (port 0): made again unbound; a UDP socket binds at its first send, so it has
    // nothing queued.
    if (tcp && !listening) {
      // Carried only as it was made: never connected (no segment either way, which a disconnect
      // resets too), nothing pending; then a new socket, bound as it was, is the same.
      // (SO_ERROR is not asked: reading it clears the app's, and only a segment can set one.)
      PW_ASSIGN(const TcpUse use, tcp_use(sock));
      if (use.state != TCP_CLOSE) return std::string("TCP socket that is connecting");
      if (use.segs_out != 0 || use.segs_in != 0)
        return std::string("TCP socket whose connection has ended (a new one would not read its end of file or error)");
    }
    if (tcp && listening) {
      auto q = inet_queues(domain, protocol, inode);
      if (!q) return "listening socket whose backlog cannot be read (" + q.error().describe() + ")";
      pending = q->first;
      backlog = q->second;
    } else {
      int queued = 0;
      if (::ioctl(sock, SIOCINQ, &queued) != 0) return errno_error("SIOCINQ");
      pending = static_cast<uint32_t>(queued);
    }
  } else {
    return std::string(inet ? "network socket of another protocol (" + std::to_string(protocol) + ") is not carried"
                            : "socket of family " + std::to_string(domain) + " is not carried");
  }
  if (pending != 0)
    return std::string(listening ? "listening socket with connections waiting to be accepted"
                                 : "UDP socket with datagrams queued");
  out.set_family(domain);
  out.set_type(type);
  out.set_protocol(protocol);
  out.set_address(std::string(reinterpret_cast<const char*>(&addr), alen));
  out.set_listening(listening != 0);
  out.set_backlog(static_cast<int32_t>(backlog));
  PW_TRY(read_socket_options(sock, domain, tcp, out));
  return uncarried_option(sock, domain, tcp, out);
}

// The messages queued for reading on `sock`, peeked in order. A stream's bytes come as one
// message. SO_PEEK_OFF moves the peek past what was already seen and is put back afterwards.
// "" in `why` when fine; else why the queue cannot be carried.
Result<std::vector<std::string>> peek_queue(int sock, int type, int peek_off, std::string& why) {
  std::vector<std::string> out;
  int zero = 0;
  if (::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) != 0) return errno_error("SO_PEEK_OFF");
  struct Restore {
    int sock, off;
    ~Restore() { (void)::setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off); }
  } restore{sock, peek_off};
  std::string stream;
  std::vector<char> buf(256 * 1024);
  size_t total = 0;
  for (size_t i = 0; i < kMaxMessages; ++i) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
    iovec iov{buf.data(), buf.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return errno_error("peek at a socket queue");
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < count; ++k) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          ::close(fd);
        }
        why = "a queued message carries file descriptors (SCM_RIGHTS)";
        return out;
      }
    }
    if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      why = "a queued message is larger than 256 KiB";
      return out;
    }
    total += static_cast<size_t>(n);
    if (total > kMaxQueuedBytes) {
      why = "more than 16 MiB queued";
      return out;
    }
    if (type == SOCK_STREAM) {
      if (n == 0) break;
      stream.append(buf.data(), static_cast<size_t>(n));
    } else {
      out.emplace_back(buf.data(), static_cast<size_t>(n));
    }
    if (i + 1 == kMaxMessages) why = "too many queued messages";
  }
  if (type == SOCK_STREAM && !stream.empty()) out.push_back(std::move(stream));
  if (type == SOCK_STREAM) {
    int inq = 0;
    if (::ioctl(sock, SIOCINQ, &inq) == 0 && static_cast<size_t>(inq) != total)
      why = "its queue could not be read whole (" + std::to_string(total) + " of " + std::to_string(inq) + " bytes)";
  }
  return out;
}

}  // namespace

uint64_t sock_queue_hash(const google::protobuf::RepeatedPtrField<pb::SockMessage>& q) {
  std::string all;
  for (const auto& m : q) all += std::to_string(m.data().size()) + ":" + m.data();
  return xxh3_64(all.data(), all.size());
}

ListenEnv parse_listen_env(const std::vector<std::string>& env, pid_t pid) {
  const std::string* lpid = nullptr;
  const std::string* lfds = nullptr;
  const std::string* lnames = nullptr;
  for (const auto& e : env) {
    if (e.starts_with("LISTEN_PID=")) lpid = &e;
    if (e.starts_with("LISTEN_FDS=")) lfds = &e;
    if (e.starts_with("LISTEN_FDNAMES=")) lnames = &e;
  }
  ListenEnv out;
  uint64_t p = 0, n = 0;
  auto number = [](const std::string& v, uint64_t& x) {
    return !v.empty() && v.find_first_not_of("0123456789") == std::string::npos && parse_u64(v, 10, x);
  };
  if (lpid == nullptr || lfds == nullptr || !number(lpid->substr(11), p) || !number(lfds->substr(11), n) ||
      p != static_cast<uint64_t>(pid) || n == 0 || n > kMaxListenFds)
    return out;
  out.count = static_cast<uint32_t>(n);
  if (lnames != nullptr) {
    std::string all = lnames->substr(15);
    for (size_t from = 0;;) {
      size_t colon = all.find(':', from);
      out.names.push_back(all.substr(from, colon == std::string::npos ? std::string::npos : colon - from));
      if (colon == std::string::npos) break;
      from = colon + 1;
    }
  }
  return out;
}

Result<ListenEnv> read_listen_env(pid_t pid) {
  PW_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/environ"));
  std::vector<std::string> env;
  for (size_t from = 0; from < text.size();) {
    size_t nul = text.find('\0', from);
    if (nul == std::string::npos) nul = text.size();
    env.push_back(text.substr(from, nul - from));
    from = nul + 1;
  }
  return parse_listen_env(env, pid);
}

Result<pb::FdEventfd> parse_eventfd_fdinfo(const std::string& text) {
  pb::FdEventfd e;
  uint64_t count = 0, sem = 0;
  if (!parse_u64(field(text, "eventfd-count:"), 16, count)) return data_error("fdinfo: no eventfd-count");
  // Kernels before 6.4 do not say whether the eventfd counts as a semaphore.
  if (!parse_u64(field(text, "eventfd-semaphore:"), 10, sem))
    return data_error("this kernel's fdinfo does not say whether the eventfd is EFD_SEMAPHORE");
  e.set_count(count);
  e.set_semaphore(sem != 0);
  return e;
}

Result<pb::FdTimerfd> parse_timerfd_fdinfo(const std::string& text) {
  pb::FdTimerfd t;
  uint64_t clock = 0, ticks = 0, flags = 0;
  if (!parse_u64(field(text, "clockid:"), 10, clock) || !parse_u64(field(text, "ticks:"), 10, ticks) ||
      !parse_u64(field(text, "settime flags:"), 8, flags))
    return data_error("fdinfo: no timerfd clockid/ticks/settime flags");
  unsigned long long vs = 0, vn = 0, is = 0, in = 0;
  if (std::sscanf(field(text, "it_value:").c_str(), "(%llu, %llu)", &vs, &vn) != 2 ||
      std::sscanf(field(text, "it_interval:").c_str(), "(%llu, %llu)", &is, &in) != 2)
    return data_error("fdinfo: no timerfd it_value/it_interval");
  t.set_clockid(static_cast<int32_t>(clock));
  t.set_ticks(ticks);
  t.set_settime_flags(static_cast<uint32_t>(flags));
  t.set_value_sec(vs);
  t.set_value_nsec(vn);
  t.set_interval_sec(is);
  t.set_interval_nsec(in);
  return t;
}

Result<pb::FdSignalfd> parse_signalfd_fdinfo(const std::string& text) {
  pb::FdSignalfd s;
  uint64_t mask = 0;
  if (!parse_u64(field(text, "sigmask:"), 16, mask)) return data_error("fdinfo: no signalfd sigmask");
  s.set_mask(mask);
  return s;
}

Result<pb::FdEpoll> parse_epoll_fdinfo(const std::string& text) {
  pb::FdEpoll e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("tfd:", 0) != 0) continue;
    int tfd = -1;
    unsigned events = 0;
    unsigned long long data = 0;
    if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3 || tfd < 0)
      return data_error("fdinfo: cannot parse epoll line: " + line);
    auto* t = e.add_targets();
    t->set_fd(tfd);
    t->set_events(events);
    t->set_data(data);
  }
  return e;
}

Result<FdObjectScan> collect_fd_objects(pid_t pid, const std::vector<FdObjectCandidate>& candidates,
                                        const std::vector<FdInfo>& all) {
  FdObjectScan out;
  if (candidates.empty()) return out;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) return errno_error("pidfd_open " + std::to_string(pid));
  const std::string base = "/proc/" + std::to_string(pid) + "/fdinfo/";
  auto refuse = [&](int fd, std::string why) { out.refused.emplace_back(fd, std::move(why)); };
  struct stat owner {};  // /proc/PID belongs to the process's euid and egid
  if (::stat(("/proc/" + std::to_string(pid)).c_str(), &owner) != 0) return errno_error("stat /proc/" + std::to_string(pid));

  // Open file descriptions: fds that are dups of one another share one (kcmp), created once.
  std::vector<uint32_t> desc(candidates.size(), 0);
  uint32_t next_desc = 1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    for (size_t j = 0; j < i && desc[i] == 0; ++j) {
      if (candidates[j].kind != candidates[i].kind || candidates[j].fd->target != candidates[i].fd->target) continue;
      long r = kcmp(pid, KCMP_FILE, static_cast<unsigned long>(candidates[i].fd->fd),
                    static_cast<unsigned long>(candidates[j].fd->fd));
      if (r < 0) return errno_error("kcmp of fds " + std::to_string(candidates[i].fd->fd));
      if (r == 0) desc[i] = desc[j];
    }
    if (desc[i] == 0) desc[i] = next_desc++;
  }

  // Pipes and sockets by inode: which candidates hold which end.
  std::map<uint64_t, size_t> pipe_of;                 // inode -> pipe id
  std::map<uint64_t, std::pair<uint32_t, bool>> sock_of;  // inode -> (pair id, second)
  std::map<uint64_t, std::vector<int>> pipe_ends[2];
  for (size_t i = 0; i < candidates.size(); ++i)
    if (candidates[i].kind == pb::FD_PIPE) {
      const uint32_t acc = candidates[i].fd->flags & O_ACCMODE;
      if (acc == O_RDONLY || acc == O_WRONLY)
        pipe_ends[acc == O_WRONLY][bracket_inode(candidates[i].fd->target)].push_back(static_cast<int>(i));
    }

  std::map<int, const FdInfo*> by_number;
  for (const auto& f : all) by_number[f.fd] = &f;
  uint32_t next_pair = 1;

  // Inotify instances first: reading the others (a deleted file's bytes) could queue events in them.
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_partition(order.begin(), order.end(), [&](size_t i) { return candidates[i].kind == pb::FD_INOTIFY; });
  for (const size_t i : order) {
    const FdInfo& fd = *candidates[i].fd;
    pb::OpenFile r;
    r.set_fd(fd.fd);
    r.set_path(fd.target);
    r.set_flags(fd.flags & ~static_cast<uint32_t>(O_CLOEXEC));
    r.set_cloexec(fd.flags & O_CLOEXEC);
    r.set_kind(candidates[i].kind);
    r.set_description(desc[i]);
    if (fd.flags & O_ASYNC) {
      refuse(fd.fd, "signal-driven I/O (O_ASYNC) is not carried");
      continue;
    }
    if (candidates[i].kind == pb::FD_TIMERFD) {
      // An expired periodic timer counts its missed periods only when asked: fdinfo then says
      // 1 tick and no time left. timerfd_gettime does the kernel's own catch-up (what the app's
      // next read would also do), so fdinfo gives the true ticks and the next expiration.
      PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
      itimerspec its{};
      if (::timerfd_gettime(app.get(), &its) != 0) return errno_error("timerfd_gettime of fd " + std::to_string(fd.fd));
    }
    auto info = read_file(base + std::to_string(fd.fd));
    if (!info) return info.error();
    // A file open through two descriptions (reopened via /proc) would become two files.
    auto in_other_description = [&](pb::FdKind kind) {
      for (size_t k = 0; k < candidates.size(); ++k)
        if (candidates[k].kind == kind && desc[k] != desc[i] && candidates[k].fd->st.st_ino == fd.st.st_ino &&
            candidates[k].fd->st.st_dev == fd.st.st_dev)
          return true;
      return false;
    };
    auto whole = [](int file, const struct stat& st) -> Result<std::string> {
      std::string data(static_cast<size_t>(st.st_size), '\0');
      if (!data.empty()) PW_TRY(pread_all(file, data.data(), data.size(), 0));
      return data;
    };
    switch (candidates[i].kind) {
      case pb::FD_EVENTFD: {
        auto e = parse_eventfd_fdinfo(*info);
        if (!e) {
          refuse(fd.fd, e.error().message);
          continue;
        }
        *r.mutable_eventfd() = *e;
        break;
      }
      case pb::FD_TIMERFD: {
        auto t = parse_timerfd_fdinfo(*info);
        if (!t) return t.error();
        // A period that ended between the catch-up above and this read leaves the timer stopped
        // until asked again (fdinfo: no time left): ask again, so it is not taken for disarmed. A
        // timer disarmed with an interval set (settime with no value) keeps reading so.
        for (int again = 0; again < 3 && t->value_sec() == 0 && t->value_nsec() == 0 &&
                            (t->interval_sec() != 0 || t->interval_nsec() != 0);
             ++again) {
          PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
          itimerspec its{};
          if (::timerfd_gettime(app.get(), &its) != 0) return errno_error("timerfd_gettime of fd " + std::to_string(fd.fd));
          PW_ASSIGN(std::string text, read_file(base + std::to_string(fd.fd)));
          t = parse_timerfd_fdinfo(text);
          if (!t) return t.error();
        }
        *r.mutable_timerfd() = *t;
        break;
      }
      case pb::FD_SIGNALFD: {
        auto s = parse_signalfd_fdinfo(*info);
        if (!s) return s.error();
        *r.mutable_signalfd() = *s;
        break;
      }
      case pb::FD_INOTIFY: {
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        PW_ASSIGN(std::string why, inotify_record(pid, app.get(), *info, *r.mutable_inotify()));
        if (!why.empty()) {
          refuse(fd.fd, why);
          continue;
        }
        break;
      }
      case pb::FD_EPOLL: {
        auto e = parse_epoll_fdinfo(*info);
        if (!e) return e.error();
        std::map<int, int> seen;
        std::string why;
        for (const auto& t : e->targets()) {
          const int n = seen[t.fd()]++;
          if (n > 0) {
            why = "target fd " + std::to_string(t.fd()) + " is registered more than once (a closed fd's file)";
            break;
          }
          if (!by_number.count(t.fd())) {
            why = "target fd " + std::to_string(t.fd()) + " is no longer open in the process";
            break;
          }
          kcmp_epoll_slot slot{static_cast<uint32_t>(fd.fd), static_cast<uint32_t>(t.fd()), 0};
          long same = kcmp(pid, KCMP_EPOLL_TFD, static_cast<unsigned long>(t.fd()), reinterpret_cast<unsigned long>(&slot));
          if (same < 0) return errno_error("kcmp(KCMP_EPOLL_TFD) of epoll fd " + std::to_string(fd.fd));
          if (same != 0) {
            why = "target fd " + std::to_string(t.fd()) + " is now another file than the one registered";
            break;
          }
        }
        if (!why.empty()) {
          refuse(fd.fd, "epoll: " + why);
          continue;
        }
        *r.mutable_epoll() = *e;
        break;
      }
      case pb::FD_PIPE: {
        const uint32_t acc = fd.flags & O_ACCMODE;
        const uint64_t ino = bracket_inode(fd.target);
        if (acc != O_RDONLY && acc != O_WRONLY) {
          refuse(fd.fd, "pipe opened read-write (through /proc) is not carried");
          continue;
        }
        if (fd.flags & O_DIRECT) {
          refuse(fd.fd, "packet-mode pipe (O_DIRECT) is not carried");
          continue;
        }
        const bool write_end = acc == O_WRONLY;
        const auto& mine = pipe_ends[write_end][ino];
        const auto& other = pipe_ends[!write_end][ino];
        if (other.empty()) {
          refuse(fd.fd, std::string("pipe whose ") + (write_end ? "read" : "write") +
                            " end is outside the process");
          continue;
        }
        bool one_desc = true;
        for (int k : mine) one_desc = one_desc && desc[static_cast<size_t>(k)] == desc[static_cast<size_t>(mine[0])];
        for (int k : other) one_desc = one_desc && desc[static_cast<size_t>(k)] == desc[static_cast<size_t>(other[0])];
        if (!one_desc) {
          refuse(fd.fd, "pipe end open through more than one open file description");
          continue;
        }
        auto [it, fresh] = pipe_of.emplace(ino, pipe_of.size() + 1);
        auto* p = r.mutable_pipe();
        p->set_pipe_id(static_cast<uint32_t>(it->second));
        p->set_write_end(write_end);
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        int cap = ::fcntl(app.get(), F_GETPIPE_SZ);
        if (cap < 0) return errno_error("F_GETPIPE_SZ of fd " + std::to_string(fd.fd));
        p->set_capacity(static_cast<uint32_t>(cap));
        // The bytes go with the first read-end record only.
        if (!write_end && static_cast<size_t>(mine[0]) == i) {
          int queued = 0;
          if (::ioctl(app.get(), FIONREAD, &queued) != 0) return errno_error("FIONREAD of fd " + std::to_string(fd.fd));
          std::string data;
          if (queued > 0) {
            int pp[2];
            if (::pipe2(pp, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("pipe");
            UniqueFd pr(pp[0]), pw(pp[1]);
            if (::fcntl(pw.get(), F_SETPIPE_SZ, cap) < cap) return errno_error("F_SETPIPE_SZ");
            // tee duplicates the buffers: the app's pipe keeps its bytes.
            ssize_t n = ::tee(app.get(), pw.get(), static_cast<size_t>(queued), SPLICE_F_NONBLOCK);
            if (n != queued)
              return make_error(n < 0 ? errno : EIO, "copy the bytes in the pipe of fd " + std::to_string(fd.fd));
            data.resize(static_cast<size_t>(n));
            size_t got = 0;
            while (got < data.size()) {
              ssize_t k = ::read(pr.get(), data.data() + got, data.size() - got);
              if (k <= 0) return errno_error("read the copy of a pipe");
              got += static_cast<size_t>(k);
            }
          }
          p->set_has_data(true);
          p->set_data_xxh3(xxh3_64(data.data(), data.size()));
          p->set_data(std::move(data));
        }
        break;
      }
      case pb::FD_SOCKPAIR: {
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        int domain = 0, type = 0, listening = 0;
        socklen_t l = sizeof domain;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0) return errno_error("SO_DOMAIN");
        l = sizeof type;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_TYPE, &type, &l) != 0) return errno_error("SO_TYPE");
        l = sizeof listening;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0) return errno_error("SO_ACCEPTCONN");
        const uint64_t ino = bracket_inode(fd.target);
        std::optional<UnixDiag> diag;  // a unix socket that does not listen: is it connected?
        if (domain == AF_UNIX && !listening) {
          auto d = unix_diag(ino);
          if (!d) {
            refuse(fd.fd, "unix socket not visible to sock_diag (" + d.error().describe() + ")");
            continue;
          }
          diag = *d;
        }
        // A listener, a bound UDP socket, or a unix socket never connected (or whose peer is
        // gone): made again, bound where it was.
        if (!diag || diag->peer == 0) {
          PW_ASSIGN(std::string why, listener_record(pid, app.get(), domain, type, ino, *r.mutable_listener()));
          if (!why.empty()) {
            refuse(fd.fd, why);
            continue;
          }
          r.set_kind(pb::FD_LISTENER);
          break;
        }
        if (diag->has_name) {
          refuse(fd.fd, "bound unix socket connected to a peer is not carried");
          continue;
        }
        bool peer_inside = false;
        for (const auto& c : candidates)
          if (c.kind == pb::FD_SOCKPAIR && bracket_inode(c.fd->target) == diag->peer) peer_inside = true;
        if (!peer_inside) {
          refuse(fd.fd, "unix socket connected to a peer outside the process");
          continue;
        }
        auto peer_diag = unix_diag(diag->peer);
        if (!peer_diag || peer_diag->peer != ino || peer_diag->has_name) {
          refuse(fd.fd, "unix socket whose peer is not its socketpair twin");
          continue;
        }
        if (diag->shutdown != 0) {
          refuse(fd.fd, "half-closed socketpair (shutdown) is not carried");
          continue;
        }
        // SO_PEERCRED names the socketpair's creator; the restore's is the restored process, so
        // only a pair this process made with its present credentials reads the same afterwards.
        ucred peer{};
        l = sizeof peer;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_PEERCRED, &peer, &l) != 0) return errno_error("SO_PEERCRED");
        if (peer.pid != pid || peer.uid != owner.st_uid || peer.gid != owner.st_gid) {
          refuse(fd.fd, "socketpair made by another process or credentials (SO_PEERCRED pid " + std::to_string(peer.pid) +
                            " uid " + std::to_string(peer.uid) + " gid " + std::to_string(peer.gid) +
                            ") would read as the restored process's");
          continue;
        }
        bool one_desc = true;
        for (size_t k = 0; k < candidates.size(); ++k)
          if (candidates[k].kind == pb::FD_SOCKPAIR && bracket_inode(candidates[k].fd->target) == ino)
            one_desc = one_desc && desc[k] == desc[i];
        if (!one_desc) {
          refuse(fd.fd, "socket open through more than one open file description");
          continue;
        }
        auto* s = r.mutable_sockpair();
        auto found = sock_of.find(diag->peer);
        if (found != sock_of.end()) {
          s->set_pair_id(found->second.first);
          s->set_second(!found->second.second);
        } else if (auto mine = sock_of.find(ino); mine != sock_of.end()) {
          s->set_pair_id(mine->second.first);
          s->set_second(mine->second.second);
        } else {
          s->set_pair_id(next_pair++);
          s->set_second(false);
        }
        sock_of[ino] = {s->pair_id(), s->second()};
        s->set_type(type);
        int v = 0;
        l = sizeof v;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_SNDBUF, &v, &l) != 0) return errno_error("SO_SNDBUF");
        s->set_sndbuf(v);
        l = sizeof v;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_RCVBUF, &v, &l) != 0) return errno_error("SO_RCVBUF");
        s->set_rcvbuf(v);
        l = sizeof v;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_PASSCRED, &v, &l) != 0) return errno_error("SO_PASSCRED");
        s->set_passcred(v != 0);
        int peek_off = -1;
        l = sizeof peek_off;
        if (::getsockopt(app.get(), SOL_SOCKET, SO_PEEK_OFF, &peek_off, &l) != 0) return errno_error("SO_PEEK_OFF");
        s->set_peek_off(peek_off);
        // A dup of this description already carries the queue.
        bool first_of_desc = true;
        for (size_t k = 0; k < i; ++k) first_of_desc = first_of_desc && desc[k] != desc[i];
        if (first_of_desc) {
          std::string why;
          PW_ASSIGN(auto queue, peek_queue(app.get(), type, peek_off, why));
          if (!why.empty()) {
            refuse(fd.fd, "socketpair: " + why);
            continue;
          }
          for (auto& m : queue) s->add_queued()->set_data(std::move(m));
          s->set_queued_xxh3(sock_queue_hash(s->queued()));
        }
        break;
      }
      case pb::FD_PASSED: {
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        PW_ASSIGN(std::string why, passed_socket_record(app.get(), bracket_inode(fd.target), *r.mutable_listener()));
        if (!why.empty()) {
          refuse(fd.fd, "socket passed by the launch (LISTEN_FDS): " + why);
          continue;
        }
        r.mutable_passed()->set_index(candidates[i].passed_index);
        r.mutable_passed()->set_name(candidates[i].passed_name);
        break;
      }
      case pb::FD_MEMFD: {
        if (in_other_description(pb::FD_MEMFD)) {
          refuse(fd.fd, "memfd open through more than one open file description");
          continue;
        }
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        struct stat st {};
        struct statfs fs {};
        if (::fstat(app.get(), &st) != 0 || ::fstatfs(app.get(), &fs) != 0) return errno_error("fstat memfd");
        if (fs.f_type == HUGETLBFS_MAGIC) {
          refuse(fd.fd, "hugetlb memfd is not carried");
          continue;
        }
        if (st.st_size > static_cast<off_t>(kMaxQueuedBytes)) {
          refuse(fd.fd, "memfd larger than 16 MiB is not carried");
          continue;
        }
        auto* m = r.mutable_memfd();
        // "/memfd:NAME (deleted)"
        m->set_name(fd.target.substr(7, fd.target.size() - 7 - 10));
        PW_ASSIGN(std::string data, whole(app.get(), st));
        int seals = ::fcntl(app.get(), F_GET_SEALS);
        if (seals < 0) return errno_error("F_GET_SEALS of fd " + std::to_string(fd.fd));
        m->set_seals(static_cast<uint32_t>(seals));
        m->set_mode(st.st_mode & 07777);
        m->set_data_xxh3(xxh3_64(data.data(), data.size()));
        m->set_data(std::move(data));
        r.set_pos(fd.pos);
        break;
      }
      case pb::FD_DELETED: {
        if (in_other_description(pb::FD_DELETED)) {
          refuse(fd.fd, "deleted file open through more than one open file description");
          continue;
        }
        PW_ASSIGN(UniqueFd app, get_fd(pidfd.get(), fd.fd));
        struct stat st {};
        if (::fstat(app.get(), &st) != 0) return errno_error("fstat deleted file");
        if (st.st_nlink != 0) {
          refuse(fd.fd, "deleted file still has another name (a hard link)");
          continue;
        }
        auto* d = r.mutable_deleted();
        d->set_path(fd.target.substr(0, fd.target.size() - 10));  // " (deleted)"
        // Read through a read-only reopen of the same file: the app's description may be
        // write-only (pread: EBADF), and O_NOATIME keeps the atime we record.
        const std::string self = "/proc/self/fd/" + std::to_string(app.get());
        UniqueFd rd(::open(self.c_str(), O_RDONLY | O_NOATIME | O_CLOEXEC));
        if (!rd.valid()) rd = UniqueFd(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
        if (!rd.valid()) return errno_error("reopen deleted file of fd " + std::to_string(fd.fd) + " to read it");
        std::string why;
        PW_ASSIGN(std::string data, data_extents(rd.get(), st, *d, why));
        if (!why.empty()) {
          refuse(fd.fd, why);
          continue;
        }
        d->set_mode(st.st_mode & 07777);
        d->set_has_times(true);
        d->set_atime_ns(static_cast<int64_t>(st.st_atim.tv_sec) * 1000000000 + st.st_atim.tv_nsec);
        d->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
        d->set_data_xxh3(xxh3_64(data.data(), data.size()));
        d->set_data(std::move(data));
        r.set_pos(fd.pos);
        break;
      }
      case pb::FD_FILE:
      default:
        return data_error("internal: fd " + std::to_string(fd.fd) + " is not a kernel object");
    }
    out.records.push_back(std::move(r));
  }
  return out;
}

}  // namespace prewarm
