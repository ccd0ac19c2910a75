// Lazy restore (prewarm restore --lazy): the app resumes before its anonymous memory is read, a
// server thread of its own fills it through userfaultfd. Each test restores tests/progs/lazy_mem
// and has it meet pages not yet filled first thing: every byte must be the snapshot's (zeros where
// the app dropped them since), or the app must be dead, never running on with zeros.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool wait_server_gone(pid_t pid, std::chrono::milliseconds timeout = kTimeout) {
  const auto deadline = Clock::now() + timeout;
  while (lazy_server_tid(pid) != 0)
    if (Clock::now() > deadline) return false;
    else std::this_thread::sleep_for(2ms);
  return true;
}

// What lazy restore needs from this process: a userfaultfd that also serves kernel-mode faults.
std::string full_uffd_missing() {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) {
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC), ::close(dev);
  }
  if (fd < 0) return std::string("no userfaultfd serving kernel-mode faults here: ") + std::strerror(errno);
  ::close(fd);
  return "";
}

class Lazy : public DumpTest {
 protected:
  void SetUp() override {
    DumpTest::SetUp();
    if (IsSkipped()) return;
    if (auto why = full_uffd_missing(); !why.empty()) GTEST_SKIP() << why;
    ::setenv("PREWARM_TRACE", "1", 1);  // the server's summary line: proof that it ran
  }
  void TearDown() override { ::unsetenv("PREWARM_TRACE"); }

  // lazy_mem dumped, then restored lazily; the restored process blocked in read(0).
  struct Restored {
    Child original;
    std::vector<std::string> before;
    Child restored;
  };
  Restored restore_lazily(const TempDir& dir, const std::vector<std::string>& argv) {
    auto [original, ready] = start_ready(argv);
    auto before = layout(original.pid());
    auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
    if (dump.code != 0) throw std::runtime_error("dump exit " + std::to_string(dump.code) + ": " + dump.err);
    Child restored = Child::spawn({PREWARM_BIN, "restore", "--lazy", "--images", (dir / "img").string()});
    return {std::move(original), std::move(before), std::move(restored)};
  }
};

// A few hundred MiB, and syscalls (write(2) from, read(2) into) pages not yet filled, first.
TEST_F(Lazy, EveryByteAfterRestore) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "256"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  r.restored.write("check\n");
  auto line = r.restored.read_line();
  ASSERT_TRUE(line) << r.restored.leftovers();
  EXPECT_EQ(*line, "ok check");
  EXPECT_EQ(r.restored.wait(), 0);
  // Lazy indeed; the server's own summary may not come: the app can exit once it has read every
  // byte, before the server has counted the last page in (seen once in a full run).
  const std::string err = r.restored.leftovers();
  EXPECT_NE(err.find(" mappings left to the page server"), std::string::npos) << err;
}

// Once every page is in, nothing of the server remains: the same mappings and fds as the
// original (no extra thread, no DONTFORK, no registration left).
TEST_F(Lazy, NothingLeftWhenDone) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "32"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  ASSERT_TRUE(wait_server_gone(r.restored.pid()));
  EXPECT_EQ(layout_diff(r.before, layout(r.restored.pid())), "");
  const std::string smaps = read_text("/proc/" + std::to_string(r.restored.pid()) + "/smaps");
  EXPECT_EQ(smaps.find(" um"), std::string::npos) << "a userfaultfd registration is left";
  r.restored.write("check\n");
  EXPECT_EQ(r.restored.read_line().value_or(""), "ok check") << r.restored.leftovers();
  EXPECT_EQ(r.restored.wait(), 0);
}

TEST_F(Lazy, Threads) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "128", "4"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  r.restored.write("threads\n");
  EXPECT_EQ(r.restored.read_line().value_or(""), "ok threads=4") << r.restored.leftovers();
  EXPECT_EQ(r.restored.wait(), 0);
}

TEST_F(Lazy, DontneedReadsZeros) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "256"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  r.restored.write("dontneed\n");
  EXPECT_EQ(r.restored.read_line().value_or(""), "ok dontneed") << r.restored.leftovers();
  EXPECT_EQ(r.restored.wait(), 0);
}

TEST_F(Lazy, MremapMunmapMprotect) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "256"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  r.restored.write("remap\n");
  EXPECT_EQ(r.restored.read_line().value_or(""), "ok remap") << r.restored.leftovers();
  EXPECT_EQ(r.restored.wait(), 0);
}

// A fork while pages are owed: the child has no copy of the lazy mappings (it would read zeros
// there), so it dies on its first touch; it must never run on with wrong memory (exit1).
TEST_F(Lazy, ForkRightAfterRestore) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "256"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  const bool owed = lazy_server_tid(r.restored.pid()) != 0;
  r.restored.write("fork\n");
  const std::string line = r.restored.read_line().value_or("");
  EXPECT_EQ(r.restored.wait(), 0) << r.restored.leftovers();
  if (owed)
    EXPECT_TRUE(line == "ok fork child=signal11" || line == "ok fork child=exit0") << line;
  else
    EXPECT_EQ(line, "ok fork child=exit0");
  EXPECT_NE(line, "ok fork child=exit1");
}

// After the server is done a fork is an ordinary one: the child has every byte.
TEST_F(Lazy, ForkAfterDone) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "64"});
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.restored.pid())) << r.restored.leftovers();
  ASSERT_TRUE(wait_server_gone(r.restored.pid()));
  r.restored.write("fork\n");
  EXPECT_EQ(r.restored.read_line().value_or(""), "ok fork child=exit0") << r.restored.leftovers();
  EXPECT_EQ(r.restored.wait(), 0);
}

// SIGKILL to the server thread alone kills the whole app (a fatal signal ends the thread
// group), so it cannot go on with pages missing.
TEST_F(Lazy, ServerKilledKillsApp) {
  TempDir dir;
  auto r = restore_lazily(dir, {PROG_lazy_mem, "512"});
  pid_t tid = 0;
  const auto deadline = Clock::now() + kTimeout;
  while (tid == 0 && Clock::now() < deadline) {
    tid = lazy_server_tid(r.restored.pid());
    if (tid == 0 && r.restored.wait(0ms)) break;
  }
  if (tid == 0) GTEST_SKIP() << "the server finished before this test saw it (a faster machine)";
  ASSERT_EQ(::syscall(SYS_tgkill, r.restored.pid(), tid, SIGKILL), 0) << std::strerror(errno);
  try {
    r.restored.write("check\n");
  } catch (const std::exception&) {
    // The app is dead already (its stdin pipe has no reader): what the test wants to see.
  }
  EXPECT_EQ(r.restored.wait(), 128 + SIGKILL);
  EXPECT_EQ(r.restored.leftovers().find("ok check"), std::string::npos);
}

// A flipped byte in a run is found by the server (eager restore finds it before resuming): the
// app is killed with the reason, before it can answer.
TEST_F(Lazy, CorruptedPageKillsApp) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_lazy_mem, "64"});
  ASSERT_EQ(prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"}).code, 0);
  const fs::path pages = dir / "img" / "pages.img";
  {
    std::fstream f(pages, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = fs::file_size(pages);
    f.seekg(static_cast<std::streamoff>(size / 2));
    char c = 0;
    f.read(&c, 1);
    c ^= 0x40;
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.write(&c, 1);
  }
  Child restored = Child::spawn({PREWARM_BIN, "restore", "--lazy", "--images", (dir / "img").string()});
  restored.write("check\n");
  EXPECT_EQ(restored.wait(), 125);
  const std::string rest = restored.leftovers();
  EXPECT_EQ(rest.find("ok check"), std::string::npos) << rest;
  EXPECT_NE(rest.find("pages.img is corrupted: checksum mismatch"), std::string::npos) << rest;
}

// The runs a lazy launch faults on are kept beside the image (DIR/workingset) and filled first
// by the next one; every byte is still right.
TEST_F(Lazy, WorkingSetRecordedThenFirst) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_lazy_mem, "64"});
  ASSERT_EQ(prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"}).code, 0);
  auto launch = [&](const std::string& what) {
    Child c = Child::spawn({PREWARM_BIN, "restore", "--lazy", "--images", (dir / "img").string()});
    EXPECT_TRUE(wait_blocked_in_stdin_read(c.pid())) << c.leftovers();
    c.write(what + "\n");
    EXPECT_EQ(c.read_line().value_or(""), "ok " + what) << c.leftovers();
    EXPECT_EQ(c.wait(), 0);
    return c.leftovers();
  };
  const std::string first = launch("touch");
  EXPECT_NE(first.find(", 0 of them its working set"), std::string::npos) << first;
  ASSERT_TRUE(fs::exists(dir / "img" / "workingset"));
  EXPECT_GT(fs::file_size(dir / "img" / "workingset"), 16u) << "no run recorded";
  const std::string second = launch("check");
  EXPECT_EQ(second.find(", 0 of them its working set"), std::string::npos) << second;
  EXPECT_NE(second.find("of them its working set, first"), std::string::npos) << second;
}

// A truncated pages.img is refused before the point of no return, lazily or not.
TEST_F(Lazy, TruncatedImageRefused) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_lazy_mem, "16"});
  ASSERT_EQ(prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"}).code, 0);
  const fs::path pages = dir / "img" / "pages.img";
  fs::resize_file(pages, fs::file_size(pages) - 4096);
  auto r = prewarm({"restore", "--lazy", "--images", (dir / "img").string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace prewarm::test
