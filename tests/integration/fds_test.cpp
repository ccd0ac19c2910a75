// Kernel-object fds, zdtm style: each program (tests/progs/) sets up one kind of object with some
// state, is dumped and restored, and reports how the object behaves afterwards; every round trip
// also compares mappings and fds. Each kind also has a case that must be refused by name.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

class Fds : public DumpTest {};

// Dumps a ready program that holds something prewarm cannot carry: exit 3, `what` named on
// stderr, no image, and the program keeps running.
void expect_refused(const std::vector<std::string>& argv, const std::string& what) {
  TempDir dir;
  auto [c, ready] = start_ready(argv);
  auto dump = prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find(what), std::string::npos) << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
  c.write("go\n");
  EXPECT_TRUE(c.read_line());
  EXPECT_EQ(c.wait(), 0) << c.leftovers();
}

TEST_F(Fds, EventfdCounterSemaphoreAndSharing) {
  TempDir dir;
  auto rt = round_trip({PROG_eventfd}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "counter=7 shared=5 empty=EAGAIN sem=1,1,1,EAGAIN nonblock=1");
  // The original, left running, still has its own counts.
  EXPECT_EQ(answer(rt.original, "go"), "counter=7 shared=5 empty=EAGAIN sem=1,1,1,EAGAIN nonblock=1");
}

// 0x100: the pipe (level-triggered, has a byte), 0x20: the counted eventfd (edge-triggered),
// 0x3: the idle eventfd, until it is written to; stdin (0x1000) is registered too, and drained
// by the time the program looks. MOD and DEL succeed only if the registrations are keyed by the
// app's own fd numbers.
TEST_F(Fds, EpollRegistrationsWithTheirData) {
  TempDir dir;
  auto rt = round_trip({PROG_epoll}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "first=2:120 mod=0 del=0 del0=0 after=0:0 woken=1:3");
}

TEST_F(Fds, EpollWithAStaleRegistrationIsRefused) {
  expect_refused({PROG_epoll, "stale"}, "is no longer open in the process");
}

TEST_F(Fds, TimerfdClockFlagsRemainingTimeAndTicks) {
  TempDir dir;
  auto rt = round_trip({PROG_timerfd}, dir);
  // fired=1: the 1 s timer fires once after restore (the read blocks until then). The periodic
  // timer was expired at the dump with its missed periods not yet counted: it must keep ticking.
  EXPECT_EQ(answer(rt.restored, "go"),
            "oneshot=1,clock1/flags0 absolute=1,clock0/flags1 disarmed=1,1,clock7/flags0 "
            "periodic_ticks_ge_10=1 periodic_again=1 interval=0 fired=1");
}

TEST_F(Fds, SignalfdMask) {
  TempDir dir;
  auto rt = round_trip({PROG_signalfd}, dir);
  ASSERT_EQ(kill(rt.restored.pid(), SIGUSR1), 0);
  EXPECT_EQ(answer(rt.restored, "go"), "signo=10 empty=1");
}

// Watches added again by path at their wds, the gap a removed watch left kept, masks and
// IN_ONESHOT carried, and no event the restore's own set-up made reaches the app (it makes the
// ghost file again in the watched DIR/sub, and unlinks it).
TEST_F(Fds, InotifyWatchesAtTheirWds) {
  TempDir dir;
  fs::create_directory(dir / "w");
  auto rt = round_trip({PROG_inotify, (dir / "w").string()}, dir);
  EXPECT_EQ(rt.ready["wds"], "1,2,3");
  EXPECT_EQ(answer(rt.restored, "go"), "events=1:create:new,3:modify,3:ignored next_wd=4 empty=1 nonblock=1");
}

// The inotify program dumped, then what it watches in DIR changed by `change`: the restore is
// refused (exit 3) before the point of no return, naming the watch and `why`; a cold start reads
// the file anew.
void expect_restore_refused_after(const std::function<void(const fs::path&)>& change, const std::string& why) {
  TempDir dir;
  fs::create_directory(dir / "w");
  auto [original, ready] = start_ready({PROG_inotify, (dir / "w").string()});
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  change(dir / "w");
  auto r = run({PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  EXPECT_EQ(r.code, 3) << r.err;
  const std::string dir_w = (dir / "w").string();
  const auto at = why.find("DIR");
  EXPECT_NE(r.err.find(at == std::string::npos ? why : why.substr(0, at) + dir_w + why.substr(at + 3)), std::string::npos)
      << r.err;
}

// Written to since: the restored app would never hear of it.
TEST_F(Fds, InotifyWatchOnAFileChangedSinceRefusesTheRestore) {
  expect_restore_refused_after([](const fs::path& w) { std::ofstream(w / "file", std::ios::app) << "v2"; },
                               "inotify watch 3 on DIR/file: the file changed since the snapshot");
}

// An entry of a directory watched for its entries' writes, written since: the directory's own
// times do not move, its entries' sum does.
TEST_F(Fds, InotifyWatchOnADirectoryWhoseEntryChangedRefusesTheRestore) {
  expect_restore_refused_after([](const fs::path& w) { std::ofstream(w / "sub" / "old", std::ios::app) << "v2"; },
                               "inotify watch 1 on DIR/sub: an entry of the directory changed since the snapshot");
}

// Replaced: ext4 gives the new file the freed inode number, and its file handle tells them apart.
TEST_F(Fds, InotifyWatchOnAReplacedFileRefusesTheRestore) {
  expect_restore_refused_after(
      [](const fs::path& w) {
        fs::remove(w / "file");
        std::ofstream(w / "file") << "new";
      },
      "inotify watch 3 on DIR/file: the path names another file");
}

// Found by root through its file handle, a watched file the app's own user cannot reach by any
// path (moved into a directory closed to it) is refused, and its new name is not told.
TEST_F(Fds, InotifyWatchOnAFileTheAppCannotReachIsRefusedUnnamed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the app as nobody and dump it as root";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no setpriv";
  TempDir dir;
  fs::create_directory(dir / "w");
  fs::create_directory(dir / "closed");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chown((dir / "w").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod((dir / "closed").c_str(), 0700), 0);
  auto [original, ready] = start_ready({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                        PROG_inotify, (dir / "w").string()});
  fs::rename(dir / "w" / "file", dir / "closed" / "secret-name");
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find("the file of watch 3 has no path from the process's root that its user can walk"),
            std::string::npos)
      << dump.err;
  EXPECT_EQ(dump.err.find("secret-name"), std::string::npos) << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
}

TEST_F(Fds, InotifyWatchForOpensIsRefused) {
  TempDir dir;
  fs::create_directory(dir / "w");
  expect_refused({PROG_inotify, (dir / "w").string(), "open"}, "watch 3 listens for opens, reads or closes without a write");
}

TEST_F(Fds, InotifyWithAnEventQueuedIsRefused) {
  TempDir dir;
  fs::create_directory(dir / "w");
  expect_refused({PROG_inotify, (dir / "w").string(), "queued"}, "bytes of events queued and not read yet");
}

TEST_F(Fds, PipeBytesSizeFlagsAndBothEnds) {
  TempDir dir;
  auto rt = round_trip({PROG_pipe}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "bytes=300004 same=1 nonblock_again=1 size=1048576 eof=1");
  EXPECT_EQ(answer(rt.original, "go"), "bytes=300004 same=1 nonblock_again=1 size=1048576 eof=1");
}

TEST_F(Fds, PipeWithAnEndOutsideIsRefused) {
  expect_refused({PROG_pipe, "outside"}, "pipe whose read end is outside the process");
}

TEST_F(Fds, SocketpairsWithQueuedMessages) {
  TempDir dir;
  auto rt = round_trip({PROG_socketpair}, dir);
  const std::string want = "stream=to-one+more,to-zero dgram=d1|d22|d333 seqpacket=s1|s22 back=back,x";
  EXPECT_EQ(answer(rt.restored, "go"), want);
  EXPECT_EQ(answer(rt.original, "go"), want);
}

TEST_F(Fds, SocketpairOfAnotherProcessIsRefused) {
  expect_refused({PROG_socketpair, "child"}, "socketpair made by another process or credentials (SO_PEERCRED pid");
}

TEST_F(Fds, SocketpairWithAnFdInFlightIsRefused) {
  expect_refused({PROG_socketpair, "scm"}, "a queued message carries file descriptors (SCM_RIGHTS)");
}

TEST_F(Fds, SignalDrivenPipeIsRefused) {
  expect_refused({PROG_pipe, "async"}, "signal-driven I/O (O_ASYNC) is not carried");
}

// TCP sockets never connected are made again as they were: unbound, or bound to their port
// (zdtm's unbound_sock, socket-tcp-unconn were refused). The original goes first: it holds the port.
TEST_F(Fds, TcpSocketsNeverConnectedAreCarried) {
  TempDir dir;
  auto rt = round_trip({PROG_tcp_idle, "fresh"}, dir);
  ASSERT_EQ(::kill(rt.original.pid(), SIGKILL), 0);
  rt.original.wait();
  EXPECT_EQ(answer(rt.restored, "go"), "answer unbound_port=0 udp_port=0 same_port=1 rcvlowat=2 listen=1 connect=1");
}

// An option a recreated socket is not given, set away from its default, refuses the socket.
TEST_F(Fds, SocketOptionNotCarriedIsRefused) {
  expect_refused({PROG_tcp_idle, "linger"}, "socket option SO_LINGER is not carried");
}

// One whose connection ended would read nothing of that end as a new socket: refused by name.
TEST_F(Fds, TcpSocketWhoseConnectionEndedIsRefused) {
  expect_refused({PROG_tcp_idle, "ended"}, "TCP socket whose connection has ended");
}

// Listeners are recreated at their addresses, so the snapshotted app must be gone (dump --kill):
// while it still holds them, the restore is refused before the point of no return.
TEST_F(Fds, ListeningSocketsAtTheirAddresses) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_listen});
  const auto before = layout(original.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  auto busy = restore(dir / "img").communicate("go\n");
  EXPECT_NE(busy.code, 0);
  EXPECT_NE(busy.err.find("to its address again"), std::string::npos) << busy.err;
  EXPECT_NE(busy.err.find("Address already in use"), std::string::npos) << busy.err;

  auto again = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img2", "--kill"});
  ASSERT_EQ(again.code, 0) << again.err;
  original.wait();
  Child restored = restore(dir / "img2");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(layout_diff(before, layout(restored.pid())), "");
  EXPECT_EQ(answer(restored, "go"), "tcp=ping udp=dgram unix=1 reuseaddr=1 nodelay=1");
}

// A unix listener bound to a path takes it again. The app's socket file outlives it (a stale file:
// replaced); a restore refused after the bind takes its own file away again; while a restored app
// has the path, another restore is refused by name and leaves that app's file and queue alone.
TEST_F(Fds, UnixListenerAtAPath) {
  TempDir dir;
  const std::string sock = (dir / "sock").string();
  auto [original, ready] = start_ready({PROG_listen_path, dir.path().string()});
  const auto f = fields(ready);
  const auto before = layout(original.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  original.wait();
  ASSERT_TRUE(fs::is_socket(sock)) << "the app's socket file is expected to outlive it";

  // Its TCP port taken: refused at the TCP bind, which comes after the unix one.
  const int blocker = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(f.at("port"))));
  ASSERT_EQ(::bind(blocker, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(blocker, 1), 0);
  auto refused = restore(dir / "img").communicate("go\n");
  ::close(blocker);
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("Address already in use"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(fs::symlink_status(sock))) << "the refused restore left its socket file at " << sock;

  // A stale socket file at the path again (bound, then closed), as the app left one.
  const int stale = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un u{};
  u.sun_family = AF_UNIX;
  std::snprintf(u.sun_path, sizeof u.sun_path, "%s", sock.c_str());
  ASSERT_EQ(::bind(stale, reinterpret_cast<sockaddr*>(&u), sizeof u), 0) << std::strerror(errno);
  ::close(stale);
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(layout_diff(before, layout(restored.pid())), "");

  auto busy = restore(dir / "img").communicate("go\n");
  EXPECT_NE(busy.code, 0);
  EXPECT_NE(busy.err.find("another process has a socket bound to " + sock), std::string::npos) << busy.err;
  EXPECT_TRUE(fs::is_socket(sock)) << "the refused restore removed the restored app's socket file";
  // Its own connection is the first it accepts: nothing of the refused restore is queued.
  EXPECT_EQ(answer(restored, "go"), "unix=ping mode=640 name=" + sock);
}

// Bound by a relative name from its cwd: bound from that directory again, so the name reads the
// same. Once the cwd changed, or the file is gone, the name is not known to be the socket's.
TEST_F(Fds, UnixListenerAtARelativePath) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_listen_path, dir.path().string(), "relative"});
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  original.wait();
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(answer(restored, "go"), "unix=ping mode=640 name=sock");
}

TEST_F(Fds, UnixListenerAtAMovedOrUnlinkedPathIsRefused) {
  TempDir dir;
  expect_refused({PROG_listen_path, dir.path().string(), "moved"}, "sock (from its cwd), which no longer names it");
  TempDir other;
  expect_refused({PROG_listen_path, other.path().string(), "unlinked"}, "which no longer names it");
}

// Unix sockets not connected (yet): made again of their type with their options, bound where they
// were (a path, an abstract name) or not at all; one with a datagram queued is refused.
TEST_F(Fds, UnconnectedUnixSockets) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_unix_unconnected, dir.path().string()});
  const auto before = layout(original.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  original.wait();
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(layout_diff(before, layout(restored.pid())), "");
  EXPECT_EQ(answer(restored, "go"), "dgram=one abstract=two passcred=1 stream=1 later=1");
  TempDir other;
  expect_refused({PROG_unix_unconnected, other.path().string(), "queued"}, "unconnected unix socket with messages queued");
}

TEST_F(Fds, ListenerWithAPendingConnectionIsRefused) {
  expect_refused({PROG_listen, "pending"}, "connections waiting to be accepted");
}

TEST_F(Fds, MemfdBytesOffsetModeAndSeals) {
  TempDir dir;
  auto rt = round_trip({PROG_memfd}, dir);
  EXPECT_EQ(answer(rt.restored, "go"),
            "read=MNOPQRSTU same=1 size=100000 mode=600 link=/memfd:jit-cache (deleted) seals=1 grow_refused=1 cloexec=1");
}

TEST_F(Fds, MappedMemfdIsRefused) {
  expect_refused({PROG_memfd, "mapped"}, "memfd mapping");
}

// A ghost file: made again at its old name and unlinked, so even /proc/PID/fd matches (layout).
TEST_F(Fds, DeletedFileBytesOffsetAndMode) {
  TempDir dir;
  auto rt = round_trip({PROG_deleted_file, (dir / "scratch.db").string()}, dir);
  EXPECT_EQ(answer(rt.restored, "go"),
            "read=xyzabcdef same=1 pos=786 size=50000 mode=640 links=0 same_fs=1 tail=TAIL");
  EXPECT_EQ(answer(rt.original, "go"),
            "read=xyzabcdef same=1 pos=786 size=50000 mode=640 links=0 same_fs=1 tail=TAIL");
}

// Its name taken again by another file: an unnamed file in the same directory, with the same bytes.
TEST_F(Fds, DeletedFileWhoseNameIsTakenAgain) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_deleted_file, (dir / "scratch.db").string()});
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  std::ofstream(dir / "scratch.db") << "another file now";
  Child restored = restore(dir / "img");
  EXPECT_EQ(answer(restored, "go"), "read=xyzabcdef same=1 pos=786 size=50000 mode=640 links=0 same_fs=1 tail=TAIL");
  std::ifstream in(dir / "scratch.db");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "another file now");
}

TEST_F(Fds, DeletedFileWithAnotherLinkIsRefused) {
  TempDir dir;
  expect_refused({PROG_deleted_file, (dir / "scratch.db").string(), "linked"}, "deleted file still has another name");
}

// zdtm ghost_holes*/file_attr: the holes stay holes (only data extents are stored) and the
// times are the app's, not the restore's. The file system's own hole handling is probed first.
TEST_F(Fds, DeletedSparseFileKeepsItsHolesAndTimes) {
  TempDir dir;
  auto rt = round_trip({PROG_ghost_sparse, (dir / "sparse.db").string(), "sparse"}, dir);
  if (rt.ready["hole0"] != "0") GTEST_SKIP() << "this file system reports no holes (SEEK_HOLE at 0: " << rt.ready["hole0"] << ")";
  EXPECT_EQ(answer(rt.restored, "go"), "size=24576 hole0=0 data=4096 hole1=8192 data3=12288 hole4=16384 blocks=" +
                                           rt.ready["blocks"] + " same=1 atime=1000000.250 mtime=2000000.500");
}

// zdtm unlink_fstat01: the app can only write its ghost file; the dump reads it another way.
TEST_F(Fds, DeletedWriteOnlyFile) {
  TempDir dir;
  auto rt = round_trip({PROG_ghost_sparse, (dir / "w.log").string(), "wronly"}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "size=7 acc=1 links=0");
}

// zdtm shmemfd: a shmem fd from /proc/self/map_files (named "/dev/zero (deleted)"), remade as
// an unnamed file: no __O_TMPFILE in its flags.
TEST_F(Fds, SharedAnonymousFdKeepsItsFlags) {
  if (::geteuid() != 0) GTEST_SKIP() << "/proc/self/map_files needs CAP_SYS_ADMIN";
  TempDir dir;
  auto rt = round_trip({PROG_ghost_sparse, "-", "shmem"}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "flags_same=1 flags=402 read=hello");
}

// zdtm sk-freebind: a socket bound with IP_FREEBIND to an address not on this host binds again,
// and the option is as the app left it (kept, or cleared after the bind).
TEST_F(Fds, FreebindSocketKeepsOptionAndAddress) {
  if (int s = ::socket(AF_INET6, SOCK_DGRAM, 0); s < 0) GTEST_SKIP() << "no IPv6 here"; else ::close(s);
  for (const char* how : {"keep", "clear"}) {
    TempDir dir;
    // The original holds the address: dumped with --kill, as the listeners are.
    auto [original, ready] = start_ready({PROG_sock_freebind, how});
    const auto before = layout(original.pid());
    auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
    ASSERT_EQ(dump.code, 0) << dump.err;
    original.wait();
    Child restored = restore(dir / "img");
    ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
    EXPECT_EQ(layout_diff(before, layout(restored.pid())), "");
    EXPECT_EQ(answer(restored, "go"), std::string("freebind=") + (how[0] == 'k' ? "1" : "0") +
                                             " bound=2001:db8::ff00:42:8329:" + fields(ready).at("port"))
        << how;
  }
}

// A real runtime: ruby 3.1 holds two eventfds at its ready point. After the restore it traps a
// signal, starts a thread and passes a result through a queue.
TEST_F(Fds, RubyWithItsEventfds) {
  if (!fs::exists("/usr/bin/ruby")) GTEST_SKIP() << "no /usr/bin/ruby (.ci/install-deps installs it)";
  TempDir dir;
  auto [original, ready] = start_ready({"/usr/bin/ruby", RUBY_APP_RB});
  int eventfds = 0;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(original.pid()) + "/fd"))
    if (fs::read_symlink(e.path()) == "anon_inode:[eventfd]") ++eventfds;
  EXPECT_GE(eventfds, 1) << "ruby no longer holds an eventfd at ready: this test shows nothing then";
  auto rt = round_trip(std::move(original), ready, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "input=go sum=2668667000 signal=usr1");
}

}  // namespace
}  // namespace prewarm::test
