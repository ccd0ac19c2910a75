// The engine through the real CLI: dump, restore in place, refusal of what cannot be restored,
// --kill, and restore failures that must stay on the launcher's side of the point of no return.
#include <sys/stat.h>

#include <fstream>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

class Engine : public DumpTest {};

bool traced(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("TracerPid:")) return std::stoi(line.substr(10)) != 0;
  return false;
}

TEST_F(Engine, PatternSurvivesRoundTrip) {
  TempDir dir;
  auto [orig, ready] = start_pattern();
  const auto before = layout(orig.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(orig.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_TRUE(fs::exists(dir / "img/snapshot.pb") && fs::exists(dir / "img/pages.img"));

  // The original goes on with its own input.
  orig.write("original\n");
  auto line = orig.read_line();
  ASSERT_TRUE(line) << orig.leftovers();
  EXPECT_EQ(*line, "token=" + ready["token"] + " sum=" + ready["sum"] + " pid=" + ready["pid"] +
                       " input=original");
  EXPECT_EQ(orig.wait(), 0);

  // The restored one has the same memory, the launcher's pid, and the launcher's stdin.
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  const auto diff = layout_diff(before, layout(restored.pid()));
  EXPECT_TRUE(diff.empty()) << "mappings or fds differ after restore:\n" << diff;
  restored.write("restored\n");
  line = restored.read_line();
  ASSERT_TRUE(line) << restored.leftovers();
  EXPECT_EQ(*line, "token=" + ready["token"] + " sum=" + ready["sum"] +
                       " pid=" + std::to_string(restored.pid()) + " input=restored");
  EXPECT_NE(std::to_string(restored.pid()), ready["pid"]);
  EXPECT_EQ(restored.wait(), 0);
}

TEST_F(Engine, DumpedProcessKeepsRunning) {
  TempDir dir;
  auto [orig, ready] = start_pattern();
  // Dumping twice also shows the first dump let go of the process.
  for (const char* img : {"img1", "img2"}) {
    auto dump = prewarm({"dump", "--pid", std::to_string(orig.pid()), "--images", dir / img});
    ASSERT_EQ(dump.code, 0) << dump.err;
    EXPECT_FALSE(traced(orig.pid()));
  }
  orig.write("still-here\n");
  auto line = orig.read_line();
  ASSERT_TRUE(line) << orig.leftovers();
  EXPECT_EQ(fields(*line)["sum"], ready["sum"]);
  EXPECT_EQ(fields(*line)["input"], "still-here");
  EXPECT_EQ(orig.wait(), 0);
}

// A second thread no longer refuses a dump: both threads come back (features_test has the rest).
TEST_F(Engine, TwoThreadProcessRoundTrips) {
  TempDir dir;
  Child c = Child::spawn({PROG_threads});
  ASSERT_TRUE(c.read_line()) << c.leftovers();
  auto dump = prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  Child r = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(r.pid())) << r.leftovers();
  int threads = 0;
  for ([[maybe_unused]] const auto& t : fs::directory_iterator("/proc/" + std::to_string(r.pid()) + "/task")) ++threads;
  EXPECT_EQ(threads, 2);
  r.write("restored\n");
  EXPECT_EQ(r.read_line(), "input=restored");
  EXPECT_EQ(r.wait(), 0);
  c.write("original\n");
  EXPECT_EQ(c.read_line(), "input=original");
  EXPECT_EQ(c.wait(), 0);
}

TEST_F(Engine, DumpKillEndsTheProcess) {
  TempDir dir;
  auto [orig, ready] = start_pattern();
  auto dump = prewarm({"dump", "--pid", std::to_string(orig.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_EQ(orig.wait(5s), 128 + SIGKILL);

  Child restored = restore(dir / "img");
  restored.write("after kill\n");
  auto line = restored.read_line();
  ASSERT_TRUE(line) << restored.leftovers();
  EXPECT_EQ(fields(*line)["sum"], ready["sum"]);
  EXPECT_EQ(restored.wait(), 0);
}

// File names are bytes on Linux: an executable whose name is not UTF-8 (its mappings, comm and
// exe path all carry it) must survive the manifest, and `inspect --json` must still print.
TEST_F(Engine, ExecutableWithANonUtf8NameRoundTrips) {
  TempDir dir;
  const fs::path exe = dir / "pattern-\xff\xfe";
  fs::copy_file(PROG_pattern, exe);
  auto [orig, ready] = start_pattern(exe);
  auto dump = prewarm({"dump", "--pid", std::to_string(orig.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  auto inspect = prewarm({"inspect", "--images", dir / "img", "--json"});
  EXPECT_EQ(inspect.code, 0) << inspect.err;

  Child restored = restore(dir / "img");
  restored.write("bytes\n");
  auto line = restored.read_line();
  ASSERT_TRUE(line) << restored.leftovers();
  EXPECT_EQ(fields(*line)["sum"], ready["sum"]);
  EXPECT_EQ(restored.wait(), 0);
}

TEST_F(Engine, RestoreOfMissingImageFails) {
  TempDir dir;
  auto r = run({PREWARM_BIN, "restore", "--images", dir / "nothing-here"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nothing-here"), std::string::npos) << r.err;
}

TEST_F(Engine, RestoreOfGarbageImageFails) {
  TempDir dir;
  fs::create_directory(dir / "img");
  std::ofstream(dir / "img/snapshot.pb") << "this is not a protobuf message\x01\x02\xff";
  std::ofstream(dir / "img/pages.img") << std::string(4096, 'x');
  auto r = run({PREWARM_BIN, "restore", "--images", dir / "img"}, "input\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find((dir / "img").string()), std::string::npos) << r.err;
}

TEST_F(Engine, RestoreOfTruncatedPagesFails) {
  TempDir dir;
  auto [orig, ready] = start_pattern();
  auto dump = prewarm({"dump", "--pid", std::to_string(orig.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  fs::resize_file(dir / "img/pages.img", fs::file_size(dir / "img/pages.img") / 2);
  auto r = run({PREWARM_BIN, "restore", "--images", dir / "img"}, "input\n");
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find((dir / "img").string()), std::string::npos) << r.err;
}

}  // namespace
}  // namespace prewarm::test
