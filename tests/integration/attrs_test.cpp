// Process attributes (issue 13): each feature program sets one up and says ready; it is dumped and
// restored through the real CLI, and reports what came back. Attributes prewarm does not carry
// must make `prewarm dump` exit 3 and name them. And restores are clones: --on-restore gives the
// app a signal to reseed.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include "harness.h"

namespace prewarm::test {
namespace {

namespace fs = std::filesystem;

class Attrs : public DumpTest {};

RunResult dump(const Child& c, const fs::path& images) {
  return prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", images.string()});
}

// Dumps, restores (with `extra` restore arguments) and returns the restored process once it
// waits for its input line, after comparing its mappings and fds with the original's.
Child round_trip(Child& original, const fs::path& images, const std::vector<std::string>& extra = {}) {
  const auto before = layout(original.pid());
  auto d = dump(original, images);
  if (d.code != 0) throw std::runtime_error("dump exit " + std::to_string(d.code) + ": " + d.err);
  std::vector<std::string> argv{PREWARM_BIN, "restore", "--images", images.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Child restored = Child::spawn(argv);
  if (!wait_blocked_in_stdin_read(restored.pid()))
    throw std::runtime_error("restored process never read stdin: " + restored.leftovers());
  const auto diff = layout_diff(before, layout(restored.pid()));
  EXPECT_TRUE(diff.empty()) << "mappings or fds differ after restore:\n" << diff;
  return restored;
}

std::string answer(Child& restored) {
  restored.write("go\n");
  auto line = restored.read_line();
  EXPECT_TRUE(line) << restored.leftovers();
  EXPECT_EQ(restored.wait(), 0) << restored.leftovers();
  return line.value_or("");
}

TEST_F(Attrs, PrctlStateIsCarried) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_prctl});
  const std::string nice = fields(ready)["nice"];
  Child restored = round_trip(original, dir / "img");
  // Before the go: the name is visible from outside too.
  std::ifstream comm("/proc/" + std::to_string(restored.pid()) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, "attr-named");
  EXPECT_EQ(answer(restored), "name=attr-named subreaper=1 thp_disable=1 pdeathsig=" + std::to_string(SIGUSR2) +
                                  " slack=123456 nice=" + nice + " oom=345 membarrier=registered");
}

// mlock and mlock2(MLOCK_ONFAULT) ranges come back locked (VmFlags lo, lo+lf; the same VmLck),
// with their contents; an unlocked neighbour stays unlocked.
TEST_F(Attrs, MlockedMappingsAreLockedAgain) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_mlock});
  const std::string state = ready.substr(ready.find("locked="));
  EXPECT_EQ(state.substr(0, state.find(" vmlck=")), "locked=lo onfault=lo+lf untouched=lo+lf zeroed=lo plain=-") << ready;
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), state + " contents=same");
}

// MADV_SEQUENTIAL, MADV_RANDOM and (with KSM) MADV_MERGEABLE come back on their mappings.
TEST_F(Attrs, MadviseStateIsCarried) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_madvise});
  const std::string state = ready.substr(ready.find("seq="));
  EXPECT_EQ(state.substr(0, state.find(" ksm=")), "seq=sr rnd=rr") << ready;
  EXPECT_NE(state.find("untouched: seq=sr rnd=rr"), std::string::npos) << ready;
  if (state.find("ksm=none") == std::string::npos) {
    EXPECT_NE(state.find("ksm=mg"), std::string::npos) << ready;
  }
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), state + " contents=same");
}

// Under a seccomp filter that refuses mlock2, the launcher finds out before the point of no
// return (on a scratch page) and refuses the restore, where the blob would have had to end the
// process (exit 125). The app runs under the same filter (seccomp must match) and locks, with
// mlock, only a mapping it never wrote, which the blob maps: staging cannot find out first.
TEST_F(Attrs, MlockTheBlobCannotDoIsRefusedBeforeThePointOfNoReturn) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_seccomp_deny, "mlock2", PROG_attr_mlock, "zeroed"});
  ASSERT_NE(ready.find("zeroed=lo "), std::string::npos) << ready;
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  auto r = run({PROG_seccomp_deny, "mlock2", PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  EXPECT_NE(r.code, 125) << r.err;
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("mlock2"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("point of no return"), std::string::npos) << r.err;
}

// A kernel that cannot set the mm fields (PR_SET_MM_MAP; no CONFIG_CHECKPOINT_RESTORE, here a
// seccomp filter that fails every PR_SET_MM with EINVAL) is found by the launcher: a plain
// refusal, never the blob's exit 125 past the point of no return.
TEST_F(Attrs, KernelWithoutPrSetMmIsFoundBeforeThePointOfNoReturn) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_seccomp_deny, "pr-set-mm", PROG_attr_procself});
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  auto r = run({PROG_seccomp_deny, "pr-set-mm", PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("prctl(PR_SET_MM_MAP_SIZE): this kernel cannot set"), std::string::npos) << r.err;
}

TEST_F(Attrs, ItimerIsCarried) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_itimer});
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), "armed=1 interval=7 prof_armed=1 alarms_seen=0");
}

// A 2 s ITIMER_REAL armed at ready fires in the restored process (a lost one never does: the
// program waits for it, and read_line's timeout fails the test).
TEST_F(Attrs, ItimerFiresAfterRestore) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_itimer, "fire"});
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), "armed=1 interval=7 prof_armed=1 alarms_seen=1");
}

// POSIX timers come back with their ids (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.17+); a kernel
// without it refuses the restore (a cold start), which is probed here.
bool timer_ids_restorable() {
  return prctl(77 /* PR_TIMER_CREATE_RESTORE_IDS */, 0 /* OFF */, 0, 0, 0) == 0;
}

TEST_F(Attrs, PosixTimerIsCarried) {
  if (!timer_ids_restorable()) GTEST_SKIP() << "no PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17+) on this kernel";
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_posix_timer});
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), "armed=1 interval=5 fired=0 value_ok=0");
}

TEST_F(Attrs, PosixTimerFiresAfterRestore) {
  if (!timer_ids_restorable()) GTEST_SKIP() << "no PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17+) on this kernel";
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_posix_timer, "fire"});
  Child restored = round_trip(original, dir / "img");
  EXPECT_EQ(answer(restored), "armed=1 interval=5 fired=1 value_ok=1");
}

TEST_F(Attrs, ProcSelfFdIsTheRestoredProcesss) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_procself});
  const auto before = layout(original.pid());
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  Child restored = Child::spawn({PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  // The fd names the restored pid's entry now; everything else matches.
  const std::string fd = fields(ready)["fd"];
  const auto link = fs::read_symlink("/proc/" + std::to_string(restored.pid()) + "/fd/" + fd);
  EXPECT_EQ(link, "/proc/" + std::to_string(restored.pid()) + "/status");
  EXPECT_EQ(answer(restored), "own_pid=1");
}

// flock, OFD and POSIX locks: taken again on the reopened file (POSIX ones by the blob, after the
// launcher's fds are closed). The original must let go first (it is killed after the dump);
// while it still holds them, the restore is refused.
class AttrsLocks : public Attrs, public ::testing::WithParamInterface<const char*> {};

TEST_P(AttrsLocks, LockIsTakenAgain) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_flock, GetParam(), (dir / "file").string()});
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  auto held = run({PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  EXPECT_EQ(held.code, 1) << held.err;
  EXPECT_NE(held.err.find("another process holds a conflicting lock"), std::string::npos) << held.err;
  ASSERT_EQ(kill(original.pid(), SIGKILL), 0);
  original.wait();
  Child restored = Child::spawn({PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  ASSERT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
  EXPECT_EQ(answer(restored), "locked=1 conflict=1");
}

INSTANTIATE_TEST_SUITE_P(Each, AttrsLocks, ::testing::Values("flock", "ofd", "posix"));

struct Refusal {
  const char* mode;
  const char* named;  // what stderr must name
};
// Names the case in ctest's test names, which would otherwise carry the pointers' bytes.
void PrintTo(const Refusal& r, std::ostream* os) { *os << r.mode; }

class AttrsRefused : public Attrs, public ::testing::WithParamInterface<Refusal> {};

TEST_P(AttrsRefused, DumpExits3NamingIt) {
  if (std::string_view(GetParam().mode).starts_with("own_") && geteuid() != 0)
    GTEST_SKIP() << "making a namespace of its own needs root here";
  TempDir dir;
  auto [c, ready] = start_ready({PROG_attr_refused, GetParam().mode, (dir / "file").string()});
  auto d = dump(c, dir / "img");
  EXPECT_EQ(d.code, 3) << d.err;
  EXPECT_NE(d.err.find(GetParam().named), std::string::npos) << d.err;
  EXPECT_FALSE(fs::exists(dir / "img"));
  // Refused, the process runs on undisturbed.
  c.write("go\n");
  EXPECT_EQ(c.read_line(), "not restored");
  EXPECT_EQ(c.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Each, AttrsRefused,
    ::testing::Values(Refusal{"mlockall", "mlockall(MCL_FUTURE|MCL_ONFAULT)"},
                      Refusal{"lease", "file lease"},
                      Refusal{"cwd_deleted", "the working directory was removed"},
                      Refusal{"posix_timer", "POSIX timer 0: timer_create timer (clock -"},
                      Refusal{"pending_signal", "status SigPnd"},
                      Refusal{"dumpable", "PR_GET_DUMPABLE"},
                      Refusal{"child", "child process "},
                      Refusal{"zombie", "child process "},
                      Refusal{"own_uts", "a uts namespace other than its launch's"},
                      Refusal{"own_mnt", "a mnt namespace other than its launch's"}),
    [](const auto& info) { return std::string(info.param.mode); });

// This process's cgroup2 directory: the first cgroup2 mount (/sys/fs/cgroup, or .../unified on a
// hybrid system) and its "0::" path; "" if there is none.
std::string own_cgroup2_dir() {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, rest, mount;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup2" && mount.empty()) mount = dir;
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line))
    if (line.starts_with("0::") && !mount.empty()) return mount + (line == "0::/" ? "" : line.substr(3));
  return "";
}

// A process that made a cgroup below the dump's and moved itself there is refused (a restore
// stays in the launcher's), unless --any-cgroup says the launcher's cgroups are to be its own.
TEST_F(Attrs, ProcessInACgroupOfItsOwnIsRefusedUnlessAnyCgroup) {
  if (geteuid() != 0) GTEST_SKIP() << "moving a process to a new cgroup needs root here";
  const std::string here = own_cgroup2_dir();
  if (here.empty()) GTEST_SKIP() << "no cgroup2 mount";
  const std::string cg = here + "/prewarm-attrs-" + std::to_string(getpid());
  if (::mkdir(cg.c_str(), 0755) != 0) GTEST_SKIP() << "cannot make a cgroup in " << here << ": " << std::strerror(errno);
  TempDir dir;
  {
    auto [c, ready] = start_ready({"/usr/bin/env", "CGROUP_PROCS=" + cg + "/cgroup.procs", PROG_attr_refused,
                                   "own_cgroup", (dir / "file").string()});
    auto d = dump(c, dir / "img");
    EXPECT_EQ(d.code, 3) << d.err;
    EXPECT_NE(d.err.find("/prewarm-attrs-" + std::to_string(getpid()) + ": below its launch's cgroup"), std::string::npos)
        << d.err;
    EXPECT_FALSE(fs::exists(dir / "img"));
    auto any = prewarm({"dump", "--any-cgroup", "--pid", std::to_string(c.pid()), "--images", dir / "img"});
    EXPECT_EQ(any.code, 0) << any.err;
    c.write("go\n");
    EXPECT_EQ(c.read_line(), "not restored");
    EXPECT_EQ(c.wait(), 0);
  }
  EXPECT_EQ(::rmdir(cg.c_str()), 0) << std::strerror(errno);
}

// A field that is neither carried nor the launch's own must match: here CPU affinity.
TEST_F(Attrs, MatchedFieldRefusesAnotherLaunch) {
  TempDir dir;
  auto [original, ready] = start_ready({PROG_attr_procself});
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  // This launch is pinned to CPU 0, the snapshot was not: the restore refuses before the point
  // of no return rather than run the app with an affinity it did not have.
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs two CPUs to give the launch another affinity";
  auto r = run({"/usr/bin/taskset", "-c", "0", PREWARM_BIN, "restore", "--images", (dir / "img").string()});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("Cpus_allowed"), std::string::npos) << r.err;
}

// Restores are clones: without --on-restore two restores of one image draw the same random
// number; with it, the app's SIGUSR1 handler reseeds first, so they differ.
TEST_F(Attrs, OnRestoreSignalLetsTheAppReseed) {
  TempDir dir;
  auto [original, ready] = start_ready({"/usr/bin/python3", RESEED_PY});
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  auto draw = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv{PREWARM_BIN, "restore", "--images", (dir / "img").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Child restored = Child::spawn(argv);
    EXPECT_TRUE(wait_blocked_in_stdin_read(restored.pid())) << restored.leftovers();
    return answer(restored);
  };
  const std::string plain1 = draw({}), plain2 = draw({});
  EXPECT_EQ(plain1, plain2);
  EXPECT_NE(plain1.find("reseeded=0"), std::string::npos) << plain1;
  const std::string sig1 = draw({"--on-restore", "SIGUSR1"}), sig2 = draw({"--on-restore", "USR1"});
  EXPECT_NE(sig1, sig2);
  EXPECT_NE(sig1.find("reseeded=1"), std::string::npos) << sig1;
  EXPECT_NE(sig2.find("reseeded=1"), std::string::npos) << sig2;
  EXPECT_NE(sig1, plain1);
}

// A signal the app does not catch would run its default action (SIGUSR2 ends it): refused
// before the point of no return.
TEST_F(Attrs, OnRestoreSignalWithoutHandlerIsRefused) {
  TempDir dir;
  auto [original, ready] = start_ready({"/usr/bin/python3", RESEED_PY});
  auto d = dump(original, dir / "img");
  ASSERT_EQ(d.code, 0) << d.err;
  auto r = run({PREWARM_BIN, "restore", "--images", (dir / "img").string(), "--on-restore", "SIGUSR2"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("no handler for signal 12"), std::string::npos) << r.err;
  auto bad = run({PREWARM_BIN, "restore", "--images", (dir / "img").string(), "--on-restore", "SIGKILL"});
  EXPECT_EQ(bad.code, 2) << bad.err;
}

}  // namespace
}  // namespace prewarm::test
