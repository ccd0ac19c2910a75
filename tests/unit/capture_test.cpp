// End-to-end tests of run_capture_child(CaptureRequest) as a function in a forked child, against
// real processes: an app that stays itself is captured with its files hashed as its user (so a
// file that user cannot read fails the capture); one that runs exec or changes its uid after it
// became ready is refused and no image is written.
#include "prewarmd/capture.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "snapshot/image.h"
#include "snapshot/proc_identity.h"
#include "snapshot/proc_stat.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uid_t kUser = 12345;
constexpr uid_t kNobody = 65534;
constexpr uid_t kKeep = static_cast<uid_t>(-1);

std::string temp_dir(mode_t mode) {
  char tmpl[] = "/tmp/capture_test.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr || ::chmod(tmpl, mode) != 0) std::abort();
  return tmpl;
}

// The app: a forked child that runs as `uid` (dumpable, like a user's own launcher), says it is
// ready and on "go" either execs `argv` or, with no argv, switches to `later_uid` and waits.
struct App {
  pid_t pid = -1;
  UniqueFd pidfd, go;

  App(uid_t uid, std::vector<std::string> argv, uid_t later_uid = kKeep) {
    int ready[2], go_pipe[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go_pipe, O_CLOEXEC) != 0) std::abort();
    pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_RDWR);
      for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
      if (uid != kKeep && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
                           ::setresuid(uid, uid, uid) != 0 || ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0))
        ::_exit(90);
      char b = 'r';
      if (::write(ready[1], &b, 1) != 1) ::_exit(91);
      if (::read(go_pipe[0], &b, 1) != 1) ::_exit(0);
      if (argv.empty()) {
        if (::setresuid(later_uid, later_uid, later_uid) != 0) ::_exit(92);
        for (;;) ::pause();
      }
      ::close_range(3, ~0u, 0);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(93);
    }
    ::close(ready[1]);
    ::close(go_pipe[0]);
    char b = 0;
    if (::read(ready[0], &b, 1) != 1) std::abort();
    ::close(ready[0]);
    pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    go.reset(go_pipe[1]);
  }
  ~App() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  void release() {
    char b = 'g';
    if (::write(go.get(), &b, 1) != 1) std::abort();
  }
  // Polls read_identity until `done` holds (the exec or uid change has happened) and the process
  // sleeps: an exec is visible in /proc before it has finished laying out the new mm.
  template <typename F>
  bool wait_for(F done) {
    for (int i = 0; i < 500; ++i) {
      auto id = read_identity(pid, pidfd.get());
      if (id && done(*id) && state() == 'S') return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  char state() {
    auto s = read_proc_stat(pid);
    return s ? s->state() : '?';
  }
};

ino_t ino_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "a capture runs as root and drops to the app's user";
    state_ = temp_dir(0700);  // like prewarmd's state directory: root's alone
    ASSERT_EQ(::mkdir((state_ + "/incoming").c_str(), 0700), 0);
    incoming_ = state_ + "/incoming/1-1";
    files_ = temp_dir(0755);
  }
  void TearDown() override {
    if (!state_.empty()) (void)std::system(("rm -rf " + state_ + " " + files_).c_str());
  }

  // At the app's ready point: what the daemon takes then.
  CaptureRequest request(App& app, uid_t uid) {
    CaptureRequest req;
    req.pid = app.pid;
    req.pidfd = app.pidfd.get();
    auto id = read_identity(app.pid, app.pidfd.get());
    EXPECT_TRUE(id.ok()) << id.error().describe();
    if (id) req.at_ready = *id;
    auto mem = open_mm_handle(app.pid);
    EXPECT_TRUE(mem.ok());
    if (mem) mem_ = std::move(*mem);
    req.mem_fd = mem_.get();
    req.uid = uid;
    req.gid = uid;
    req.incoming = incoming_;
    req.ctx.app = "t";
    req.ctx.uid = uid;
    req.ctx.gid = uid;
    return req;
  }

  // Runs the capture in a forked child, as the daemon does; returns its exit code.
  int capture(const CaptureRequest& req) {
    pid_t child = ::fork();
    if (child == 0) ::_exit(run_capture_child(req));
    int st = 0;
    if (::waitpid(child, &st, 0) != child || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
  }

  std::string write_file(const std::string& name, const std::string& text, mode_t mode) {
    std::string p = files_ + "/" + name;
    std::ofstream(p) << text;
    if (::chmod(p.c_str(), mode) != 0) std::abort();
    return p;
  }

  bool image_exists() {
    struct stat st {};
    return ::lstat(incoming_.c_str(), &st) == 0;
  }
  // Only the result file may be in incoming/ after a refusal: no image, no temporary directory.
  std::vector<std::string> incoming_entries() {
    std::vector<std::string> out;
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir((state_ + "/incoming").c_str()), ::closedir);
    while (dirent* e = ::readdir(d.get()))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    return out;
  }

  std::string state_, incoming_, files_;
  UniqueFd mem_;
};

TEST_F(CaptureTest, AnAppThatStaysItselfIsCapturedWithItsFilesHashedAsItsUser) {
  App app(kUser, {"/usr/bin/sleep", "60"});
  app.release();
  ASSERT_TRUE(app.wait_for([](const ProcessIdentity& id) { return id.exe_ino == ino_of("/usr/bin/sleep"); }));
  CaptureRequest req = request(app, kUser);
  const std::string watched = write_file("watched", "readable by all\n", 0644);
  req.watch = {watched};
  EXPECT_EQ(capture(req), kCaptureOk);
  CaptureResult r = read_capture_result(incoming_);
  ASSERT_EQ(r.status, "ok") << r.message;
  EXPECT_EQ(r.key.size(), 32u);
  bool saw_sleep = false, saw_watched = false;
  for (const auto& f : r.files) {
    saw_sleep |= f.path == "/usr/bin/sleep";
    saw_watched |= f.path == watched;
    EXPECT_EQ(f.content_hash.size(), 32u) << f.path;
  }
  EXPECT_TRUE(saw_sleep);
  EXPECT_TRUE(saw_watched);
  auto img = load_image(incoming_);
  ASSERT_TRUE(img.ok()) << img.error().describe();
  EXPECT_EQ(static_cast<pid_t>(img->snap.process().pid()), app.pid);
  EXPECT_NE(app.state(), 't');  // let go after the dump
}

TEST_F(CaptureTest, AFileTheAppsUserCannotReadFailsTheCaptureInsteadOfBeingHashed) {
  App app(kUser, {"/usr/bin/sleep", "60"});
  app.release();
  ASSERT_TRUE(app.wait_for([](const ProcessIdentity& id) { return id.exe_ino == ino_of("/usr/bin/sleep"); }));
  CaptureRequest req = request(app, kUser);
  const std::string pin = write_file("pin", "123456\n", 0600);  // root's
  req.watch = {pin};
  EXPECT_EQ(capture(req), kCaptureFailed);
  CaptureResult r = read_capture_result(incoming_);
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(r.message, "cannot record " + pin + ": open " + pin + ": Permission denied");
  EXPECT_TRUE(r.key.empty());
  EXPECT_TRUE(r.files.empty());
}

// A copy of sleep, setuid to nobody, that the app's user can run.
struct SetuidSleep {
  std::string dir = temp_dir(0755), path = dir + "/sleep";
  SetuidSleep() {
    if (std::system(("cp /usr/bin/sleep " + path).c_str()) != 0 || ::chown(path.c_str(), kNobody, kNobody) != 0 ||
        ::chmod(path.c_str(), 04755) != 0)
      std::abort();
  }
  ~SetuidSleep() { (void)std::system(("rm -rf " + dir).c_str()); }
  bool nosuid() const {
    struct statvfs v {};
    return ::statvfs(dir.c_str(), &v) == 0 && (v.f_flag & ST_NOSUID);
  }
};

TEST_F(CaptureTest, AnAppThatRanASetuidProgramAfterReadyIsRefused) {
  SetuidSleep suid;
  if (suid.nosuid()) GTEST_SKIP() << suid.dir << " is on a nosuid filesystem";
  App app(kUser, {suid.path, "60"});
  CaptureRequest req = request(app, kUser);  // ready: still the user's own program
  app.release();
  ASSERT_TRUE(app.wait_for([&](const ProcessIdentity& id) { return id.exe_ino == ino_of(suid.path); }));
  EXPECT_EQ(capture(req), kCaptureRefused);
  CaptureResult r = read_capture_result(incoming_);
  EXPECT_EQ(r.status, "refused");
  EXPECT_EQ(r.message,
            "pid " + std::to_string(app.pid) + " changed its effective uid from 12345 to 65534 since it was launched");
  EXPECT_FALSE(image_exists());
  EXPECT_TRUE(incoming_entries().empty());  // the result file was read and removed; nothing else
  EXPECT_NE(app.state(), 't');              // detached, running on
}

TEST_F(CaptureTest, AnAppThatRanAnyExecAfterReadyIsRefused) {
  App app(kUser, {"/usr/bin/sleep", "60"});
  CaptureRequest req = request(app, kUser);
  app.release();
  ASSERT_TRUE(app.wait_for([](const ProcessIdentity& id) { return id.exe_ino == ino_of("/usr/bin/sleep"); }));
  EXPECT_EQ(capture(req), kCaptureRefused);
  CaptureResult r = read_capture_result(incoming_);
  EXPECT_EQ(r.status, "refused");
  EXPECT_EQ(r.message, "pid " + std::to_string(app.pid) + " ran exec after it became ready");
  EXPECT_FALSE(image_exists());
}

TEST_F(CaptureTest, ARootAppThatChangedItsUidAfterReadyIsRefused) {
  App app(kKeep, {}, kNobody);
  CaptureRequest req = request(app, 0);
  app.release();
  ASSERT_TRUE(app.wait_for([](const ProcessIdentity& id) { return id.euid == kNobody; }));
  EXPECT_EQ(capture(req), kCaptureRefused);
  CaptureResult r = read_capture_result(incoming_);
  EXPECT_EQ(r.status, "refused");
  EXPECT_EQ(r.message, "pid " + std::to_string(app.pid) + " changed its real uid from 0 to 65534 since it was launched");
  EXPECT_FALSE(image_exists());
}

TEST_F(CaptureTest, WithoutAMemoryHandleNothingIsDumped) {
  App app(kUser, {"/usr/bin/sleep", "60"});
  app.release();
  ASSERT_TRUE(app.wait_for([](const ProcessIdentity& id) { return id.exe_ino == ino_of("/usr/bin/sleep"); }));
  CaptureRequest req = request(app, kUser);
  req.mem_fd = -1;
  EXPECT_EQ(capture(req), kCaptureRefused);
  CaptureResult r = read_capture_result(incoming_);
  EXPECT_EQ(r.status, "refused");
  EXPECT_FALSE(image_exists());
}

}  // namespace
}  // namespace prewarm
