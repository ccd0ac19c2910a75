// One test per feature program (tests/progs/), zdtm style: the program sets up some state and says
// ready, it is snapshotted and restored into a fresh `prewarm restore`, and what it then reports
// shows whether the state came back. Every round trip also compares mappings and fds.
#include <signal.h>

#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <thread>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

class Features : public DumpTest {};

int thread_count(pid_t pid) {
  int n = 0;
  for ([[maybe_unused]] const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) ++n;
  return n;
}

// A shared anonymous mapping's pages are its shmem object's, whether this process maps them or
// not: one dropped by MADV_DONTNEED and one only a child wrote come back (a dump that went by the
// page tables restored both as zeros: "answer a000 last=0"). The mapping starts a page into its
// object. As root the dump lists the object's data, so the page never written stays unallocated
// in the original.
TEST_F(Features, SharedAnonymousPagesNotMappedHereAreKept) {
  TempDir dir;
  auto rt = round_trip({PROG_shared_anon}, dir);
  EXPECT_TRUE(answer(rt.restored, "go").starts_with("answer ab0d last=d hole_in_object="));
  const std::string original = answer(rt.original, "go");
  if (::geteuid() == 0)
    EXPECT_EQ(original, "answer ab0d last=d hole_in_object=0");
  else
    EXPECT_TRUE(original.starts_with("answer ab0d last=d ")) << original;
}

TEST_F(Features, Sigaltstack) {
  TempDir dir;
  auto rt = round_trip({PROG_sigaltstack}, dir);
  ASSERT_EQ(kill(rt.restored.pid(), SIGUSR1), 0);
  ASSERT_EQ(kill(rt.restored.pid(), SIGUSR2), 0);
  EXPECT_EQ(answer(rt.restored, "go"),
            "usr1_runs=1 usr1_on_altstack=1 usr2_pending=1 usr2_blocked=1 altstack_kept=1");
}

// zdtm thp_disable: an app that turned THP off gets no MADV_HUGEPAGE on its large anonymous
// mappings from the restore (VmFlags: neither hg nor nh, as it had them).
TEST_F(Features, ThpDisabledAppGetsNoHugePageAdvice) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode((std::istreambuf_iterator<char>(thp)), {});
  if (mode.empty() || mode.find("[never]") != std::string::npos) GTEST_SKIP() << "no THP on this kernel";
  TempDir dir;
  auto rt = round_trip({PROG_thp_disable}, dir);
  ASSERT_EQ(rt.ready["advice"], "0");
  EXPECT_EQ(answer(rt.restored, "go"), "thp_disable=1 advice=0 byte=7");
}

TEST_F(Features, XmmYmmRegisters) {
  if (!__builtin_cpu_supports("avx")) GTEST_SKIP() << "this CPU has no AVX (ymm registers)";
  TempDir dir;
  auto rt = round_trip({PROG_xmm_ymm}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "xmm=kept ymm=kept read=3 input=go");
}

TEST_F(Features, FileOffset) {
  TempDir dir;
  std::ofstream(dir / "data") << std::string(100, 'a') << std::string(100, 'b') << std::string(100, 'c');
  auto rt = round_trip({PROG_file_offset, dir / "data"}, dir);
  ASSERT_EQ(rt.ready["first"], std::string(100, 'a'));
  EXPECT_EQ(answer(rt.restored, "go"), "fd=" + rt.ready["fd"] + " read=100 next=" +
                                           std::string(100, 'b') + " offset=200 cloexec=1 rdonly=1");
}

TEST_F(Features, CwdUmaskRlimit) {
  TempDir dir;
  fs::create_directory(dir / "cwd");
  auto rt = round_trip({PROG_cwd_umask_rlimit, dir / "cwd"}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "cwd=" + (dir / "cwd").string() + " umask=027 nofile=123/457");
}

TEST_F(Features, VdsoClock) {
  TempDir dir;
  auto rt = round_trip({PROG_vdso_clock}, dir);
  EXPECT_EQ(answer(rt.restored, "go"), "works=1 monotonic=1 agrees_with_syscall=1 vdso_in_maps=1");
}

// Dumped 0.5 s into a 2 s nanosleep. Correct: the original sleeps on undisturbed (the kernel
// restarts its sleep after the freeze); the restored one sleeps at least what was left at the
// snapshot (a restart of the whole 2 s is also fine), whether nanosleep restarts or returns
// EINTR with the remaining time, which the program sleeps again. A lost sleep shows as no line
// within read_line's timeout; there is no tighter upper bound, since the restore's own time on
// top of the sleep depends on the machine and its load.
TEST_F(Features, Nanosleep) {
  TempDir dir;
  Child original = Child::spawn({PROG_nanosleep});
  ASSERT_TRUE(original.read_line()) << original.leftovers();
  const auto slept_from = Clock::now();
  std::this_thread::sleep_for(500ms);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  const auto left_at_dump = 2s - (Clock::now() - slept_from);  // at least this much was left
  EXPECT_EQ(original.read_line(), "woke eintr=0");
  EXPECT_EQ(original.wait(), 0);

  const auto restored_at = Clock::now();
  Child restored = restore(dir / "img");
  auto line = restored.read_line();
  const auto slept = Clock::now() - restored_at;
  ASSERT_TRUE(line) << restored.leftovers();
  EXPECT_TRUE(line == "woke eintr=0" || line == "woke eintr=1") << *line;
  EXPECT_GE(slept, left_at_dump - 50ms);
  EXPECT_EQ(restored.wait(), 0);
}

TEST_F(Features, PerfEventRingIsRefused) {
  TempDir dir;
  Child c = Child::spawn({PROG_perf_event});
  auto ready = c.read_line();
  ASSERT_TRUE(ready) << c.leftovers();
  if (ready->starts_with("skip")) GTEST_SKIP() << *ready;
  auto dump = prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find(fields(*ready)["ring"] + "-"), std::string::npos) << dump.err;
  EXPECT_NE(dump.err.find("anon_inode:[perf_event]"), std::string::npos) << dump.err;
  EXPECT_NE(dump.err.find("pf io"), std::string::npos) << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
  c.write("still running\n");
  EXPECT_EQ(c.read_line(), "input=still running");
  EXPECT_EQ(c.wait(), 0);
}

// numpy's BLAS may start threads: OpenBLAS does where it is the system's libblas.so.3. Pinned to
// one BLAS thread here; ThreadedOpenBlas below runs it with OpenBLAS's threads.
TEST_F(Features, PythonWithSympyAndNumpy) {
  TempDir dir;
  auto [original, ready] = start_ready({"/usr/bin/env", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1",
                                        "/usr/bin/python3", SYMPY_NUMPY_PY});
  auto rt = round_trip(std::move(original), ready, dir);
  EXPECT_EQ(answer(rt.restored, "1001"), "pid=" + std::to_string(rt.restored.pid()) +
                                             " factors=[(7, 1), (11, 1), (13, 1)] sum=501501");
  EXPECT_NE(std::to_string(rt.restored.pid()), rt.ready["pid"]);
}

// ---- threads ----

// Every thread of pid asleep (state S): the threads of a feature program have parked.
bool wait_threads_asleep(pid_t pid, std::chrono::milliseconds timeout = kTimeout) {
  const auto deadline = Clock::now() + timeout;
  do {
    bool all = true;
    for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      std::ifstream in(t.path() / "stat");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const size_t paren = text.rfind(')');
      if (paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] != 'S') all = false;
    }
    if (all) return true;
    std::this_thread::sleep_for(5ms);
  } while (Clock::now() < deadline);
  return false;
}

std::multiset<std::string> thread_names(pid_t pid) {
  std::multiset<std::string> out;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(t.path() / "comm");
    std::string name;
    std::getline(in, name);
    out.insert(name);
  }
  return out;
}

std::multiset<std::string> expected_names(int workers) {
  std::multiset<std::string> out{"prog_thread_sta"};  // the comm of prog_thread_states (15 bytes)
  for (int i = 0; i < workers; ++i) out.insert("worker-" + std::to_string(i));
  return out;
}

std::string expected_answer(int workers) {
  return "threads=" + std::to_string(workers) + " ok=" + std::to_string(workers) +
         " main_affinity=ok main_comm=prog_thread_sta input=go";
}

std::pair<Child, std::string> start_threads(int workers) {
  auto [original, ready] = start_ready({PROG_thread_states, std::to_string(workers)});
  if (!wait_threads_asleep(original.pid())) throw std::runtime_error("threads never parked");
  return {std::move(original), ready};
}

// Workers blocked in a condition variable, nanosleep, a raw futex wait (holding xmm/ymm values)
// and pause(), each with its own name, mask, altstack and TLS; after restore pthread_kill,
// pthread_setaffinity_np, pthread_getschedparam and pthread_join must all act on the new threads.
TEST_F(Features, ThreadsKeepTheirState) {
  TempDir dir;
  auto [original, ready] = start_threads(8);
  auto rt = round_trip(std::move(original), ready, dir);
  EXPECT_EQ(thread_count(rt.restored.pid()), 9);
  EXPECT_EQ(thread_names(rt.restored.pid()), expected_names(8));
  EXPECT_EQ(answer(rt.restored, "go"), expected_answer(8));
  // The original, thawed after its dump, is unharmed too.
  EXPECT_EQ(answer(rt.original, "go"), expected_answer(8));
}

// glibc caches the tid in struct pthread even in a single-threaded process: without the new
// tid there, pthread_setaffinity_np(pthread_self()) fails with ESRCH (or acts on whatever
// process now has the old pid).
TEST_F(Features, SingleThreadedPthreadSelfIsTheRestoredProcess) {
  TempDir dir;
  auto [original, ready] = start_threads(0);
  auto rt = round_trip(std::move(original), ready, dir);
  EXPECT_EQ(thread_names(rt.restored.pid()), expected_names(0));
  EXPECT_EQ(answer(rt.restored, "go"), expected_answer(0));
}

// One image of a 16-thread program restored many times in a row: every restore complete.
TEST_F(Features, SixteenThreadsRestoredFiftyTimes) {
  TempDir dir;
  auto [original, ready] = start_threads(16);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  for (int i = 0; i < 50; ++i) {
    SCOPED_TRACE("restore " + std::to_string(i));
    Child restored = restore(dir / "img");
    ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
    ASSERT_EQ(thread_count(restored.pid()), 17);
    ASSERT_EQ(answer(restored, "go"), expected_answer(16));
  }
}

// `--kill` ends every thread and reaps each one's exit (the main thread's is reported last).
TEST_F(Features, DumpKillEndsEveryThread) {
  TempDir dir;
  auto [original, ready] = start_threads(4);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img", "--kill"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_EQ(original.wait(5s), 128 + SIGKILL);
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(answer(restored, "go"), expected_answer(4));
}

// State one thread has that a restore cannot carry: refused with exit 3, naming the thread and
// the reason; no image; the process goes on.
void expect_refused(const std::string& mode, const std::string& reason) {
  TempDir dir;
  Child c = Child::spawn({PROG_thread_refusals, mode});
  auto ready = c.read_line();
  ASSERT_TRUE(ready) << c.leftovers();
  if (ready->starts_with("skip")) GTEST_SKIP() << *ready;
  auto dump = prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", dir / "img"});
  EXPECT_EQ(dump.code, 3) << dump.err;
  EXPECT_NE(dump.err.find("(odd-thread): " + reason), std::string::npos) << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
  c.write("still running\n");
  EXPECT_EQ(c.read_line(), "input=still running");
  EXPECT_EQ(c.wait(), 0);
}

TEST_F(Features, ThreadWithItsOwnCredentialsIsRefused) { expect_refused("creds", "its credentials"); }
TEST_F(Features, ThreadInANamespaceOfItsOwnIsRefused) { expect_refused("uts", "its namespaces or security label differ"); }
TEST_F(Features, SignalPendingForAThreadIsRefused) {
  expect_refused("pending", "signals pending for the thread and not carried: SIGUSR2");
}
TEST_F(Features, RobustMutexHeldByAThreadIsRefused) { expect_refused("robust", "holds a robust mutex"); }
// Cloned by the restorer, every thread gets the main thread's nice and affinity.
TEST_F(Features, ThreadWithItsOwnNiceIsRefused) { expect_refused("nice", "its scheduling (nice="); }
TEST_F(Features, ThreadWithItsOwnAffinityIsRefused) { expect_refused("affinity", "its scheduling (nice="); }
// A lock held at the snapshot records its holder's tid, which changes on restore. Without the
// new tid there the holder could not release it (EPERM; glibc aborts for PI) nor see it as its
// own, and the next taker would wait forever (found as a launch captured with --ready delay that
// stopped in python's exit, holding the dynamic loader's lock). Restored, each holder releases its
// own and the main thread takes each; the original, thawed after its dump, does the same.
// Answer: per holder, its own retake / its release / the main thread's take.
using Lock = std::pair<std::string, std::string>;  // mode, answer
class HeldLocks : public Features, public ::testing::WithParamInterface<Lock> {};

TEST_P(HeldLocks, ReleasedByTheRestoredHolder) {
  const auto [mode, expected] = GetParam();
  TempDir dir;
  auto rt = round_trip({PROG_thread_locks, mode}, dir);
  // PI: each holder's owner field and futex word.
  auto inspect = prewarm({"inspect", "--images", dir / "img"});
  const std::string threads = mode == "loaderlock"            ? "threads   2; 1 "
                              : mode.starts_with("pi")       ? "threads   4; 6 "
                                                             : "threads   4; 3 ";
  EXPECT_NE(inspect.out.find(threads + "held locks get their holder's new tid"), std::string::npos) << inspect.out;
  EXPECT_EQ(answer(rt.restored, "go"), expected);
  EXPECT_EQ(answer(rt.original, "go"), expected);
}

INSTANTIATE_TEST_SUITE_P(Each, HeldLocks,
                         ::testing::Values(Lock{"pi", "answer 0/0/0 0/0/0 0/0/0"},
                                           Lock{"pi_page_end", "answer 0/0/0 0/0/0 0/0/0"},
                                           Lock{"pi_shared", "answer 0/0/0 0/0/0 0/0/0"},
                                           Lock{"rwlock", "answer EDEADLK/0/0 EDEADLK/0/0 EDEADLK/0/0"},
                                           Lock{"loaderlock", "answer 0/0/0"}),
                         [](const auto& info) { return info.param.first; });

// A recursive mutex of the program's own, held only until the first freeze ends: the first
// dump catches it held under a tid the restore does not rewrite (outside glibc's data such
// records are too often look-alikes to rewrite), so the dump looks again once the process runs,
// finds it released and dumps again. Restored from that image, the holder's release and the
// main thread's take succeed; from the first, the release fails (EPERM) and the take times out.
TEST_F(Features, LockHeldOnlyAtTheFirstDumpIsDumpedAgainReleased) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_held_briefly});
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_NE(dump.err.find("dumped 2 times: a mutex held at the first dump was released"), std::string::npos) << dump.err;
  Child restored = restore(dir / "img");
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(answer(restored, "go"), "answer 0 0");
  EXPECT_EQ(answer(original, "go"), "answer 0 0");
}

// A thread in vfork waits for its child uninterruptibly and cannot be stopped: the freeze gives
// up after PREWARM_FREEZE_TIMEOUT_MS, says where the thread is, writes nothing, and the app,
// let go, runs on and answers (the dump did not wait for the vfork: the thread is still in it).
TEST_F(Features, ThreadThatCannotStopFailsTheFreezeInTime) {
  TempDir dir;
  auto [original, ready_line] = start_ready({PROG_vfork_wait});
  const std::string vforker = fields(ready_line)["vforker"];
  const std::string task = "/proc/" + std::to_string(original.pid()) + "/task/" + vforker + "/stat";
  ::setenv("PREWARM_FREEZE_TIMEOUT_MS", "300", 1);
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ::unsetenv("PREWARM_FREEZE_TIMEOUT_MS");
  EXPECT_EQ(dump.code, 1) << dump.err;
  EXPECT_NE(dump.err.find("thread " + vforker + " did not stop within 300 ms (state D"), std::string::npos)
      << dump.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
  std::string stat;
  std::getline(std::ifstream(task), stat);
  ASSERT_NE(stat.rfind(')'), std::string::npos) << task;
  EXPECT_EQ(stat.substr(stat.rfind(')') + 2, 1), "D") << stat;
  EXPECT_EQ(answer(original, "go"), "answer 0");
}

// "START-END perms offset name" lines, with touching anonymous ones of equal perms made one.
std::vector<std::string> merge_adjacent_anon(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) {
    const bool anon = l.size() > 1 && l.back() == ' ';  // no name after the offset
    if (anon && !out.empty() && out.back().back() == ' ') {
      const std::string& prev = out.back();
      const size_t dash = l.find('-'), sp = l.find(' '), psp = prev.find(' ');
      if (prev.substr(prev.find('-') + 1, psp - prev.find('-') - 1) == l.substr(0, dash) &&
          prev.substr(psp) == l.substr(sp)) {
        out.back() = prev.substr(0, prev.find('-') + 1) + l.substr(dash + 1);
        continue;
      }
    }
    out.push_back(l);
  }
  return out;
}

// A real runtime with threads: numpy on OpenBLAS's pthreads build (loaded through
// LD_LIBRARY_PATH; the system's BLAS is left alone), its worker threads started before ready.
// Restored, it computes the same product on them as the original does.
TEST_F(Features, ThreadedOpenBlas) {
  const fs::path openblas = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
  if (!fs::exists(openblas / "libblas.so.3")) GTEST_SKIP() << "libopenblas0-pthread is not installed";
  TempDir dir;
  auto [original, ready] = start_ready({"/usr/bin/env", "LD_LIBRARY_PATH=" + openblas.string(),
                                        "OPENBLAS_NUM_THREADS=2", "/usr/bin/python3", NUMPY_BLAS_PY});
  const int threads = thread_count(original.pid());
  ASSERT_GT(threads, 1) << "OpenBLAS started no threads";
  ASSERT_TRUE(wait_threads_asleep(original.pid()));
  // Its arenas include adjacent anonymous mappings with the same flags that the kernel keeps
  // apart in the original (separately created) and merges once they are mapped again: the
  // same memory, so the comparison merges them too.
  const auto before = merge_adjacent_anon(layout(original.pid()));
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  RoundTrip rt{std::move(original), fields(ready), restore(dir / "img")};
  ASSERT_TRUE(wait_blocked_in_stdin_read(rt.restored.pid())) << rt.restored.leftovers();
  EXPECT_EQ(layout_diff(before, merge_adjacent_anon(layout(rt.restored.pid()))), "");
  EXPECT_EQ(thread_count(rt.restored.pid()), threads);
  EXPECT_EQ(thread_names(rt.restored.pid()).count("python3"), static_cast<size_t>(threads));
  const std::string restored = answer(rt.restored, "3");
  const std::string cold = answer(rt.original, "3");
  EXPECT_EQ(restored.substr(restored.find(' ')), cold.substr(cold.find(' '))) << restored << " vs " << cold;
  EXPECT_NE(restored.find("trace="), std::string::npos) << restored;
}

}  // namespace
}  // namespace prewarm::test
