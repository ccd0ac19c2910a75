// Tests of the identity a capture compares: the parsers on sample text (malformed lines must
// fail, never read garbage), and read_identity / open_mm_handle / mm_unchanged on real processes:
// one that execs, one whose pidfd names a dead process, and one that runs a setuid program.
#include "snapshot/proc_identity.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "policy/capture_check.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uid_t kUser = 12345;  // no passwd entry needed: ids are just numbers to the kernel
constexpr uid_t kNobody = 65534;

const char* kStatus =
    "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t77\nPid:\t77\n"
    "Uid:\t1001\t1002\t1003\t1004\nGid:\t2001\t2002\t2003\t2004\nFDSize:\t64\n"
    "Groups:\t27 4 100 \nNStgid:\t77\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000ff\n"
    "CapEff:\t0000000000000001\nNoNewPrivs:\t1\n";

TEST(ParseIdentityStatus, ReadsEveryIdGroupsAndCaps) {
  ProcessIdentity id;
  auto r = parse_identity_status(kStatus, id);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(id.ruid, 1001u);
  EXPECT_EQ(id.euid, 1002u);
  EXPECT_EQ(id.suid, 1003u);
  EXPECT_EQ(id.fsuid, 1004u);
  EXPECT_EQ(id.rgid, 2001u);
  EXPECT_EQ(id.egid, 2002u);
  EXPECT_EQ(id.sgid, 2003u);
  EXPECT_EQ(id.fsgid, 2004u);
  EXPECT_EQ(id.groups, (std::vector<gid_t>{4, 27, 100}));
  EXPECT_EQ(id.cap_prm, 0xffu);
  EXPECT_EQ(id.cap_eff, 1u);
  EXPECT_TRUE(id.no_new_privs);
}

TEST(ParseIdentityStatus, EmptyGroupsAreNoGroups) {
  std::string s = kStatus;
  s.replace(s.find("27 4 100 "), 9, "");
  ProcessIdentity id;
  id.groups = {9};
  ASSERT_TRUE(parse_identity_status(s, id).ok());
  EXPECT_TRUE(id.groups.empty());
}

TEST(ParseIdentityStatus, MalformedOrMissingLinesFail) {
  auto fails = [](std::string s, const std::string& from, const std::string& to) {
    s.replace(s.find(from), from.size(), to);
    ProcessIdentity id;
    return !parse_identity_status(s, id).ok();
  };
  EXPECT_TRUE(fails(kStatus, "1001\t1002\t1003\t1004", "1001\t1002\t1003"));       // three ids
  EXPECT_TRUE(fails(kStatus, "1001\t1002\t1003\t1004", "1001\t1002\t1003\t4 5"));  // five
  EXPECT_TRUE(fails(kStatus, "2001", "-1"));
  EXPECT_TRUE(fails(kStatus, "2001", "99999999999"));                              // > uid_t
  EXPECT_TRUE(fails(kStatus, "27 4", "27x 4"));
  EXPECT_TRUE(fails(kStatus, "Groups:", "Gruops:"));
  EXPECT_TRUE(fails(kStatus, "Uid:", "Xid:"));
  EXPECT_TRUE(fails(kStatus, "CapEff:\t0000000000000001", "CapEff:\tzz"));
  ProcessIdentity id;
  EXPECT_FALSE(parse_identity_status("", id).ok());
}

TEST(ParseStatStartTime, CountsFromTheLastParenthesis) {
  // Field n holds n; the command name holds ") 7 8 (" to mislead a naive split.
  std::string s = "4242 (a) 7 8 (b) S";
  for (int n = 4; n <= 52; ++n) s += " " + std::to_string(n);
  auto r = parse_stat_start_time(s + "\n");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(*r, 22u);
}

TEST(ParseStatStartTime, MalformedLinesFail) {
  EXPECT_FALSE(parse_stat_start_time("").ok());
  EXPECT_FALSE(parse_stat_start_time(")").ok());
  EXPECT_FALSE(parse_stat_start_time("1 (x S 1 2 3").ok());  // no ')'
  std::string s = "1 (x) S";
  for (int n = 4; n <= 21; ++n) s += " " + std::to_string(n);
  EXPECT_FALSE(parse_stat_start_time(s).ok());  // ends before field 22
  EXPECT_FALSE(parse_stat_start_time(s + " -5 23").ok());
  EXPECT_FALSE(parse_stat_start_time(s + " 2x 23").ok());
  EXPECT_TRUE(parse_stat_start_time(s + " 22").ok());
}

UniqueFd pidfd_of(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

TEST(ReadIdentity, OfThisProcessMatchesTheKernelsOwnAnswers) {
  UniqueFd pfd = pidfd_of(::getpid());
  ASSERT_TRUE(pfd.valid());
  auto id = read_identity(::getpid(), pfd.get());
  ASSERT_TRUE(id.ok()) << id.error().describe();
  uid_t r, e, s;
  gid_t rg, eg, sg;
  ASSERT_EQ(::getresuid(&r, &e, &s), 0);
  ASSERT_EQ(::getresgid(&rg, &eg, &sg), 0);
  EXPECT_EQ(id->ruid, r);
  EXPECT_EQ(id->euid, e);
  EXPECT_EQ(id->suid, s);
  EXPECT_EQ(id->rgid, rg);
  EXPECT_EQ(id->egid, eg);
  EXPECT_EQ(id->sgid, sg);
  std::vector<gid_t> groups(static_cast<size_t>(::getgroups(0, nullptr)));
  ASSERT_EQ(::getgroups(static_cast<int>(groups.size()), groups.data()), static_cast<int>(groups.size()));
  std::sort(groups.begin(), groups.end());
  EXPECT_EQ(id->groups, groups);
  struct stat exe {};
  ASSERT_EQ(::stat("/proc/self/exe", &exe), 0);
  EXPECT_EQ(id->exe_dev, exe.st_dev);
  EXPECT_EQ(id->exe_ino, exe.st_ino);
  EXPECT_NE(id->start_time, 0u);
  EXPECT_NE(id->mm.start_stack, 0u);
  auto again = read_identity(::getpid(), pfd.get());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->start_time, id->start_time);
}

TEST(ReadPlacement, NamesThisProcesssNamespacesAndCgroups) {
  auto p = read_placement(::getpid());
  ASSERT_TRUE(p.ok()) << p.error().describe();
  for (size_t i = 0; i < Placement::kNamespaces.size(); ++i) {
    struct stat st {};
    const std::string link = std::string("/proc/self/ns/") + Placement::kNamespaces[i];
    if (::stat(link.c_str(), &st) != 0) {
      EXPECT_EQ(errno, ENOENT) << link;
      EXPECT_EQ(p->ns[i], 0u) << link;
    } else {
      EXPECT_EQ(p->ns[i], st.st_ino) << link;
    }
  }
  std::ifstream f("/proc/self/cgroup");
  const std::string cgroups((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(p->cgroups, cgroups);
  // The security label as the LSM gives it (no LSM with one: the read fails, and it is "").
  std::ifstream attr("/proc/self/attr/current");
  std::string label;
  if (!std::getline(attr, label)) label.clear();
  while (!label.empty() && label.back() == '\0') label.pop_back();
  EXPECT_EQ(p->lsm_label, label);
  UniqueFd pfd = pidfd_of(::getpid());
  auto id = read_identity(::getpid(), pfd.get());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->placement.ns, p->ns);
  EXPECT_FALSE(read_placement(0).ok());
}

// A child that made a uts namespace of its own is seen in it; the parent's is unchanged.
TEST(ReadPlacement, SeesANamespaceTheProcessMade) {
  if (::geteuid() != 0) GTEST_SKIP() << "unshare(CLONE_NEWUTS) needs root here";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::unshare(CLONE_NEWUTS) != 0 || ::write(go[1], "u", 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(go[0], &c, 1), 1);
  auto mine = read_placement(::getpid());
  auto its = read_placement(child);
  ::close(go[1]);
  ::close(go[0]);
  ::kill(child, SIGKILL);
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  ASSERT_TRUE(mine.ok() && its.ok());
  EXPECT_NE(its->ns[1], mine->ns[1]);  // uts
  EXPECT_EQ(its->ns[0], mine->ns[0]);  // mnt
  EXPECT_EQ(std::string(Placement::kNamespaces[1]), "uts");
}

TEST(ReadIdentity, FailsWhenThePidfdNamesAnotherProcessThatIsGone) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  UniqueFd pfd = pidfd_of(child);
  ASSERT_TRUE(pfd.valid());
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  // This process's /proc reads fine; the pidfd says the process meant is dead.
  auto id = read_identity(::getpid(), pfd.get());
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.error().code, ESRCH) << id.error().describe();
  EXPECT_FALSE(read_identity(::getpid(), -1).ok());
}

// A forked child that drops to `uid` (if not -1), says it is ready, then on "go" execs argv
// (or, with no argv, drops to `later_uid` and pauses).
struct Child {
  pid_t pid = -1;
  UniqueFd pidfd, go;

  Child(uid_t uid, const std::vector<std::string>& argv) {
    int ready[2], go_pipe[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go_pipe, O_CLOEXEC) != 0) std::abort();
    pid = ::fork();
    if (pid == 0) {
      if (uid != static_cast<uid_t>(-1)) {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)
          ::_exit(90);
        // A setuid(2) away from root leaves the process not dumpable (fs.suid_dumpable 0); a
        // user's own launcher is dumpable, and so is this stand-in.
        if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) ::_exit(93);
      }
      char b = 'r';
      if (::write(ready[1], &b, 1) != 1) ::_exit(91);
      if (::read(go_pipe[0], &b, 1) != 1) ::_exit(0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(92);
    }
    ::close(ready[1]);
    ::close(go_pipe[0]);
    char b = 0;
    if (::read(ready[0], &b, 1) != 1) std::abort();
    ::close(ready[0]);
    pidfd = pidfd_of(pid);
    go.reset(go_pipe[1]);
  }
  void release() {
    char b = 'g';
    if (::write(go.get(), &b, 1) != 1) std::abort();
  }
  // Until /proc/PID/exe is `path` (the exec has completed).
  bool wait_exe(const std::string& path) {
    struct stat want {};
    if (::stat(path.c_str(), &want) != 0) return false;
    for (int i = 0; i < 500; ++i) {
      struct stat now {};
      if (::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &now) == 0 && now.st_ino == want.st_ino &&
          now.st_dev == want.st_dev)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST(MmHandle, SeesTheSameMmUntilAnExec) {
  Child c(static_cast<uid_t>(-1), {"/usr/bin/sleep", "60"});
  ASSERT_TRUE(c.pidfd.valid());
  auto before = read_identity(c.pid, c.pidfd.get());
  ASSERT_TRUE(before.ok()) << before.error().describe();
  auto mem = open_mm_handle(c.pid);
  ASSERT_TRUE(mem.ok()) << mem.error().describe();
  auto same = mm_unchanged(mem->get(), before->mm.start_stack);
  ASSERT_TRUE(same.ok()) << same.error().describe();
  EXPECT_TRUE(*same);
  c.release();
  ASSERT_TRUE(c.wait_exe("/usr/bin/sleep"));
  // What the kernel does (seen here on 6.18): the handle still holds the old mm, which exec
  // released, so a read through it returns 0 bytes (not an error).
  char byte = 0;
  EXPECT_EQ(::pread(mem->get(), &byte, 1, static_cast<off_t>(before->mm.start_stack)), 0);
  same = mm_unchanged(mem->get(), before->mm.start_stack);
  ASSERT_TRUE(same.ok()) << same.error().describe();
  EXPECT_FALSE(*same);
  // The pid and start time stay: only the mm and exe tell the exec.
  auto after = read_identity(c.pid, c.pidfd.get());
  ASSERT_TRUE(after.ok()) << after.error().describe();
  EXPECT_EQ(after->start_time, before->start_time);
  EXPECT_NE(after->exe_ino, before->exe_ino);
  EXPECT_NE(policy::capture_refusal(*before, *after, *same, before->euid, before->egid), "");
  // A fresh handle sees the new mm.
  auto fresh = open_mm_handle(c.pid);
  ASSERT_TRUE(fresh.ok());
  auto fresh_same = mm_unchanged(fresh->get(), after->mm.start_stack);
  ASSERT_TRUE(fresh_same.ok()) << fresh_same.error().describe();
  EXPECT_TRUE(*fresh_same);
}

TEST(MmHandle, AnUnmappedAddressIsAnErrorNotAVerdict) {
  auto mem = open_mm_handle(::getpid());
  ASSERT_TRUE(mem.ok());
  auto r = mm_unchanged(mem->get(), 0x1000);  // page 1 is never mapped (mmap_min_addr)
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
}

// A copy of sleep, setuid to nobody, in a directory every user can reach.
struct SetuidSleep {
  std::string dir, path;
  std::string skip;
  SetuidSleep() {
    char tmpl[] = "/tmp/proc_identity_test.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    dir = tmpl;
    path = dir + "/sleep";
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) == 0 && (vfs.f_flag & ST_NOSUID)) skip = dir + " is on a nosuid filesystem";
    if (std::system(("cp /usr/bin/sleep " + path).c_str()) != 0) std::abort();
    if (::chmod(dir.c_str(), 0755) != 0 || ::chown(path.c_str(), kNobody, kNobody) != 0 ||
        ::chmod(path.c_str(), 04755) != 0)
      std::abort();
  }
  ~SetuidSleep() {
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
};

TEST(ReadIdentity, ASetuidExecShowsTheNewEuidAndMakesTheProcessNotDumpable) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a child as another uid and chown a setuid copy";
  SetuidSleep suid;
  if (!suid.skip.empty()) GTEST_SKIP() << suid.skip;
  Child c(kUser, {suid.path, "60"});
  ASSERT_TRUE(c.pidfd.valid());
  auto before = read_identity(c.pid, c.pidfd.get());
  ASSERT_TRUE(before.ok()) << before.error().describe();
  EXPECT_EQ(before->euid, kUser);
  EXPECT_EQ(before->proc_uid, kUser);  // dumpable: /proc/PID/status is the user's
  auto mem = open_mm_handle(c.pid);
  ASSERT_TRUE(mem.ok());
  c.release();
  ASSERT_TRUE(c.wait_exe(suid.path));
  auto after = read_identity(c.pid, c.pidfd.get());
  ASSERT_TRUE(after.ok()) << after.error().describe();
  EXPECT_EQ(after->ruid, kUser);
  EXPECT_EQ(after->euid, kNobody);
  EXPECT_EQ(after->suid, kNobody);
  EXPECT_EQ(after->fsuid, kNobody);
  EXPECT_EQ(after->proc_uid, 0u);  // not dumpable: the kernel hands /proc/PID/status to root
  auto same = mm_unchanged(mem->get(), before->mm.start_stack);
  ASSERT_TRUE(same.ok());
  EXPECT_FALSE(*same);
  EXPECT_EQ(policy::capture_refusal(*before, *after, *same, kUser, kUser),
            "pid " + std::to_string(c.pid) + " changed its effective uid from 12345 to 65534 since it was launched");
}

}  // namespace
}  // namespace prewarm
