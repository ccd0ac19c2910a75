// Tests the support rules: which mappings and fds can be snapshotted, on smaps text shaped like the
// field's reports (Chromium GPU buffers, perf and io_uring rings) and on mappings and fds this
// process really has, and how an offender is printed for `prewarm dump` (exit 3).
#include "policy/support.h"

#include <fcntl.h>
#include <signal.h>
#include <linux/perf_event.h>
#include <sys/eventfd.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm::policy {
namespace {

using MC = MappingClass;

// One process's smaps (detail lines trimmed): a Chromium GPU process next to the usual
// mappings and the kernel objects that cannot be carried.
const char* const kSmaps =
    "55d4c8a00000-55d4c8a02000 r--p 00000000 fd:01 1311234                    /usr/lib/chromium/chromium\n"
    "VmFlags: rd mr mw me dw sd\n"
    "55d4c9b3e000-55d4c9b5f000 rw-p 00000000 00:00 0                          [heap]\n"
    "VmFlags: rd wr mr mw me ac sd\n"
    "7f1c20000000-7f1c20200000 rw-s 1b0000000 00:05 533                       /dev/dri/renderD128\n"
    "VmFlags: rd wr sh mr mw me ms pf io dc de dd\n"
    "7f1c22000000-7f1c22100000 rw-s 00000000 00:01 4                          /dev/zero (deleted)\n"
    "VmFlags: rd wr sh mr mw me ms sd\n"
    "7f1c23000000-7f1c23001000 rw-s 00000000 00:10 1066                       anon_inode:[perf_event]\n"
    "VmFlags: rd wr sh mr mw ms pf io dc de dd\n"
    "7f1c24000000-7f1c24002000 rw-s 00000000 00:10 1067                       anon_inode:[io_uring]\n"
    "VmFlags: rd wr sh mr mw ms de mm\n"
    "7f1c25000000-7f1c25010000 rw-s 00000000 00:08 5550                       socket:[5550]\n"
    "VmFlags: rd wr sh mr mw ms\n"
    "7f1c26000000-7f1c26001000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n"
    "VmFlags: rd wr sh mr mw me ms sd\n"
    "7f1c27000000-7f1c27001000 rw-s 00000000 00:01 1027                       /memfd:wayland-shm (deleted)\n"
    "VmFlags: rd wr sh mr mw me ms sd\n"
    "7f1c28000000-7f1c28004000 r--p 00000000 fd:01 2000                       /usr/lib/libold.so (deleted)\n"
    "VmFlags: rd mr mw me sd\n"
    "7f1c2a000000-7f1c2a001000 rw-s 00000000 00:1a 3                          /dev/shm/.org.chromium.xyz\n"
    "VmFlags: rd wr sh mr mw me ms sd\n"
    "7f1c2b000000-7f1c2b004000 rw-p 00000000 00:00 0 \n"
    "VmFlags: rd wr mr mw me ac sd\n"
    "7ffd5c8e1000-7ffd5c902000 rw-p 00000000 00:00 0                          [stack]\n"
    "VmFlags: rd wr mr mw me gd ac\n"
    "7ffd5c9f0000-7ffd5c9f4000 r--p 00000000 00:00 0                          [vvar]\n"
    "VmFlags: rd mr pf io de dd sd\n"
    "7ffd5c9f4000-7ffd5c9f6000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
    "VmFlags: rd mr pf io de dd sd\n"
    "7ffd5c9f6000-7ffd5c9f8000 r-xp 00000000 00:00 0                          [vdso]\n"
    "VmFlags: rd ex mr mw me de sd\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
    "VmFlags: ex\n";

struct Expected {
  const char* name;
  bool regular_file;  // what stat(2) of the name would say
  MappingClass cls;
  const char* reason;  // a fragment of the refusal, "" when accepted
};

const Expected kExpected[] = {
    {"/usr/lib/chromium/chromium", true, MC::kFile, ""},
    {"[heap]", false, MC::kAnon, ""},
    {"/dev/dri/renderD128", false, MC::kRefuse, "pf/io"},
    {"/dev/zero (deleted)", false, MC::kSharedAnon, ""},
    {"anon_inode:[perf_event]", false, MC::kRefuse, "pf/io"},
    {"anon_inode:[io_uring]", false, MC::kRefuse, "anon_inode:[io_uring]"},
    {"socket:[5550]", false, MC::kRefuse, "socket"},
    {"/SYSV00000000 (deleted)", false, MC::kRefuse, "SysV"},
    {"/memfd:wayland-shm (deleted)", false, MC::kRefuse, "memfd"},
    {"/usr/lib/libold.so (deleted)", false, MC::kRefuse, "deleted"},
    {"/dev/shm/.org.chromium.xyz", true, MC::kFile, ""},
    {"", false, MC::kAnon, ""},
    {"[stack]", false, MC::kAnon, ""},
    {"[vvar]", false, MC::kVvar, ""},
    {"[vvar_vclock]", false, MC::kVvarVclock, ""},
    {"[vdso]", false, MC::kVdso, ""},
    {"[vsyscall]", false, MC::kSkip, ""},
};

std::vector<Vma> parse(const std::string& text) {
  auto r = parse_smaps(text);
  EXPECT_TRUE(r.ok()) << r.error().describe();
  return r.ok() ? *r : std::vector<Vma>{};
}

TEST(ClassifyMapping, EveryKindOfMappingInOneProcess) {
  auto vmas = parse(kSmaps);
  ASSERT_EQ(vmas.size(), std::size(kExpected));
  for (size_t i = 0; i < vmas.size(); ++i) {
    const Expected& e = kExpected[i];
    SCOPED_TRACE(e.name);
    ASSERT_EQ(vmas[i].name, e.name);
    auto d = classify_mapping(vmas[i], e.regular_file);
    EXPECT_EQ(d.cls, e.cls) << d.reason;
    if (e.cls == MC::kRefuse) {
      EXPECT_NE(d.reason.find(e.reason), std::string::npos) << d.reason;
    } else {
      EXPECT_EQ(d.reason, "");
    }
  }
}

// The rule is on the flags, not the name: a GPU buffer refuses even where the caller saw a
// regular file (a DMA-BUF heap, a driver's own file), and accepted names lose to `pf` or `io`.
TEST(ClassifyMapping, PfOrIoRefusesWhateverTheName) {
  for (const char* flags :
       {"rd wr sh mr mw me ms pf io dc de dd", "rd wr mr mw me io", "rd wr pf"}) {
    for (const char* name : {"/usr/lib/dri/iris_dri.so", "", "[heap]", "/dev/zero (deleted)"}) {
      SCOPED_TRACE(std::string(name) + " / " + flags);
      auto v = parse(std::string("7f0000000000-7f0000001000 rw-s 00000000 00:05 9 ") + name +
                     "\nVmFlags: " + flags + "\n");
      ASSERT_EQ(v.size(), 1u);
      auto d = classify_mapping(v[0], true);
      EXPECT_EQ(d.cls, MC::kRefuse);
      EXPECT_NE(d.reason.find("GPU"), std::string::npos) << d.reason;
    }
  }
}

// The vDSO pair carries `pf io` (see kSmaps), yet is the kernel's own and is moved.
TEST(ClassifyMapping, KernelSpecialMappingsWinOverTheirPfIoFlags) {
  auto vmas = parse(kSmaps);
  int seen = 0;
  for (const auto& v : vmas) {
    if (v.name != "[vvar]" && v.name != "[vvar_vclock]") continue;
    ++seen;
    ASSERT_TRUE(v.vm_flags.has(VmFlag::kPfnMap) && v.vm_flags.has(VmFlag::kIo)) << v.vm_flags_text();
    EXPECT_NE(classify_mapping(v, false).cls, MC::kRefuse) << v.name;
  }
  EXPECT_EQ(seen, 2);
}

TEST(ClassifyMapping, DeviceFileIsRefusedUnlessTheCallerSawARegularFile) {
  auto v = parse(
      "7f0000000000-7f0000001000 rw-s 00000000 00:05 77  /dev/fb0\n"
      "VmFlags: rd wr sh mr mw me ms\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(classify_mapping(v[0], false).cls, MC::kRefuse);
  EXPECT_EQ(classify_mapping(v[0], true).cls, MC::kFile);  // the caller's stat decides
}

const Vma* find_vma(const std::vector<Vma>& vmas, const void* addr) {
  for (const auto& v : vmas)
    if (v.start == reinterpret_cast<uint64_t>(addr)) return &v;
  return nullptr;
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The field's GPU stand-in: a perf_event ring buffer in this very process.
TEST(ClassifyMapping, OwnPerfRingBufferIsRefusedAndNamed) {
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_DUMMY;
  attr.disabled = 1;
  attr.exclude_kernel = 1;
  UniqueFd perf(
      static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC)));
  if (!perf.valid()) GTEST_SKIP() << "perf_event_open: " << std::strerror(errno);
  const size_t len = 2 * 4096;  // metadata page + one data page
  void* ring = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, perf.get(), 0);
  ASSERT_NE(ring, MAP_FAILED) << std::strerror(errno);
  UniqueMapping guard(ring, len);

  auto vmas = read_smaps(0);
  ASSERT_TRUE(vmas.ok()) << vmas.error().describe();
  const Vma* v = find_vma(*vmas, ring);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->name, "anon_inode:[perf_event]");
  EXPECT_TRUE(v->shared);
  EXPECT_TRUE(v->vm_flags.has(VmFlag::kPfnMap));
  EXPECT_TRUE(v->vm_flags.has(VmFlag::kIo));

  auto d = classify_mapping(*v, is_regular_file(v->name));
  ASSERT_EQ(d.cls, MC::kRefuse);
  const std::string line =
      format_offender({v->start, v->end, v->name, v->vm_flags_text(), d.reason});
  char range[64];
  std::snprintf(range, sizeof range, "%lx-%lx ", static_cast<unsigned long>(v->start),
                static_cast<unsigned long>(v->end));
  EXPECT_EQ(line.rfind(range, 0), 0u) << line;
  EXPECT_NE(line.find("anon_inode:[perf_event]"), std::string::npos) << line;
  EXPECT_NE(line.find("VmFlags: " + v->vm_flags_text() + "]"), std::string::npos) << line;
  EXPECT_NE(line.find(d.reason), std::string::npos) << line;
}

// The names below come from the kernel, not from a sample: they must land where kSmaps says.
TEST(ClassifyMapping, OwnSharedMappingsAreClassifiedByTheirKernelNames) {
  void* sa = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(sa, MAP_FAILED);
  UniqueMapping sa_guard(sa, 4096);

  UniqueFd memfd(::memfd_create("policy-test", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(::ftruncate(memfd.get(), 4096), 0);
  void* mf = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  ASSERT_NE(mf, MAP_FAILED);
  UniqueMapping mf_guard(mf, 4096);

  const int shm_id = ::shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  ASSERT_GE(shm_id, 0) << std::strerror(errno);
  void* sysv = ::shmat(shm_id, nullptr, 0);
  ::shmctl(shm_id, IPC_RMID, nullptr);  // gone once detached
  ASSERT_NE(sysv, reinterpret_cast<void*>(-1));

  auto vmas = read_smaps(0);
  ::shmdt(sysv);
  ASSERT_TRUE(vmas.ok()) << vmas.error().describe();
  struct Case {
    void* addr;
    MappingClass cls;
    const char* name_prefix;
  };
  for (const Case& c : {Case{sa, MC::kSharedAnon, "/dev/zero (deleted)"},
                        Case{mf, MC::kRefuse, "/memfd:policy-test"},
                        Case{sysv, MC::kRefuse, "/SYSV"}}) {
    const Vma* v = find_vma(*vmas, c.addr);
    ASSERT_NE(v, nullptr) << c.name_prefix;
    EXPECT_EQ(v->name.rfind(c.name_prefix, 0), 0u) << v->name;
    EXPECT_EQ(classify_mapping(*v, is_regular_file(v->name)).cls, c.cls) << v->name;
  }
}

// The test binary itself is an ordinary single-threaded program: nothing in it may be refused,
// and its vDSO pair must be recognised.
TEST(ClassifyMapping, EveryMappingOfThisProcessIsSupported) {
  auto vmas = read_smaps(0);
  ASSERT_TRUE(vmas.ok()) << vmas.error().describe();
  int vdso = 0, vvar = 0;
  for (const auto& v : *vmas) {
    auto d = classify_mapping(v, is_regular_file(v.name));
    EXPECT_NE(d.cls, MC::kRefuse)
        << format_offender({v.start, v.end, v.name, v.vm_flags_text(), d.reason});
    vdso += d.cls == MC::kVdso;
    vvar += d.cls == MC::kVvar;
  }
  EXPECT_EQ(vdso, 1);
  EXPECT_EQ(vvar, 1);
}

TEST(ClassifyFd, StdioIsTheLaunchersOwnWhateverItIs) {
  for (int fd : {0, 1, 2}) {
    EXPECT_EQ(classify_fd(fd, "socket:[123]", S_IFSOCK).cls, FdClass::kStdio);
    EXPECT_EQ(classify_fd(fd, "/dev/pts/3", S_IFCHR | 0620).cls, FdClass::kStdio);
    EXPECT_EQ(classify_fd(fd, "pipe:[9]", S_IFIFO).cls, FdClass::kStdio);
  }
  EXPECT_NE(classify_fd(3, "pipe:[9]", S_IFIFO).cls, FdClass::kStdio);
}

TEST(ClassifyFd, EveryKindOfTarget) {
  struct Case {
    const char* target;
    unsigned mode;
    FdClass cls;
    const char* reason;
  };
  const Case cases[] = {
      {"/home/u/data.db", S_IFREG | 0644, FdClass::kRegular, ""},
      {"/srv/calc", S_IFDIR | 0755, FdClass::kDirectory, ""},
      {"/dev/null", S_IFCHR | 0666, FdClass::kCharDevice, ""},
      {"/dev/urandom", S_IFCHR | 0666, FdClass::kCharDevice, ""},
      {"/dev/dri/renderD128", S_IFCHR | 0666, FdClass::kRefuse, "character device"},
      {"/dev/pts/3", S_IFCHR | 0620, FdClass::kRefuse, "character device"},
      {"/dev/nullx", S_IFCHR | 0666, FdClass::kRefuse, "character device"},
      {"/run/app.fifo", S_IFIFO | 0600, FdClass::kRefuse, "named pipe"},
      {"/tmp/scratch (deleted)", S_IFREG | 0600, FdClass::kDeleted, ""},
      {"/tmp/fifo (deleted)", S_IFIFO | 0600, FdClass::kRefuse, "deleted"},
      {"/memfd:jit (deleted)", S_IFREG | 0777, FdClass::kMemfd, ""},
      {"/memfd:jit", S_IFREG | 0777, FdClass::kRegular, ""},  // a file of that name
      {"socket:[5550]", S_IFSOCK | 0777, FdClass::kSocket, ""},
      {"pipe:[4242]", S_IFIFO | 0600, FdClass::kPipe, ""},
      {"anon_inode:[eventfd]", 0600, FdClass::kEventfd, ""},
      {"anon_inode:[eventpoll]", 0600, FdClass::kEpoll, ""},
      {"anon_inode:[timerfd]", 0600, FdClass::kTimerfd, ""},
      {"anon_inode:[signalfd]", 0600, FdClass::kSignalfd, ""},
      {"anon_inode:inotify", 0600, FdClass::kInotify, ""},
      {"anon_inode:[fanotify]", 0600, FdClass::kRefuse, "anon_inode:[fanotify]"},
      {"anon_inode:[pidfd]", 0600, FdClass::kRefuse, "anon_inode:[pidfd]"},
      {"anon_inode:[perf_event]", 0600, FdClass::kRefuse, "anon_inode:[perf_event]"},
      {"anon_inode:[io_uring]", 0600, FdClass::kRefuse, "anon_inode:[io_uring]"},
      {"net:[4026531840]", S_IFREG | 0444, FdClass::kRefuse, "net:[4026531840]"},
      {"/var/lib/gone", 0, FdClass::kRefuse, "unsupported"},  // stat failed
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target);
    auto d = classify_fd(7, c.target, c.mode);
    EXPECT_EQ(d.cls, c.cls) << d.reason;
    if (c.cls == FdClass::kRefuse) {
      EXPECT_NE(d.reason.find(c.reason), std::string::npos) << d.reason;
    } else {
      EXPECT_EQ(d.reason, "");
    }
  }
}

// Targets and modes exactly as /proc/self/fd and fstat give them for this process's own fds.
TEST(ClassifyFd, OwnFdsAsTheKernelNamesThem) {
  char path[] = "/tmp/prewarm-policy-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  auto dir = open_fd("/tmp", O_RDONLY | O_DIRECTORY);
  auto null = open_fd("/dev/null", O_RDWR);
  ASSERT_TRUE(dir.ok() && null.ok());
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  UniqueFd ev(::eventfd(0, EFD_CLOEXEC));
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(ev.valid() && sock.valid());
  UniqueFd deleted(::open(path, O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::unlink(path), 0);

  auto classify_own = [](int fd) {
    char target[PATH_MAX] = "";
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    EXPECT_GT(n, 0) << link;
    struct stat st {};
    const unsigned mode = ::fstat(fd, &st) == 0 ? st.st_mode : 0;
    return classify_fd(fd, target, mode).cls;
  };
  EXPECT_EQ(classify_own(dir->get()), FdClass::kDirectory);
  EXPECT_EQ(classify_own(null->get()), FdClass::kCharDevice);
  EXPECT_EQ(classify_own(pr.get()), FdClass::kPipe);
  EXPECT_EQ(classify_own(ev.get()), FdClass::kEventfd);
  EXPECT_EQ(classify_own(sock.get()), FdClass::kSocket);
  EXPECT_EQ(classify_own(deleted.get()), FdClass::kDeleted);
}

TEST(FormatOffender, MappingLineHasRangeNameFlagsAndReason) {
  EXPECT_EQ(format_offender({0x7f1c20000000, 0x7f1c20200000, "/dev/dri/renderD128",
                             "rd wr sh mr mw me ms pf io dc de dd", "GPU buffer"}),
            "7f1c20000000-7f1c20200000 /dev/dri/renderD128 "
            "[VmFlags: rd wr sh mr mw me ms pf io dc de dd]: GPU buffer");
}

TEST(FormatOffender, AnonymousMappingAndFdOffenders) {
  EXPECT_EQ(format_offender({0x1000, 0x3000, "", "rd wr io", "device memory"}),
            "1000-3000 (anonymous) [VmFlags: rd wr io]: device memory");
  EXPECT_EQ(format_offender({0, 0, "fd 5 -> socket:[5550]", "", "socket"}),
            "fd 5 -> socket:[5550]: socket");
}

ThreadInfo plain_thread(pid_t tid, const char* comm) {
  ThreadInfo t;
  t.tid = tid;
  t.comm = comm;
  t.credentials = "Uid:\t0\t0\t0\t0\nSeccomp:\t0\n";
  return t;
}

TEST(CheckThreads, ThreadsAloneAreNoOffence) {
  std::vector<ThreadInfo> threads{plain_thread(10, "app")};
  for (int i = 1; i < 16; ++i) threads.push_back(plain_thread(10 + i, "worker"));
  EXPECT_TRUE(check_threads(threads, 0).empty());
}

TEST(CheckThreads, TooManyThreads) {
  std::vector<ThreadInfo> threads(kMaxThreads + 1, plain_thread(7, "w"));
  auto o = check_threads(threads, 0);
  ASSERT_EQ(o.size(), 1u);
  const std::string line = format_offender(o[0]);
  EXPECT_EQ(line.rfind("threads: ", 0), 0u) << "no address range: " << line;
  EXPECT_NE(line.find(std::to_string(kMaxThreads + 1) + " threads"), std::string::npos) << line;
}

TEST(CheckThreads, PendingSignalsAreNamed) {
  std::vector<ThreadInfo> threads{plain_thread(10, "app"), plain_thread(11, "worker")};
  threads[1].pending = 1ull << (SIGUSR2 - 1);
  auto o = check_threads(threads, 1ull << (SIGTERM - 1) | 1ull << 40);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(format_offender(o[0]), "signals: pending for the process and not carried: SIGTERM, signal 41");
  EXPECT_EQ(format_offender(o[1]), "thread 11 (worker): signals pending for the thread and not carried: SIGUSR2");
}

TEST(CheckThreads, DifferingCredentialsAndHeldRobustMutexes) {
  std::vector<ThreadInfo> threads{plain_thread(10, "app"), plain_thread(11, "setuid"), plain_thread(12, "locker")};
  threads[1].credentials = "Uid:\t0\t1000\t0\t0\nSeccomp:\t0\n";
  threads[2].robust_held = {0x7f0000001000};
  auto o = check_threads(threads, 0);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_NE(format_offender(o[0]).find("thread 11 (setuid): its credentials"), std::string::npos);
  EXPECT_NE(format_offender(o[1]).find("thread 12 (locker): holds a robust mutex at 0x7f0000001000"),
            std::string::npos);
}

// A kernel without PTRACE_GET_RSEQ_CONFIGURATION (before 5.13) cannot show the registration: a
// refusal, never an image without it.
TEST(CheckThreads, UnreadableRseqIsRefused) {
  std::vector<ThreadInfo> threads{plain_thread(10, "app")};
  threads[0].rseq_unreadable = "PTRACE_GET_RSEQ_CONFIGURATION: Input/output error";
  auto o = check_threads(threads, 0);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_NE(format_offender(o[0]).find("rseq registration cannot be read"), std::string::npos) << format_offender(o[0]);
}

TEST(CredentialLines, OnlyCredentialsAndSeccomp) {
  const std::string status =
      "Name:\tapp\nState:\tS (sleeping)\nUid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t2 3\n"
      "SigBlk:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n"
      "Seccomp_filters:\t1\nCpus_allowed:\t3\n";
  EXPECT_EQ(credential_lines(status),
            "Uid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t2 3\nCapEff:\t0000000000000000\n"
            "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n");
}

}  // namespace
}  // namespace prewarm::policy
