// Real runtimes restored by the engine: node (libuv's epoll and eventfds, its worker threads, a
// timer), an OpenJDK program (JIT and GC threads, a thread pool), a Go program (goroutines
// preempted by signals), emacs in batch mode (org loaded, a timer) and an IPython shell (its
// history thread), each dumped once ready and restored. Every restore has the image's threads and gives the original's answer.
#include <dirent.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

int thread_count(pid_t pid) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) n += !e.path().empty();
  return n;
}

// The threads an image holds, from `prewarm inspect` ("  threads   N; ...").
int image_threads(const fs::path& img) {
  auto r = prewarm({"inspect", "--images", img});
  const auto at = r.out.find("  threads   ");
  return r.code == 0 && at != std::string::npos ? std::stoi(r.out.substr(at + 12)) : -1;
}

// Dumps argv once ready, restores it `restores` times and checks each restore has the original's
// threads and its answer to `input`. The original answers first, or (an app that writes at exit a
// file it keeps open, which makes later restores refuse) last, with the restores dumped from it.
void restored_with_the_same_answer(const std::vector<std::string>& argv, const std::string& input, int restores = 2,
                                   bool original_first = true) {
  TempDir dir;
  Child original = Child::spawn(argv);
  auto ready = original.read_line(60s);
  ASSERT_TRUE(ready && ready->starts_with("ready")) << original.leftovers();
  // Ready is printed before the runtime waits on stdin: let its threads settle there.
  std::this_thread::sleep_for(300ms);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  // Counted in the image: a runtime may start a thread between a count here and the freeze (Go).
  const int threads = image_threads(dir / "img");
  ASSERT_GT(threads, 0);
  RunResult want;
  if (original_first) {
    want = original.communicate(input, 60s);
    ASSERT_EQ(want.code, 0) << want.err;
    ASSERT_TRUE(want.out.starts_with("answer=")) << want.out;
  }
  std::vector<std::string> answers;
  for (int i = 0; i < restores; ++i) {
    SCOPED_TRACE("restore " + std::to_string(i));
    Child restored = restore(dir / "img");
    // At least the image's: a runtime may start one once it runs (Go's sysmon hands the P of the
    // main goroutine, blocked in read since the snapshot's clock, to a new thread).
    bool all = false;
    for (int w = 0; w < 200 && !all; ++w, std::this_thread::sleep_for(50ms)) all = thread_count(restored.pid()) >= threads;
    ASSERT_TRUE(all) << "restored with " << thread_count(restored.pid()) << " threads, the image holds " << threads
                     << ": " << restored.leftovers();
    RunResult got = restored.communicate(input, 60s);
    EXPECT_EQ(got.code, 0) << got.err;
    answers.push_back(got.out);
  }
  if (!original_first) {
    want = original.communicate(input, 60s);
    ASSERT_EQ(want.code, 0) << want.err;
    ASSERT_TRUE(want.out.starts_with("answer=")) << want.out;
  }
  for (const auto& a : answers) EXPECT_EQ(a, want.out);
}

TEST(Runtimes, Node) {
  if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/node (.ci/install-deps installs nodejs)";
  restored_with_the_same_answer({"/usr/bin/node", RUNTIME_APP_JS}, "12345\n");
}

// fs.watch: libuv's inotify instance, registered on its epoll, restored with its watch; its
// answer names the events of a file it makes in the watched directory. The original is ended
// first (it would hear the restored one's file too) and a cold run answers last: each answer
// changes the directory, and a directory changed since the snapshot refuses a restore.
TEST(Runtimes, NodeWatchingADirectory) {
  if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/node (.ci/install-deps installs nodejs)";
  TempDir dir, watched;
  const std::vector<std::string> argv{"/usr/bin/node", WATCH_APP_JS, watched.path().string()};
  Child original = Child::spawn(argv);
  auto ready = original.read_line(60s);
  ASSERT_TRUE(ready && ready->starts_with("ready")) << original.leftovers();
  std::this_thread::sleep_for(300ms);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  original.wait();
  EXPECT_NE(prewarm({"inspect", "--images", dir / "img", "--json"}).out.find("FD_INOTIFY"), std::string::npos);
  RunResult got = restore(dir / "img").communicate("7\n", 60s);
  EXPECT_EQ(got.code, 0) << got.err;
  RunResult cold = run(argv, "7\n", 60s);
  ASSERT_EQ(cold.code, 0) << cold.err;
  EXPECT_EQ(cold.out.substr(cold.out.find('\n') + 1), "answer=rename:f7,change:f7\n");
  EXPECT_EQ(got.out, cold.out.substr(cold.out.find('\n') + 1));
}

// hsperfdata is a shared mapping of a file named by the pid, which the original removes at its
// exit: -XX:-UsePerfData keeps the JVM's counters in its own memory (README, Limits).
TEST(Runtimes, OpenJdk) {
  if (std::string(JAVA_APP_DIR).empty()) GTEST_SKIP() << "no JDK at build time (.ci/install-deps installs openjdk-17-jdk-headless)";
  restored_with_the_same_answer({JAVA_EXECUTABLE, "-XX:-UsePerfData", "-cp", JAVA_APP_DIR, "RuntimeApp"}, "12345\n");
}

// In a pid namespace (a container's) tids are small, and a JVM's memory is full of numbers equal
// to them (its JIT's tables): none may be taken for a held lock and rewritten with a new tid. Seen
// with tids from 700: 17 words of the JIT's data rewritten, and on a fresh CI machine a restored
// JVM aborting in malloc. The namespace starts at 699 and the dump and restore run inside it.
TEST(Runtimes, OpenJdkWithSmallTids) {
  if (std::string(JAVA_APP_DIR).empty()) GTEST_SKIP() << "no JDK at build time (.ci/install-deps installs openjdk-17-jdk-headless)";
  const std::vector<std::string> unshare{"/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount-proc"};
  auto probe = unshare;
  probe.push_back("/bin/true");
  if (run(probe).code != 0) GTEST_SKIP() << "cannot make a pid namespace here (unshare --pid --fork --mount-proc failed)";
  TempDir dir;
  auto argv = unshare;
  argv.insert(argv.end(), {PIDNS_ROUND_TRIP_SH, PREWARM_BIN, "699", "12345", dir.path().string(), "--",
                           JAVA_EXECUTABLE, "-XX:-UsePerfData", "-cp", JAVA_APP_DIR, "RuntimeApp"});
  auto r = run(argv, {}, 100s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("cold: answer=8cb2 threads=true\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("restored: answer=8cb2 threads=true\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("tid_words: 0\n"), std::string::npos) << r.out;
}

// The Go runtime caches each thread's id (m.procid) and preempts goroutines with tgkill on it;
// the app's answer needs those signals (a goroutine spins without a call through 20 GCs), so a
// restore that kept the old ids hangs here. Restored threads get their new ids in every m.
TEST(Runtimes, Go) {
  if (std::string(GO_APP).empty()) GTEST_SKIP() << "no Go toolchain at build time (.ci/install-deps installs golang-go)";
  restored_with_the_same_answer({GO_APP}, "123\n", 3);
}

// Loaded at an address of the kernel's choice: the runtime's symbols are found there.
TEST(Runtimes, GoPositionIndependent) {
  if (std::string(GO_APP_PIE).empty()) GTEST_SKIP() << "no Go toolchain at build time (.ci/install-deps installs golang-go)";
  restored_with_the_same_answer({GO_APP_PIE}, "123\n");
}

// Through cgo: threads made by pthread_create (glibc's tid caches and the runtime's), and a
// spare m with no thread in the runtime's list.
TEST(Runtimes, GoWithCgo) {
  if (std::string(GO_APP_CGO).empty()) GTEST_SKIP() << "no Go toolchain at build time (.ci/install-deps installs golang-go)";
  restored_with_the_same_answer({GO_APP_CGO}, "123\n");
}

// Without a symbol table the runtime's list of threads cannot be found: refused by name, and the
// process goes on and answers as it would have.
TEST(Runtimes, GoWithoutSymbolsIsRefusedByName) {
  if (std::string(GO_APP_STRIPPED).empty()) GTEST_SKIP() << "no Go toolchain at build time (.ci/install-deps installs golang-go)";
  TempDir dir;
  Child original = Child::spawn({GO_APP_STRIPPED});
  auto ready = original.read_line(60s);
  ASSERT_TRUE(ready && ready->starts_with("ready")) << original.leftovers();
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find(std::string(GO_APP_STRIPPED) + ": a Go program whose threads' ids cannot be found in its "
                          "runtime (its executable has no symbol table"),
            std::string::npos)
      << dump.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "img"));
  RunResult cold = original.communicate("123\n", 60s);
  EXPECT_EQ(cold.code, 0) << cold.err;
  EXPECT_EQ(cold.out, "answer=40bd spun=1 gc=true\n");
}

// A C program with a Go runtime in a library it loaded: refused naming the library (the ids the
// runtime keeps there are not looked for), and it goes on and answers.
TEST(Runtimes, GoInALibraryIsRefusedByName) {
  if (std::string(GO_LIB).empty()) GTEST_SKIP() << "no Go toolchain at build time (.ci/install-deps installs golang-go)";
  TempDir dir;
  Child original = Child::spawn({C_WITH_GO, GO_LIB});
  auto ready = original.read_line(60s);
  ASSERT_TRUE(ready && ready->starts_with("ready")) << original.leftovers();
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find(std::string(GO_LIB) + ": a Go runtime in a library"), std::string::npos) << dump.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "img"));
  RunResult cold = original.communicate("1\n", 60s);
  EXPECT_EQ(cold.code, 0) << cold.err;
  EXPECT_EQ(cold.out, "answer=1\n");
}

TEST(Runtimes, Emacs) {
  if (::access("/usr/bin/emacs", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/emacs (.ci/install-deps installs emacs-nox)";
  restored_with_the_same_answer({"/usr/bin/emacs", "--batch", "-Q", "-l", EMACS_APP_EL}, "123\n");
}

TEST(Runtimes, IPython) {
  if (run({"/usr/bin/python3", "-c", "import IPython"}).code != 0)
    GTEST_SKIP() << "no IPython for /usr/bin/python3 (.ci/install-deps installs python3-ipython)";
  // Its history database is open at the snapshot and written at every exit: once a restore (or
  // the original) has exited, the file has changed and later restores refuse (README, Limits).
  TempDir ipython_dir;
  restored_with_the_same_answer({"/usr/bin/env", "IPYTHONDIR=" + ipython_dir.path().string(), "/usr/bin/python3",
                                 IPYTHON_APP_PY},
                                "123\n", 1, false);
}

}  // namespace
}  // namespace prewarm::test
