// Real runtimes restored by the engine: node (libuv's epoll and eventfds, its worker threads, a
// timer) and an OpenJDK program (JIT and GC threads, a thread pool), each dumped once ready and
// restored twice. Every restore has the original's threads and gives the original's answer.
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

void restored_twice_with_the_same_answer(const std::vector<std::string>& argv, const std::string& input) {
  TempDir dir;
  Child original = Child::spawn(argv);
  auto ready = original.read_line(60s);
  ASSERT_TRUE(ready && ready->starts_with("ready")) << original.leftovers();
  // Ready is printed before the runtime waits on stdin: let its threads settle there.
  std::this_thread::sleep_for(300ms);
  const int threads = thread_count(original.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  RunResult want = original.communicate(input, 60s);
  ASSERT_EQ(want.code, 0) << want.err;
  ASSERT_TRUE(want.out.starts_with("answer=")) << want.out;
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE("restore " + std::to_string(i));
    Child restored = restore(dir / "img");
    bool all = false;
    for (int w = 0; w < 200 && !all; ++w, std::this_thread::sleep_for(50ms)) all = thread_count(restored.pid()) == threads;
    EXPECT_TRUE(all) << "restored with " << thread_count(restored.pid()) << " threads, the original had " << threads;
    RunResult got = restored.communicate(input, 60s);
    EXPECT_EQ(got.code, 0) << got.err;
    EXPECT_EQ(got.out, want.out);
  }
}

TEST(Runtimes, Node) {
  if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/node (.ci/install-deps installs nodejs)";
  restored_twice_with_the_same_answer({"/usr/bin/node", RUNTIME_APP_JS}, "12345\n");
}

// hsperfdata is a shared mapping of a file named by the pid, which the original removes at its
// exit: -XX:-UsePerfData keeps the JVM's counters in its own memory (README, Limits).
TEST(Runtimes, OpenJdk) {
  if (std::string(JAVA_APP_DIR).empty()) GTEST_SKIP() << "no JDK at build time (.ci/install-deps installs openjdk-17-jdk-headless)";
  restored_twice_with_the_same_answer({JAVA_EXECUTABLE, "-XX:-UsePerfData", "-cp", JAVA_APP_DIR, "RuntimeApp"}, "12345\n");
}

}  // namespace
}  // namespace prewarm::test
