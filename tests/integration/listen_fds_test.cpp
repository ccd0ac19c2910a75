// Sockets a launch passes by systemd's protocol (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, fds from
// 3), without systemd: the test holds the listening sockets as systemd would, passes them to the
// socket-activated program (tests/progs/listen_fds.c) and to `prewarm restore`, and checks that
// the restored process answers on the socket the restoring launch passed, at the same fd number,
// and that a launch passing none, other or differently named sockets is refused with exit 3.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

class ListenFds : public DumpTest {};

// argv run with LISTEN_PID set to its own pid (exec keeps it) and then the variables `vars`.
std::vector<std::string> with_listen(const std::string& vars, const std::vector<std::string>& argv) {
  std::vector<std::string> out{"/bin/sh", "-c", "LISTEN_PID=$$ " + vars + " exec \"$@\"", "sh"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

Fd tcp_listener(uint16_t port = 0, int type = SOCK_STREAM) {
  Fd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  int one = 1;
  if (s.get() < 0 || ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      (type == SOCK_STREAM && ::listen(s.get(), 16) != 0))
    throw std::runtime_error(std::string("tcp listener: ") + std::strerror(errno));
  return s;
}

uint16_t port_of(const Fd& s) {
  sockaddr_in a{};
  socklen_t l = sizeof a;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &l) != 0) throw std::runtime_error("getsockname");
  return ntohs(a.sin_port);
}

sockaddr_un unix_address(const fs::path& path, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.string().size() + 1);
  return a;
}

Fd unix_listener(const fs::path& path) {
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  socklen_t len = 0;
  sockaddr_un a = unix_address(path, len);
  if (s.get() < 0 || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(s.get(), 16) != 0)
    throw std::runtime_error(std::string("unix listener: ") + std::strerror(errno));
  return s;
}

// Connects to `addr` and reads the server's whole answer (it closes the connection after it).
std::string ask(int family, const sockaddr* addr, socklen_t len, Child& server) {
  Fd c(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c.get() < 0 || ::connect(c.get(), addr, len) != 0) return std::string("connect: ") + std::strerror(errno);
  server.write("go\n");  // the server accepts once it has its line
  std::string out;
  char buf[256];
  pollfd p{c.get(), POLLIN, 0};
  while (::poll(&p, 1, 20000) == 1) {
    ssize_t n = ::read(c.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string ask_tcp(uint16_t port, Child& server) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return ask(AF_INET, reinterpret_cast<sockaddr*>(&a), sizeof a, server);
}

std::string ask_unix(const fs::path& path, Child& server) {
  socklen_t len = 0;
  sockaddr_un a = unix_address(path, len);
  return ask(AF_UNIX, reinterpret_cast<sockaddr*>(&a), len, server);
}

// The socket-activated program with `pass` at fds 3..., ready and blocked in read(0).
std::pair<Child, std::map<std::string, std::string>> start_server(const std::string& vars,
                                                                  const std::vector<int>& pass) {
  Child c = Child::spawn(with_listen(vars, {PROG_listen_fds}), pass);
  auto ready = c.read_line();
  if (!ready || !ready->starts_with("ready") || !wait_blocked_in_stdin_read(c.pid()))
    throw std::runtime_error("listen_fds did not get ready: " + ready.value_or("") + c.leftovers());
  return {std::move(c), fields(*ready)};
}

Child restore_with(const std::string& vars, const fs::path& images, const std::vector<int>& pass) {
  std::vector<std::string> argv{PREWARM_BIN, "restore", "--images", images.string()};
  return Child::spawn(vars.empty() ? argv : with_listen(vars, argv), pass);
}

// The socket systemd keeps across launches: the app is dumped and ended, and the next launch
// passes the same listening socket again; the restored process answers on it at fd 3, with the
// snapshot's token and its own pid, and keeps the O_NONBLOCK the app set and its epoll
// registration of fd 3.
TEST_F(ListenFds, TcpListenerPassedAgainIsTheRestoredAppsFd3) {
  TempDir dir;
  Fd sock = tcp_listener();
  auto [server, ready] = start_server("LISTEN_FDS=1 LISTEN_FDNAMES=web", {sock.get()});
  const auto before = layout(server.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(server.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_EQ(server.wait(), 128 + SIGKILL);

  Child restored = restore_with("LISTEN_FDS=1 LISTEN_FDNAMES=web", dir / "img", {sock.get()});
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(layout_diff(before, layout(restored.pid())), "");
  EXPECT_EQ(ask_tcp(port_of(sock), restored),
            "token=" + ready["token"] + " pid=" + std::to_string(restored.pid()) + " fd=3");
  auto done = restored.read_line();
  EXPECT_EQ(done.value_or(""), "served=1 nonblock=1 epoll=1") << restored.leftovers();
  EXPECT_EQ(restored.wait(), 0) << restored.leftovers();
}

// A new socket at the same address (a restarted .socket unit), while the snapshotted app still
// holds the old one: the restored process serves the new one, not the old and not a copy.
TEST_F(ListenFds, UnixListenerOfTheRestoringLaunchNotTheSnapshots) {
  TempDir dir;
  const fs::path path = dir / "srv.sock";
  Fd old_sock = unix_listener(path);
  auto [server, ready] = start_server("LISTEN_FDS=1", {old_sock.get()});
  auto dump = prewarm({"dump", "--pid", std::to_string(server.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;

  fs::remove(path);
  Fd new_sock = unix_listener(path);
  Child restored = restore_with("LISTEN_FDS=1", dir / "img", {new_sock.get()});
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(ask_unix(path, restored), "token=" + ready["token"] + " pid=" + std::to_string(restored.pid()) + " fd=3");
  EXPECT_EQ(restored.read_line().value_or(""), "served=1 nonblock=1 epoll=1") << restored.leftovers();
  EXPECT_EQ(restored.wait(), 0) << restored.leftovers();
  // The old socket got nothing: no connection is waiting on it.
  pollfd p{old_sock.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

// Restores this launch cannot take: exit 3 naming what differs, and the launch's socket as it
// was (the O_NONBLOCK the app set is not applied to it).
TEST_F(ListenFds, OtherSocketsNoneOrOtherNamesAreRefused) {
  TempDir dir;
  Fd sock = tcp_listener();
  const uint16_t port = port_of(sock);
  auto [server, ready] = start_server("LISTEN_FDS=1 LISTEN_FDNAMES=web", {sock.get()});
  auto dump = prewarm({"dump", "--pid", std::to_string(server.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;

  Fd other_port = tcp_listener();
  Fd udp = tcp_listener(port, SOCK_DGRAM);
  Fd fresh = tcp_listener();
  ASSERT_EQ(::fcntl(fresh.get(), F_GETFL) & O_NONBLOCK, 0);
  struct Case {
    std::string vars;
    std::vector<int> pass;
    std::string said;
  };
  const std::vector<Case> cases = {
      {"", {}, "the snapshot's launch passed 1 socket (LISTEN_FDS), this launch passes none"},
      {"LISTEN_FDS=1 LISTEN_FDNAMES=web LISTEN_PID=1", {sock.get()}, "this launch passes none"},  // not for us
      {"LISTEN_FDS=2 LISTEN_FDNAMES=web:web", {sock.get(), sock.get()}, "this launch passes 2 sockets"},
      {"LISTEN_FDS=1 LISTEN_FDNAMES=api", {sock.get()}, "named its sockets 'web' (LISTEN_FDNAMES), this launch 'api'"},
      {"LISTEN_FDS=1", {sock.get()}, "named its sockets 'web' (LISTEN_FDNAMES), this launch (none)"},
      {"LISTEN_FDS=1 LISTEN_FDNAMES=web",
       {other_port.get()},
       "on 127.0.0.1:" + std::to_string(port_of(other_port)) +
           "; the snapshot's: IPv4 stream listening socket on 127.0.0.1:" + std::to_string(port)},
      {"LISTEN_FDS=1 LISTEN_FDNAMES=web",
       {udp.get()},
       "fd 3 is: IPv4 datagram socket on 127.0.0.1:" + std::to_string(port)},
  };
  for (const auto& c : cases) {
    Child r = restore_with(c.vars, dir / "img", c.pass);
    auto res = r.communicate("");
    EXPECT_EQ(res.code, 3) << c.vars << ": " << res.err;
    EXPECT_NE(res.err.find(c.said), std::string::npos) << c.vars << ": " << res.err;
  }
  // The same socket with another backlog (someone called listen(2) on it again) is not the one
  // the app left either.
  ASSERT_EQ(::listen(sock.get(), 5), 0);
  {
    Child r = restore_with("LISTEN_FDS=1 LISTEN_FDNAMES=web", dir / "img", {sock.get()});
    auto res = r.communicate("");
    EXPECT_EQ(res.code, 3) << res.err;
    EXPECT_NE(res.err.find("has a backlog of 5, the snapshot's 16"), std::string::npos) << res.err;
  }

  // The flags of a launch's socket are shared with whoever passed it: a refused restore leaves them.
  Child r = restore_with("LISTEN_FDS=1 LISTEN_FDNAMES=other", dir / "img", {fresh.get()});
  EXPECT_EQ(r.communicate("").code, 3);
  EXPECT_EQ(::fcntl(fresh.get(), F_GETFL) & O_NONBLOCK, 0);
}

// systemd's Accept=yes passes one connection per launch: never taken for the next launch's.
TEST_F(ListenFds, PassedConnectionIsRefusedAtTheDump) {
  TempDir dir;
  Fd sock = tcp_listener();
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port_of(sock));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  Fd conn(::accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(conn.get(), 0);
  auto [server, ready] = start_server("LISTEN_FDS=1", {conn.get()});
  auto dump = prewarm({"dump", "--pid", std::to_string(server.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find("socket passed by the launch (LISTEN_FDS): a connected socket (Accept=yes)"),
            std::string::npos)
      << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
}

}  // namespace
}  // namespace prewarm::test
