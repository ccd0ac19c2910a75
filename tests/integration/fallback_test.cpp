// The two ways of finding pages make the same image: one process, dumped back to back with
// PAGEMAP_SCAN and with the pagemap fallback forced, gives the same page runs with the same
// contents (XXH3 per run), as root (zero pages known by frame) and as nobody (frames hidden: zero pages are
// read and then recognised by content), and the fallback's image restores.
#include <sys/stat.h>

#include <cstdlib>

#include "harness.h"
#include "snapshot/image.h"

namespace prewarm::test {
namespace {

const std::vector<std::string> kAsNobody = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                            "--clear-groups"};

std::vector<std::string> with(const std::vector<std::string>& prefix, std::vector<std::string> argv) {
  argv.insert(argv.begin(), prefix.begin(), prefix.end());
  return argv;
}

// Dumps `pid` into DIR/scan and DIR/pagemap (as `runner`'s user) and compares the two images.
void dump_both_ways_and_compare(pid_t pid, const TempDir& dir, const std::vector<std::string>& runner) {
  const char* saved = std::getenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  const std::string old = saved ? saved : "";
  for (const char* way : {"scan", "pagemap"}) {
    if (std::string(way) == "pagemap") ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", "1", 1);
    else ::unsetenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
    auto d = run(with(runner, {PREWARM_BIN, "dump", "--pid", std::to_string(pid), "--images", dir / way}), {}, 60s);
    if (d.code == 3 && d.err.find("threads") != std::string::npos)
      GTEST_SKIP() << "the app has more than one thread here; its dump was refused, as it must be";
    ASSERT_EQ(d.code, 0) << way << ": " << d.err;
    const std::string want = std::string("found with ") + (std::string(way) == "scan" ? "" : "pagemap)");
    EXPECT_NE(d.err.find(want), std::string::npos) << way << ": " << d.err;
  }
  if (saved) ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", old.c_str(), 1);
  else ::unsetenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  auto a = load_image((dir / "scan").string());
  auto b = load_image((dir / "pagemap").string());
  ASSERT_TRUE(a.ok()) << a.error().describe();
  ASSERT_TRUE(b.ok()) << b.error().describe();
  auto mapping_of = [&](uint64_t addr) -> std::string {
    for (const auto& m : a->snap.mappings())
      if (m.start() <= addr && addr < m.end()) return m.name().empty() ? "anonymous" : m.name();
    return "no mapping";
  };
  // The kernel writes the thread's current CPU into its rseq area whenever it runs elsewhere,
  // so that run's bytes may differ between two dumps whichever way the pages were found.
  const uint64_t rseq = a->snap.task().rseq_area();
  ASSERT_EQ(a->snap.page_runs_size(), b->snap.page_runs_size());
  int compared = 0;
  for (int i = 0; i < a->snap.page_runs_size(); ++i) {
    const auto &x = a->snap.page_runs(i), &y = b->snap.page_runs(i);
    ASSERT_EQ(x.addr(), y.addr()) << "run " << i;
    ASSERT_EQ(x.len(), y.len()) << "run " << i;
    if (rseq != 0 && x.addr() <= rseq && rseq < x.addr() + x.len()) continue;
    EXPECT_EQ(x.xxh3(), y.xxh3()) << "run " << i << " at 0x" << std::hex << x.addr() << " in "
                                  << mapping_of(x.addr()) << ": different contents";
    ++compared;
  }
  EXPECT_GE(compared, a->snap.page_runs_size() - 1);
  EXPECT_EQ(a->snap.pages_img_size(), b->snap.pages_img_size());
}

class Fallback : public DumpTest {};

TEST_F(Fallback, PatternProgramGivesTheSameImageBothWaysAsRoot) {
  TempDir dir;
  auto [c, ready] = start_pattern();
  dump_both_ways_and_compare(c.pid(), dir, {});
}

TEST_F(Fallback, PythonAppGivesTheSameImageBothWaysAsNobodyAndRestores) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the app and the dump as nobody";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no setpriv";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  Child app = Child::spawn(with(kAsNobody, {"/usr/bin/env", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1",
                                            "/usr/bin/python3", SYMPY_NUMPY_PY}));
  auto ready = app.read_line();
  ASSERT_TRUE(ready && ready->starts_with("ready")) << app.leftovers();
  ASSERT_TRUE(wait_blocked_in_stdin_read(app.pid()));
  dump_both_ways_and_compare(app.pid(), dir, kAsNobody);
  if (IsSkipped() || HasFatalFailure()) return;
  // The fallback's image is a working one: restored as nobody, the app answers.
  auto r = run(with(kAsNobody, {PREWARM_BIN, "restore", "--images", dir / "pagemap"}), "1001\n", 60s);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("factors=[(7, 1), (11, 1), (13, 1)] sum=501501"), std::string::npos) << r.out << r.err;
}

// Without the capability to list a shared anonymous mapping's object (map_files), the dump reads
// the whole mapping: the pages this process does not map come back too, and the page never
// written is then in the original's object (the cost README's "What a restore carries" names).
TEST_F(Fallback, SharedAnonymousPagesAsNobody) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the app and the dump as nobody";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no setpriv";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  Child app = Child::spawn(with(kAsNobody, {PROG_shared_anon}));
  auto ready = app.read_line();
  ASSERT_TRUE(ready && ready->starts_with("ready")) << app.leftovers();
  ASSERT_TRUE(wait_blocked_in_stdin_read(app.pid()));
  auto d = run(with(kAsNobody, {PREWARM_BIN, "dump", "--pid", std::to_string(app.pid()), "--images", dir / "img"}), {}, 60s);
  ASSERT_EQ(d.code, 0) << d.err;
  auto r = run(with(kAsNobody, {PREWARM_BIN, "restore", "--images", dir / "img"}), "go\n", 60s);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("answer ab0d last=d"), std::string::npos) << r.out << r.err;
  app.write("go\n");
  EXPECT_EQ(app.read_line(), "answer ab0d last=d hole_in_object=1");
  EXPECT_EQ(app.wait(), 0);
}

}  // namespace
}  // namespace prewarm::test
