// Tests that the /proc/PID/stat and status parsers pick the right fields, on sample text and on this
// process, whose true values the test sets up or learns from the kernel another way.
#include "snapshot/proc_state.h"

#include <signal.h>
#include <sys/auxv.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "snapshot/proc_maps.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

// A stat line whose field n (1-based, as in proc(5)) is n * 1000, so a field read from the
// wrong position shows up as the wrong number. The command name holds spaces and ')'.
std::string synthetic_stat(int fields, int bad_field = 0) {
  std::string s = "4242 (we ird) )name) S";
  for (int n = 4; n <= fields; ++n)
    s += " " + (n == bad_field ? std::string("x1") : std::to_string(n * 1000));
  return s + "\n";
}

TEST(ParseStatMm, ReadsTheMmFieldsByPosition) {
  auto r = parse_stat_mm(synthetic_stat(52));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->start_code, 26000u);
  EXPECT_EQ(r->end_code, 27000u);
  EXPECT_EQ(r->start_stack, 28000u);
  EXPECT_EQ(r->start_data, 45000u);
  EXPECT_EQ(r->end_data, 46000u);
  EXPECT_EQ(r->start_brk, 47000u);
  EXPECT_EQ(r->arg_start, 48000u);
  EXPECT_EQ(r->arg_end, 49000u);
  EXPECT_EQ(r->env_start, 50000u);
  EXPECT_EQ(r->env_end, 51000u);
}

TEST(ParseStatMm, RefusesTooFewFields) {
  auto r = parse_stat_mm(synthetic_stat(50));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("fields"), std::string::npos) << r.error().message;
}

TEST(ParseStatMm, RefusesTextWithoutCommandName) {
  auto r = parse_stat_mm("4242 cat S 1 2 3\n");
  ASSERT_FALSE(r.ok());
}

// Result<T> is the error channel; a malformed field must come back as an error, not an exception.
TEST(ParseStatMm, MalformedNumberIsAnErrorNotAnException) {
  try {
    auto r = parse_stat_mm(synthetic_stat(52, 26));
    EXPECT_FALSE(r.ok());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "parse_stat_mm threw " << e.what() << " instead of returning an error";
  }
}

TEST(ReadMmLayout, MatchesThisProcess) {
  auto r = read_mm_layout(::getpid());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  // This function is code of the main executable.
  auto here = reinterpret_cast<uint64_t>(&synthetic_stat);
  EXPECT_LE(r->start_code, here);
  EXPECT_LT(here, r->end_code);

  // The kernel serves /proc/self/cmdline and environ from exactly these ranges.
  auto cmdline = read_file("/proc/self/cmdline");
  auto environ_text = read_file("/proc/self/environ");
  ASSERT_TRUE(cmdline.ok());
  ASSERT_TRUE(environ_text.ok());
  EXPECT_EQ(r->arg_end - r->arg_start, cmdline->size());
  EXPECT_EQ(r->env_end - r->env_start, environ_text->size());

  auto maps = read_maps(0);
  ASSERT_TRUE(maps.ok());
  bool stack_found = false;
  for (const auto& vma : *maps) {
    if (vma.name == "[stack]") {
      stack_found = true;
      EXPECT_LE(vma.start, r->start_stack);
      EXPECT_LT(r->start_stack, vma.end);
    }
    if (vma.name == "[heap]") {
      EXPECT_EQ(vma.start, r->start_brk);
    }
  }
  EXPECT_TRUE(stack_found);
}

const char* const kStatus =
    "Name:\tweb content\n"
    "Umask:\t0027\n"
    "State:\tS (sleeping)\n"
    "Tgid:\t4242\n"
    "Pid:\t4242\n"
    "PPid:\t1\n"
    "TracerPid:\t0\n"
    "Uid:\t1000\t1001\t1002\t1003\n"
    "Gid:\t1000\t1000\t1000\t1000\n"
    "Groups:\t24 25 \n"
    "VmPeak:\t    5484 kB\n"
    "Threads:\t3\n"
    "SigQ:\t0/62720\n"
    "SigPnd:\t0000000000000200\n"
    "ShdPnd:\t0000000000000100\n"
    "SigBlk:\t0000000000010000\n"
    "SigIgn:\t0000000000001000\n"
    "SigCgt:\t0000000180004002\n"
    "CapInh:\t0000000000000000\n"
    "Cpus_allowed_list:\t0-1\n";

TEST(ParseStatus, ReadsEveryField) {
  auto r = parse_status(kStatus);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->name, "web content");
  EXPECT_EQ(r->umask, 027u);
  EXPECT_EQ(r->uid, 1000u);
  EXPECT_EQ(r->threads, 3);
  EXPECT_EQ(r->sig_pending, 0x200u);
  EXPECT_EQ(r->shd_pending, 0x100u);
  EXPECT_EQ(r->sig_blocked, 0x10000u);
  EXPECT_EQ(r->sig_ignored, 0x1000u);
  EXPECT_EQ(r->sig_caught, 0x180004002u);
}

TEST(ParseStatus, RefusesTextWithoutThreads) {
  std::string text = kStatus;
  text.erase(text.find("Threads:"), std::strlen("Threads:\t3\n"));
  EXPECT_FALSE(parse_status(text).ok());
}

TEST(ParseStatus, RefusesMalformedSignalMask) {
  std::string text = kStatus;
  text.replace(text.find("0000000000010000"), 16, "00000000000zz000");
  EXPECT_FALSE(parse_status(text).ok());
}

// Result<T> is the error channel; a malformed field must come back as an error, not an exception.
TEST(ParseStatus, MalformedThreadCountIsAnErrorNotAnException) {
  std::string text = kStatus;
  text.replace(text.find("Threads:\t3"), std::strlen("Threads:\t3"), "Threads:\tmany");
  try {
    auto r = parse_status(text);
    EXPECT_FALSE(r.ok());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "parse_status threw " << e.what() << " instead of returning an error";
  }
}

TEST(ReadStatus, MatchesWhatThisProcessSetUp) {
  const mode_t old_umask = ::umask(0037);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(::sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
  struct sigaction ignore {}, old_usr2 {}, catch_winch {}, old_winch {};
  ignore.sa_handler = SIG_IGN;
  catch_winch.sa_handler = [](int) {};
  ASSERT_EQ(::sigaction(SIGUSR2, &ignore, &old_usr2), 0);
  ASSERT_EQ(::sigaction(SIGWINCH, &catch_winch, &old_winch), 0);

  auto r = read_status(::getpid());

  ::sigaction(SIGWINCH, &old_winch, nullptr);
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::umask(old_umask);

  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto comm = read_file("/proc/self/comm");
  ASSERT_TRUE(comm.ok());
  EXPECT_EQ(r->name + "\n", *comm);
  EXPECT_EQ(r->umask, 0037u);
  EXPECT_EQ(r->uid, ::getuid());
  EXPECT_EQ(r->threads, count_threads(::getpid()));
  EXPECT_TRUE(r->sig_blocked & (1ull << (SIGUSR1 - 1)));
  EXPECT_FALSE(r->sig_blocked & (1ull << (SIGUSR2 - 1)));
  EXPECT_TRUE(r->sig_ignored & (1ull << (SIGUSR2 - 1)));
  EXPECT_FALSE(r->sig_ignored & (1ull << (SIGWINCH - 1)));
  EXPECT_TRUE(r->sig_caught & (1ull << (SIGWINCH - 1)));
}

TEST(CountThreads, CountsASecondThread) {
  const int before = count_threads(::getpid());
  ASSERT_GE(before, 1);
  std::promise<void> release;
  std::thread t([f = release.get_future()]() mutable { f.wait(); });
  const int during = count_threads(::getpid());
  release.set_value();
  t.join();
  EXPECT_EQ(during, before + 1);
  EXPECT_LT(count_threads(1 << 30), 0);
}

TEST(ReadAuxv, HoldsThisProcessesPageSize) {
  auto r = read_auxv(::getpid());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  ASSERT_EQ(r->size() % 16, 0u);
  bool found = false;
  for (size_t i = 0; i + 16 <= r->size(); i += 16) {
    uint64_t type = 0, value = 0;
    std::memcpy(&type, r->data() + i, 8);
    std::memcpy(&value, r->data() + i + 8, 8);
    if (type == AT_PAGESZ) {
      found = true;
      EXPECT_EQ(value, ::getauxval(AT_PAGESZ));
    }
  }
  EXPECT_TRUE(found);
}

TEST(ReadCwd, FollowsChdir) {
  char dir[] = "/tmp/prewarm-cwd-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  char old[PATH_MAX];
  ASSERT_NE(::getcwd(old, sizeof old), nullptr);
  ASSERT_EQ(::chdir(dir), 0);
  auto r = read_cwd(::getpid());
  ASSERT_EQ(::chdir(old), 0);
  ::rmdir(dir);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  char* real = ::realpath(dir, nullptr);  // /tmp may itself be a symlink
  EXPECT_TRUE(*r == dir || (real != nullptr && *r == real)) << *r;
  std::free(real);
}

TEST(ReadPersonality, SeesAFlagThisProcessSet) {
  const int old = ::personality(0xffffffff);
  ASSERT_GE(old, 0);
  ASSERT_GE(::personality(static_cast<unsigned long>(old) | ADDR_NO_RANDOMIZE), 0);
  auto r = read_personality(::getpid());
  ::personality(static_cast<unsigned long>(old));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(*r, static_cast<uint32_t>(old) | ADDR_NO_RANDOMIZE);
}

TEST(ReadExePath, IsTheRunningBinary) {
  auto r = read_exe_path(::getpid());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  struct stat by_path {}, by_proc {};
  ASSERT_EQ(::stat(r->c_str(), &by_path), 0) << *r;
  ASSERT_EQ(::stat("/proc/self/exe", &by_proc), 0);
  EXPECT_EQ(by_path.st_ino, by_proc.st_ino);
  EXPECT_EQ(by_path.st_dev, by_proc.st_dev);
  EXPECT_NE(r->find("proc_state_test"), std::string::npos) << *r;
}

}  // namespace
}  // namespace prewarm
