// Tests the control protocol over real Unix sockets: messages and passed fds arrive intact,
// messages span several reads, bad input and early hangups are errors, and SO_PEERCRED names us.
#include "prewarmd/protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm::proto {
namespace {

namespace fs = std::filesystem;

struct SocketPair {
  UniqueFd a, b;
};

SocketPair socket_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return {};
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// Sends `bytes` with `fd` attached (SCM_RIGHTS); returns what sendmsg returned.
ssize_t send_with_fd(int sock, const char* bytes, size_t len, int fd) {
  iovec iov{const_cast<char*>(bytes), len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return ::sendmsg(sock, &mh, 0);
}

void write_raw(int fd, const std::string& text) {
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
}

TEST(Protocol, MessageRoundTrip) {
  auto sp = socket_pair();
  ASSERT_TRUE(sp.a.valid());
  const json msg = {{"op", "launch"},
                    {"app", "calc"},
                    {"argv", {"/usr/bin/calc", "a b", "line1\nline2", "caf\xc3\xa9"}},
                    {"n", -42},
                    {"big", 18446744073709551615ull},
                    {"ratio", 0.25},
                    {"nested", {{"ok", true}, {"none", nullptr}}}};
  auto s = send_message(sp.a.get(), msg);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  auto r = recv_message(sp.b.get());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->msg, msg);
  EXPECT_TRUE(r->fds.empty());
}

// A file name that is not UTF-8 (from a mapping or an image) must not make a message, a state
// file or `--json` output throw: the bad bytes become U+FFFD.
TEST(Protocol, NonUtf8TextIsSentWithReplacementCharacters) {
  const json msg = {{"path", std::string("/tmp/a\xff\xfe")}};
  EXPECT_EQ(json_text(msg), "{\"path\":\"/tmp/a\xef\xbf\xbd\xef\xbf\xbd\"}");
  auto sp = socket_pair();
  auto s = send_message(sp.a.get(), msg);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  auto r = recv_message(sp.b.get());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->msg["path"], "/tmp/a\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(Protocol, Utf8Validation) {
  for (std::string ok : {"", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"})
    EXPECT_TRUE(is_utf8(ok)) << ok;
  // a lone continuation byte, 0xff, a truncated sequence, an overlong '/', a surrogate, > U+10FFFF
  for (std::string bad : {"\x80", "a\xff", "\xc3", "\xe2\x82", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"})
    EXPECT_FALSE(is_utf8(bad)) << testing::PrintToString(bad);
}

TEST(Protocol, RepliesGoBothWays) {
  auto sp = socket_pair();
  ASSERT_TRUE(send_message(sp.a.get(), {{"op", "status"}}).ok());
  auto req = recv_message(sp.b.get());
  ASSERT_TRUE(req.ok()) << req.error().describe();
  EXPECT_EQ(req->msg["op"], "status");
  ASSERT_TRUE(send_message(sp.b.get(), {{"ok", true}}).ok());
  auto resp = recv_message(sp.a.get());
  ASSERT_TRUE(resp.ok()) << resp.error().describe();
  EXPECT_EQ(resp->msg, json({{"ok", true}}));
}

TEST(Protocol, PassedFdsReferToTheSameFiles) {
  char tmpl[] = "/tmp/prewarm-protocol-test-XXXXXX";
  const int file_fd = ::mkostemp(tmpl, O_CLOEXEC);
  ASSERT_GE(file_fd, 0);
  UniqueFd file(file_fd);
  ::unlink(tmpl);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd pipe_r(p[0]), pipe_w(p[1]);

  auto sp = socket_pair();
  ASSERT_TRUE(send_message(sp.a.get(), {{"op", "run"}}, {file.get(), pipe_w.get()}).ok());
  auto r = recv_message(sp.b.get());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->msg["op"], "run");
  ASSERT_EQ(r->fds.size(), 2u);

  // In order, new descriptors for the same open files.
  const int originals[] = {file.get(), pipe_w.get()};
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(r->fds[i].valid());
    EXPECT_NE(r->fds[i].get(), originals[i]);
    struct stat want {}, got {};
    ASSERT_EQ(::fstat(originals[i], &want), 0);
    ASSERT_EQ(::fstat(r->fds[i].get(), &got), 0);
    EXPECT_EQ(got.st_dev, want.st_dev) << i;
    EXPECT_EQ(got.st_ino, want.st_ino) << i;
    // Received fds must not leak into the apps the daemon starts.
    EXPECT_TRUE(::fcntl(r->fds[i].get(), F_GETFD) & FD_CLOEXEC) << i;
  }
  // Same open file description: a write through the passed pipe end comes out of ours.
  ASSERT_EQ(::write(r->fds[1].get(), "hi", 2), 2);
  char buf[2];
  ASSERT_EQ(::read(pipe_r.get(), buf, 2), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  // And the file offset is shared.
  ASSERT_EQ(::write(r->fds[0].get(), "abc", 3), 3);
  EXPECT_EQ(::lseek(file.get(), 0, SEEK_CUR), 3);
}

TEST(Protocol, MaximumFdCountArrives) {
  auto sp = socket_pair();
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  for (int i = 0; i < 16; ++i) {
    owned.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(owned.back().valid());
    fds.push_back(owned.back().get());
  }
  ASSERT_TRUE(send_message(sp.a.get(), {{"op", "x"}}, fds).ok());
  auto r = recv_message(sp.b.get());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->fds.size(), 16u);
}

TEST(Protocol, TooManyFdsIsRefusedBeforeSending) {
  auto sp = socket_pair();
  std::vector<int> fds(17, 0);
  EXPECT_FALSE(send_message(sp.a.get(), {{"op", "x"}}, fds).ok());
  // Nothing half-sent: the peer sees a clean hangup, not a message.
  sp.a.reset();
  EXPECT_FALSE(recv_message(sp.b.get()).ok());
}

// Bigger than the socket buffer and than one 64 KiB read: both sides must loop.
TEST(Protocol, LargeMessageSpansManyReads) {
  auto sp = socket_pair();
  std::string blob(1 << 20, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>('a' + i % 26);
  const json msg = {{"blob", blob}, {"tail", "end"}};
  Result<void> sent = make_error(EINVAL, "not run");
  std::thread sender([&] { sent = send_message(sp.a.get(), msg); });
  auto r = recv_message(sp.b.get());
  sender.join();
  ASSERT_TRUE(sent.ok()) << sent.error().describe();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->msg["blob"].get<std::string>().size(), blob.size());
  EXPECT_EQ(r->msg, msg);
}

TEST(Protocol, OversizedMessageIsRefused) {
  auto sp = socket_pair();
  const json msg = {{"blob", std::string(5u << 20, 'x')}};  // over the 4 MiB limit
  Result<void> sent = ok();
  std::thread sender([&] { sent = send_message(sp.a.get(), msg); });
  auto r = recv_message(sp.b.get());
  sp.b.reset();  // unblocks the sender, which then fails with EPIPE
  sender.join();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("too large"), std::string::npos) << r.error().describe();
  EXPECT_FALSE(sent.ok());
}

TEST(Protocol, MalformedJsonIsAnError) {
  for (const char* text : {"{not json}\n", "{\"a\":1\n", "\n", "[1,2,3]\n", "\"just a string\"\n", "42\n"}) {
    auto sp = socket_pair();
    write_raw(sp.a.get(), text);
    auto r = recv_message(sp.b.get());
    EXPECT_FALSE(r.ok()) << "accepted " << text;
  }
}

TEST(Protocol, PeerClosingEarlyIsAnError) {
  {
    auto sp = socket_pair();
    sp.a.reset();
    auto r = recv_message(sp.b.get());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("closed"), std::string::npos) << r.error().describe();
  }
  {
    // Half a message, then a hangup: the valid-looking prefix must not be taken as the message.
    auto sp = socket_pair();
    write_raw(sp.a.get(), "{\"op\":\"status\"}");
    sp.a.reset();
    auto r = recv_message(sp.b.get());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("closed"), std::string::npos) << r.error().describe();
  }
}

TEST(Protocol, SendToAClosedPeerIsAnErrorNotSigpipe) {
  auto sp = socket_pair();
  sp.b.reset();
  EXPECT_FALSE(send_message(sp.a.get(), {{"op", "x"}}).ok());
}

TEST(Protocol, ReceiveFromANonSocketIsAnError) {
  auto null = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  EXPECT_FALSE(recv_message(null.get()).ok());
}

TEST(PeerCredentials, NameThisProcess) {
  auto sp = socket_pair();
  for (int fd : {sp.a.get(), sp.b.get()}) {
    auto c = peer_credentials(fd);
    ASSERT_TRUE(c.ok()) << c.error().describe();
    EXPECT_EQ(c->pid, ::getpid());
    EXPECT_EQ(c->uid, ::geteuid());
    EXPECT_EQ(c->gid, ::getegid());
  }
}

TEST(PeerCredentials, NotASocketIsAnError) {
  auto null = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  auto c = peer_credentials(null.get());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ENOTSOCK);
}

// A listening socket of the given path (a '@' prefix meaning the abstract namespace).
UniqueFd listen_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';
  else len += 1;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0 || ::listen(fd.get(), 4) != 0) return {};
  return fd;
}

TEST(ConnectUnix, AbstractAndPathSockets) {
  char tmpl[] = "/tmp/prewarm-protocol-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string abstract = "@prewarm-protocol-test-" + std::to_string(::getpid());
  for (const std::string& path : {abstract, dir + "/control.sock"}) {
    auto server = listen_unix(path);
    ASSERT_TRUE(server.valid()) << path;
    auto c = connect_unix(path, SOCK_STREAM);
    ASSERT_TRUE(c.ok()) << path << ": " << c.error().describe();
    UniqueFd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn.valid()) << path;
    EXPECT_TRUE(::fcntl(c->get(), F_GETFD) & FD_CLOEXEC);
  }
  EXPECT_FALSE(connect_unix(dir + "/nobody-listens.sock", SOCK_STREAM).ok());
  EXPECT_FALSE(connect_unix("", SOCK_STREAM).ok());
  EXPECT_FALSE(connect_unix("/" + std::string(200, 'x'), SOCK_STREAM).ok());
  fs::remove_all(dir);
}

TEST(Call, SendsTheRequestAndReturnsTheResponse) {
  char tmpl[] = "/tmp/prewarm-protocol-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto server = listen_unix(control_socket_path(dir));
  ASSERT_TRUE(server.valid());
  json seen;
  std::thread daemon([&] {
    UniqueFd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    auto req = recv_message(conn.get());
    if (!req) return;
    seen = req->msg;
    (void)send_message(conn.get(), {{"ok", true}, {"echo", req->msg["op"]}});
  });
  auto r = call(dir, {{"op", "ping"}});
  daemon.join();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(seen, json({{"op", "ping"}}));
  EXPECT_EQ(r->msg, json({{"ok", true}, {"echo", "ping"}}));
  fs::remove_all(dir);
}

// The daemon's reader never blocks: a request trickling in a byte at a time is assembled across
// calls that each return at once, and the fds sent with the first byte are kept.
TEST(MessageReader, AssemblesATrickleWithoutBlocking) {
  auto p = socket_pair();
  ASSERT_EQ(::fcntl(p.b.get(), F_SETFL, O_NONBLOCK), 0);
  MessageReader r(1 << 20);
  auto nothing = r.read_some(p.b.get());
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(*nothing);
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const std::string text = "{\"op\":\"ping\"}\n";
  // The first byte carries an fd, the rest follow one by one.
  ASSERT_EQ(send_with_fd(p.a.get(), text.data(), 1, devnull.get()), 1);
  for (size_t i = 1; i < text.size(); ++i) {
    auto done = r.read_some(p.b.get());
    ASSERT_TRUE(done.ok());
    EXPECT_FALSE(*done);
    write_raw(p.a.get(), text.substr(i, 1));
  }
  auto done = r.read_some(p.b.get());
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE(*done);
  auto m = r.take();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->msg["op"], "ping");
  EXPECT_EQ(m->fds.size(), 1u);
}

TEST(MessageReader, RefusesMoreThanItsLimit) {
  auto p = socket_pair();
  ASSERT_EQ(::fcntl(p.b.get(), F_SETFL, O_NONBLOCK), 0);
  MessageReader r(100);
  write_raw(p.a.get(), std::string(200, 'x'));
  EXPECT_FALSE(r.read_some(p.b.get()).ok());
}

// A reply larger than the socket buffer goes out in pieces, never waiting for the reader.
TEST(MessageWriter, WritesWhatFitsAndReturns) {
  auto p = socket_pair();
  ASSERT_EQ(::fcntl(p.a.get(), F_SETFL, O_NONBLOCK), 0);
  MessageWriter w(json{{"blob", std::string(4 << 20, 'y')}}, {});
  auto first = w.write_some(p.a.get());
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(*first);  // the peer has not read yet
  std::thread reader([&] { EXPECT_TRUE(recv_message(p.b.get()).ok()); });
  bool done = false;
  for (int i = 0; i < 20000 && !done; ++i) {
    auto r = w.write_some(p.a.get());
    ASSERT_TRUE(r.ok());
    done = *r;
    if (!done) ::usleep(100);
  }
  reader.join();
  EXPECT_TRUE(done);
}

// The peer is bound by its process, not its pid number: a peer that has exited yields no pidfd.
TEST(PeerPidfd, LivePeerAndGonePeer) {
  auto p = socket_pair();
  auto cred = peer_credentials(p.a.get());
  ASSERT_TRUE(cred.ok());
  auto pidfd = peer_pidfd(p.a.get(), *cred);
  ASSERT_TRUE(pidfd.ok()) << pidfd.error().describe();
  EXPECT_TRUE(process_alive(pidfd->get()));

  // A pair made by a child that then exits: its peer credentials name a process that is gone.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd ours(sv[0]);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int s2[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, s2) != 0) ::_exit(1);
    ::_exit(send_with_fd(sv[1], "x", 1, s2[0]) == 1 ? 0 : 1);
  }
  ::close(sv[1]);
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ASSERT_EQ(::recvmsg(ours.get(), &mh, MSG_CMSG_CLOEXEC), 1);
  int raw = -1;
  std::memcpy(&raw, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof raw);
  UniqueFd theirs(raw);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto gone_cred = peer_credentials(theirs.get());
  ASSERT_TRUE(gone_cred.ok());
  EXPECT_EQ(gone_cred->pid, child);
  EXPECT_FALSE(peer_pidfd(theirs.get(), *gone_cred).ok());
}

// A stopped prewarmd (a socket that is never answered) holds a caller for the timeout only.
TEST(Call, GivesUpAfterItsTimeout) {
  const std::string dir = fs::temp_directory_path() / ("prewarm-call-timeout-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string path = control_socket_path(dir);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = call(dir, {{"op", "ping"}}, {}, 300);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIMEDOUT);
  EXPECT_GE(ms, 250);  // it did wait for an answer, and then stopped
  fs::remove_all(dir);
}

TEST(RuntimeDir, FromTheEnvironmentElseRun) {
  const char* saved = std::getenv("PREWARM_RUNTIME_DIR");
  const std::string old = saved ? saved : "";
  ::unsetenv("PREWARM_RUNTIME_DIR");
  EXPECT_EQ(runtime_dir(), "/run/prewarm");
  ::setenv("PREWARM_RUNTIME_DIR", "", 1);
  EXPECT_EQ(runtime_dir(), "/run/prewarm");
  ::setenv("PREWARM_RUNTIME_DIR", "/tmp/pw", 1);
  EXPECT_EQ(runtime_dir(), "/tmp/pw");
  EXPECT_EQ(control_socket_path("/tmp/pw"), "/tmp/pw/control.sock");
  EXPECT_EQ(notify_socket_path("/tmp/pw"), "/tmp/pw/notify.sock");
  if (saved) ::setenv("PREWARM_RUNTIME_DIR", old.c_str(), 1);
  else ::unsetenv("PREWARM_RUNTIME_DIR");
}

}  // namespace
}  // namespace prewarm::proto
