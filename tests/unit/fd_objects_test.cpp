// The fdinfo parsers of snapshot/fd_objects, fed what this kernel prints for this process's own
// objects, and the restore side's objects read back the same way (a round trip without a dump).
#include "snapshot/fd_objects.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "restorer/fd_objects.h"
#include "snapshot/inotify.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::string fdinfo(int fd) {
  auto t = read_file("/proc/self/fdinfo/" + std::to_string(fd));
  EXPECT_TRUE(t.ok());
  return t.ok() ? *t : std::string();
}

TEST(FdinfoParse, Eventfd) {
  UniqueFd fd(::eventfd(41, EFD_CLOEXEC | EFD_SEMAPHORE));
  ASSERT_TRUE(fd.valid());
  auto e = parse_eventfd_fdinfo(fdinfo(fd.get()));
  if (!e.ok() && e.error().message.find("EFD_SEMAPHORE") != std::string::npos)
    GTEST_SKIP() << "this kernel's fdinfo has no eventfd-semaphore line";
  ASSERT_TRUE(e.ok()) << e.error().describe();
  EXPECT_EQ(e->count(), 41u);
  EXPECT_TRUE(e->semaphore());
}

TEST(FdinfoParse, TimerfdAbsoluteAndPeriodic) {
  UniqueFd fd(::timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  itimerspec its{{2, 500}, {now.tv_sec + 100, 0}};
  ASSERT_EQ(::timerfd_settime(fd.get(), TFD_TIMER_ABSTIME, &its, nullptr), 0);
  auto t = parse_timerfd_fdinfo(fdinfo(fd.get()));
  ASSERT_TRUE(t.ok()) << t.error().describe();
  EXPECT_EQ(t->clockid(), CLOCK_REALTIME);
  EXPECT_EQ(t->settime_flags(), static_cast<uint32_t>(TFD_TIMER_ABSTIME));
  EXPECT_GT(t->value_sec(), 90u);  // remaining time, not the absolute deadline
  EXPECT_LE(t->value_sec(), 100u);
  EXPECT_EQ(t->interval_sec(), 2u);
  EXPECT_EQ(t->interval_nsec(), 500u);
  EXPECT_EQ(t->ticks(), 0u);
}

TEST(FdinfoParse, SignalfdMask) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGRTMIN + 3);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto s = parse_signalfd_fdinfo(fdinfo(fd.get()));
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_EQ(s->mask(), (1ull << (SIGUSR2 - 1)) | (1ull << (SIGRTMIN + 3 - 1)));
}

TEST(FdinfoParse, EpollTargets) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  UniqueFd a(::eventfd(0, EFD_CLOEXEC)), b(::eventfd(0, EFD_CLOEXEC));
  epoll_event ev{EPOLLIN | EPOLLET, {.u64 = 0xdeadbeefcafe}};
  ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, a.get(), &ev), 0);
  ev = {EPOLLOUT | EPOLLONESHOT, {.u64 = 7}};
  ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, b.get(), &ev), 0);
  auto e = parse_epoll_fdinfo(fdinfo(ep.get()));
  ASSERT_TRUE(e.ok()) << e.error().describe();
  ASSERT_EQ(e->targets_size(), 2);
  for (const auto& t : e->targets()) {
    if (t.fd() == a.get()) {
      // epoll_ctl always adds EPOLLERR | EPOLLHUP; registering them again changes nothing.
      EXPECT_EQ(t.events(), static_cast<uint32_t>(EPOLLIN | EPOLLET | EPOLLERR | EPOLLHUP));
      EXPECT_EQ(t.data(), 0xdeadbeefcafeull);
    } else {
      EXPECT_EQ(t.fd(), b.get());
      EXPECT_EQ(t.data(), 7u);
    }
  }
  EXPECT_FALSE(parse_epoll_fdinfo("pos:\t0\ntfd: x events: 1 data: 2\n").ok());
}

// As 6.18 prints it (a tmpfs handle of 12 bytes, an ext4 one of 8), out of wd order; and the
// kernel's own, read back from an instance made here.
TEST(FdinfoParse, InotifyWatches) {
  auto m = parse_inotify_fdinfo(
      "pos:\t0\nflags:\t04000\nmnt_id:\t17\nino:\t26\n"
      "inotify wd:3 ino:fad4a sdev:f mask:80000000 ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:4aad0f000000000000000000\n"
      "inotify wd:1 ino:a76002 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0260a70096c1ed39\n");
  ASSERT_TRUE(m.ok()) << m.error().describe();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].wd, 1);
  EXPECT_EQ((*m)[0].ino, 0xa76002u);
  EXPECT_EQ((*m)[0].dev, makedev(254, 0));
  EXPECT_EQ((*m)[0].mask, 0x300u);
  EXPECT_EQ((*m)[0].handle_type, 1);
  EXPECT_EQ((*m)[0].handle, std::string("\x02\x60\xa7\x00\x96\xc1\xed\x39", 8));
  EXPECT_EQ((*m)[1].wd, 3);
  EXPECT_EQ((*m)[1].dev, makedev(0, 15));
  EXPECT_EQ((*m)[1].handle.size(), 12u);
  // Without CONFIG_EXPORTFS there is no handle.
  auto bare = parse_inotify_fdinfo("inotify wd:2 ino:10 sdev:800001 mask:2 ignored_mask:0\n");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ((*bare)[0].dev, makedev(8, 1));
  EXPECT_TRUE((*bare)[0].handle.empty());
  EXPECT_FALSE(parse_inotify_fdinfo("inotify wd:x ino:1 sdev:0 mask:2 ignored_mask:0\n").ok());
  EXPECT_FALSE(parse_inotify_fdinfo("inotify wd:1 ino:1 sdev:0 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:02\n").ok());
  EXPECT_FALSE(parse_inotify_fdinfo("inotify wd:1 ino:1 sdev:0 mask:2 ignored_mask:0\ninotify wd:1 ino:2 sdev:0 mask:2 ignored_mask:0\n").ok());

  UniqueFd in(inotify_init1(IN_CLOEXEC));
  ASSERT_TRUE(in.valid());
  const int wd = inotify_add_watch(in.get(), "/", IN_CREATE | IN_ONESHOT);
  ASSERT_GT(wd, 0);
  struct stat root {};
  ASSERT_EQ(::stat("/", &root), 0);
  auto text = read_file("/proc/self/fdinfo/" + std::to_string(in.get()));
  ASSERT_TRUE(text.ok());
  auto own = parse_inotify_fdinfo(*text);
  ASSERT_TRUE(own.ok()) << own.error().describe();
  ASSERT_EQ(own->size(), 1u);
  EXPECT_EQ((*own)[0].wd, wd);
  EXPECT_EQ((*own)[0].ino, root.st_ino);
  EXPECT_EQ((*own)[0].mask, static_cast<uint32_t>(IN_CREATE | IN_ONESHOT));
}

TEST(FdinfoParse, MissingFieldsAreErrors) {
  EXPECT_FALSE(parse_eventfd_fdinfo("pos:\t0\nflags:\t02\n").ok());
  EXPECT_FALSE(parse_timerfd_fdinfo("clockid: 1\nticks: 0\n").ok());
  EXPECT_FALSE(parse_signalfd_fdinfo("pos:\t0\n").ok());
}

// The launcher's objects, read back through fdinfo: what create_fd_objects makes is what the
// dump side would read again.
TEST(CreateFdObjects, ReadBackThroughFdinfo) {
  pb::Snapshot snap;
  auto* ev = snap.add_files();
  ev->set_fd(5);
  ev->set_kind(pb::FD_EVENTFD);
  ev->set_description(1);
  ev->set_flags(O_RDWR | O_NONBLOCK);
  ev->mutable_eventfd()->set_count(123);
  auto* tf = snap.add_files();
  tf->set_fd(6);
  tf->set_kind(pb::FD_TIMERFD);
  tf->set_description(2);
  auto* t = tf->mutable_timerfd();
  t->set_clockid(CLOCK_MONOTONIC);
  t->set_settime_flags(TFD_TIMER_ABSTIME);
  t->set_value_sec(50);
  t->set_interval_sec(3);
  t->set_ticks(4);
  std::vector<BoundSocketPath> bound;
  auto objects = create_fd_objects(snap, {}, bound);
  ASSERT_TRUE(objects.ok()) << objects.error().describe();
  auto e = parse_eventfd_fdinfo(fdinfo(objects->at(1).get()));
  if (e.ok()) {
    EXPECT_EQ(e->count(), 123u);
  }
  EXPECT_NE(fdinfo(objects->at(1).get()).find("flags:\t02004002"), std::string::npos) << fdinfo(objects->at(1).get());
  auto back = parse_timerfd_fdinfo(fdinfo(objects->at(2).get()));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->settime_flags(), static_cast<uint32_t>(TFD_TIMER_ABSTIME));
  EXPECT_EQ(back->ticks(), 4u);
  EXPECT_LE(back->value_sec(), 50u);
  EXPECT_GT(back->value_sec(), 3u);  // armed at now + 50 s, not at 50 s after boot
  EXPECT_EQ(back->interval_sec(), 3u);
}

// systemd's protocol: the variables count only for the process LISTEN_PID names.
TEST(ListenEnv, ParsedOnlyForTheNamedProcess) {
  auto l = parse_listen_env({"PATH=/bin", "LISTEN_PID=42", "LISTEN_FDS=2", "LISTEN_FDNAMES=web:"}, 42);
  EXPECT_EQ(l.count, 2u);
  EXPECT_EQ(l.names, (std::vector<std::string>{"web", ""}));
  EXPECT_EQ(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=2"}, 43).count, 0u);
  EXPECT_EQ(parse_listen_env({"LISTEN_FDS=2"}, 42).count, 0u);
  EXPECT_EQ(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=0"}, 42).count, 0u);
  EXPECT_EQ(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=-1"}, 42).count, 0u);
  EXPECT_EQ(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=2x"}, 42).count, 0u);
  EXPECT_EQ(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=100000"}, 42).count, 0u);
  EXPECT_TRUE(parse_listen_env({"LISTEN_PID=42", "LISTEN_FDS=1"}, 42).names.empty());
}

// This process's own environment, as /proc/self/environ has it: no LISTEN_PID for it.
TEST(ListenEnv, ReadFromProc) {
  auto l = read_listen_env(::getpid());
  ASSERT_TRUE(l.ok()) << l.error().describe();
  EXPECT_EQ(l->count, 0u);
}

TEST(LaunchSockets, CountAndNamesMustMatch) {
  pb::Snapshot snap;
  EXPECT_EQ(launch_sockets_difference(snap, {}), "");
  EXPECT_NE(launch_sockets_difference(snap, {1, {}})
                .find("the snapshot's launch passed none (LISTEN_FDS), this launch passes 1 socket"),
            std::string::npos);
  snap.mutable_launch_sockets()->set_count(1);
  snap.mutable_launch_sockets()->add_names("web");
  EXPECT_EQ(launch_sockets_difference(snap, {1, {"web"}}), "");
  EXPECT_NE(launch_sockets_difference(snap, {}).find("this launch passes none"), std::string::npos);
  EXPECT_NE(launch_sockets_difference(snap, {1, {"api"}}).find("'web' (LISTEN_FDNAMES), this launch 'api'"),
            std::string::npos);
}

TEST(LaunchSockets, SocketDifferences) {
  pb::SockListener want;
  want.set_family(AF_INET);
  want.set_type(SOCK_STREAM);
  want.set_protocol(IPPROTO_TCP);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(8080);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  want.set_address(std::string(reinterpret_cast<const char*>(&a), sizeof a));
  want.set_listening(true);
  want.set_backlog(128);
  auto* o = want.add_options();
  o->set_level(SOL_SOCKET);
  o->set_name(SO_REUSEADDR);
  o->set_value(1);
  pb::SockListener have = want;
  EXPECT_EQ(passed_socket_difference(want, have), "");
  have.set_backlog(5);
  EXPECT_EQ(passed_socket_difference(want, have), "has a backlog of 5, the snapshot's 128");
  have = want;
  have.mutable_options(0)->set_value(0);
  EXPECT_NE(passed_socket_difference(want, have).find("set to 0, the snapshot's 1"), std::string::npos);
  have = want;
  a.sin_port = htons(8081);
  have.set_address(std::string(reinterpret_cast<const char*>(&a), sizeof a));
  EXPECT_EQ(passed_socket_difference(want, have),
            "is: IPv4 stream listening socket on 127.0.0.1:8081; the snapshot's: IPv4 stream listening socket on "
            "127.0.0.1:8080");
  have = want;
  have.set_type(SOCK_DGRAM);
  have.set_listening(false);
  EXPECT_NE(passed_socket_difference(want, have).find("is: IPv4 datagram socket on"), std::string::npos);
}

}  // namespace
}  // namespace prewarm
