// Tests that the snapshot key separates every launch input that matters and only those, and that
// the per-launch stat check names the right reason for each kind of file change.
#include "policy/launch_key.h"

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

using Strings = std::vector<std::string>;

TEST(LaunchEnvironment, DropsPerLaunchVariablesAndSorts) {
  const Strings env = {"ZED=1",
                       "INVOCATION_ID=0123abcd",
                       "NOTIFY_SOCKET=/run/prewarm/notify.sock",
                       "LISTEN_PID=42",
                       "LISTEN_FDS=1",
                       "LISTEN_FDNAMES=control",
                       "PWD=/home/me",
                       "OLDPWD=/tmp",
                       "JOURNAL_STREAM=8:1234",
                       "SYSTEMD_EXEC_PID=77",
                       "MAINPID=77",
                       "MANAGERPID=1",
                       "WATCHDOG_PID=77",
                       "WATCHDOG_USEC=1000",
                       "TRIGGER_UNIT=x.path",
                       "MONITOR_SERVICE_RESULT=success",
                       "PREWARM_LAUNCH=1",
                       "_=/usr/bin/env",
                       "HOME=/home/me",
                       "LANG=C.UTF-8",
                       "PATH=/usr/bin"};
  EXPECT_EQ(launch_environment(env), (Strings{"HOME=/home/me", "LANG=C.UTF-8", "PATH=/usr/bin", "ZED=1"}));
}

// Only the name is compared: a kept variable may mention a dropped one in its value, and a name
// that merely starts like a dropped one is kept.
TEST(LaunchEnvironment, MatchesNamesNotValuesOrNamePrefixes) {
  const Strings env = {"X=PWD=/a", "PWDX=1", "MYPWD=2", "INVOCATION_IDS=3", "LISTEN=4", "A_LISTEN_FDS=5"};
  EXPECT_EQ(launch_environment(env),
            (Strings{"A_LISTEN_FDS=5", "INVOCATION_IDS=3", "LISTEN=4", "MYPWD=2", "PWDX=1", "X=PWD=/a"}));
}

TEST(LaunchEnvironment, DropsEntriesWithoutEquals) {
  EXPECT_EQ(launch_environment({"JUNK", "A=1", ""}), (Strings{"A=1"}));
}

TEST(LaunchEnvironment, KeepsEmptyValuesAndDuplicates) {
  EXPECT_EQ(launch_environment({"B=", "A=1", "A=1"}), (Strings{"A=1", "A=1", "B="}));
}

TEST(StdioKind, EachFileType) {
  EXPECT_EQ(stdio_kind(0, false), "closed");
  EXPECT_EQ(stdio_kind(S_IFIFO | 0600, false), "pipe");
  EXPECT_EQ(stdio_kind(S_IFSOCK | 0777, false), "socket");
  EXPECT_EQ(stdio_kind(S_IFREG | 0644, false), "file");
  EXPECT_EQ(stdio_kind(S_IFDIR | 0755, false), "dir");
  EXPECT_EQ(stdio_kind(S_IFCHR | 0666, false), "chardev");
}

TEST(StdioKind, TtyWinsOverTheFileType) {
  EXPECT_EQ(stdio_kind(S_IFCHR | 0620, true), "tty");
  // isatty() is the authority: a pty is a character device, but it is reported as "tty".
  EXPECT_NE(stdio_kind(S_IFCHR | 0620, true), stdio_kind(S_IFCHR | 0620, false));
}

TEST(StdioKind, ClosedEvenIfTtyFlagIsSet) {
  // st_mode 0 means "not open"; a stale is_tty must not turn it into a terminal.
  EXPECT_EQ(stdio_kind(0, true), "closed");
}

LaunchContext base_context() {
  LaunchContext c;
  c.app = "calc";
  c.argv = {"/usr/bin/calc", "--fast", "input.txt"};
  c.env = {"HOME=/home/me", "LANG=C.UTF-8", "PATH=/usr/bin"};
  c.cwd = "/home/me";
  c.uid = 1000;
  c.gid = 1000;
  c.stdio = {"tty", "tty", "pipe"};
  c.kernel = "6.8.0-45-generic";
  c.xfeatures = 0x2e7;
  c.xsave_size = 2696;
  return c;
}

std::vector<FileRecord> base_files() {
  FileRecord exe;
  exe.path = "/usr/bin/calc";
  exe.id = {2049, 100, 4096, 1, 2};
  exe.content_hash = "00112233445566778899aabbccddeeff";
  FileRecord lib;
  lib.path = "/usr/lib/libfoo.so.1";
  lib.id = {2049, 200, 8192, 3, 4};
  lib.content_hash = "ffeeddccbbaa99887766554433221100";
  return {exe, lib};
}

TEST(SnapshotKey, Is32LowercaseHexDigits) {
  const std::string key = snapshot_key(base_context(), base_files());
  ASSERT_EQ(key.size(), 32u) << key;
  for (char ch : key) EXPECT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) << key;
  // Also for an all-empty context: the leading zeros of each half are kept.
  EXPECT_EQ(snapshot_key(LaunchContext{}, {}).size(), 32u);
}

TEST(SnapshotKey, IsDeterministic) {
  EXPECT_EQ(snapshot_key(base_context(), base_files()), snapshot_key(base_context(), base_files()));
}

// Every input that the restored app would otherwise get wrong changes the key on its own.
TEST(SnapshotKey, ChangesWithEverySingleInput) {
  struct Change {
    const char* what;
    std::function<void(LaunchContext&, std::vector<FileRecord>&)> apply;
  };
  const std::vector<Change> changes = {
      {"app", [](auto& c, auto&) { c.app = "calc2"; }},
      {"argv[0]", [](auto& c, auto&) { c.argv[0] = "/usr/local/bin/calc"; }},
      {"argv[1]", [](auto& c, auto&) { c.argv[1] = "--slow"; }},
      {"argv[2]", [](auto& c, auto&) { c.argv[2] = "input2.txt"; }},
      {"argv appended", [](auto& c, auto&) { c.argv.push_back(""); }},
      {"argv dropped", [](auto& c, auto&) { c.argv.pop_back(); }},
      {"env value", [](auto& c, auto&) { c.env[1] = "LANG=de_DE.UTF-8"; }},
      {"env added", [](auto& c, auto&) { c.env.push_back("DEBUG=1"); }},
      {"env removed", [](auto& c, auto&) { c.env.pop_back(); }},
      {"cwd", [](auto& c, auto&) { c.cwd = "/home/me/src"; }},
      {"uid", [](auto& c, auto&) { c.uid = 1001; }},
      {"gid", [](auto& c, auto&) { c.gid = 1001; }},
      {"stdin", [](auto& c, auto&) { c.stdio[0] = "closed"; }},
      {"stdout", [](auto& c, auto&) { c.stdio[1] = "file"; }},
      {"stderr", [](auto& c, auto&) { c.stdio[2] = "tty"; }},
      {"kernel", [](auto& c, auto&) { c.kernel = "6.8.0-46-generic"; }},
      {"xfeatures", [](auto& c, auto&) { c.xfeatures = 0x207; }},
      {"xsave_size", [](auto& c, auto&) { c.xsave_size = 2440; }},
      {"security label", [](auto& c, auto&) { c.security = "/usr/bin/calc (enforce)\napparmor:7"; }},
      {"file hash", [](auto&, auto& f) { f[1].content_hash[31] = '1'; }},
      {"file path", [](auto&, auto& f) { f[1].path = "/usr/lib/libfoo.so.2"; }},
      {"file added",
       [](auto&, auto& f) {
         FileRecord conf = f[0];
         conf.path = "/etc/calc.conf";
         f.push_back(conf);
       }},
      {"file removed", [](auto&, auto& f) { f.pop_back(); }},
  };
  const std::string base = snapshot_key(base_context(), base_files());
  std::vector<std::string> seen = {base};
  for (const auto& ch : changes) {
    auto ctx = base_context();
    auto files = base_files();
    ch.apply(ctx, files);
    const std::string key = snapshot_key(ctx, files);
    EXPECT_NE(key, base) << "changing " << ch.what << " kept the key";
    for (const auto& other : seen) EXPECT_NE(key, other) << ch.what << " collides with an earlier change";
    seen.push_back(key);
  }
}

// The per-launch stat fields are checked at launch by changed() (snapshot/file_identity.h); only path and content
// are part of the key, so a `touch` or a copy to another inode still finds the image.
TEST(SnapshotKey, IgnoresFileStatFields) {
  auto files = base_files();
  files[0].id = {1, 2, 3, 4, 5};
  EXPECT_EQ(snapshot_key(base_context(), files), snapshot_key(base_context(), base_files()));
}

TEST(SnapshotKey, IndependentOfFileOrder) {
  auto files = base_files();
  std::swap(files[0], files[1]);
  EXPECT_EQ(snapshot_key(base_context(), files), snapshot_key(base_context(), base_files()));
}

TEST(SnapshotKey, IndependentOfEnvironmentOrder) {
  auto ctx = base_context();
  std::swap(ctx.env[0], ctx.env[2]);
  EXPECT_EQ(snapshot_key(ctx, base_files()), snapshot_key(base_context(), base_files()));
}

TEST(SnapshotKey, IndependentOfPerLaunchVariables) {
  auto ctx = base_context();
  ctx.env.insert(ctx.env.begin(), "INVOCATION_ID=5f1e");
  ctx.env.push_back("NOTIFY_SOCKET=/run/prewarm/notify.sock");
  ctx.env.push_back("LISTEN_FDS=2");
  ctx.env.push_back("PWD=/somewhere/else");
  ctx.env.push_back("OLDPWD=/");
  EXPECT_EQ(snapshot_key(ctx, base_files()), snapshot_key(base_context(), base_files()));
}

// Fields are length-prefixed, so moving a boundary between adjacent strings changes the key.
TEST(SnapshotKey, FieldBoundariesMatter) {
  auto a = base_context(), b = base_context();
  a.argv = {"ab", "c"};
  b.argv = {"a", "bc"};
  EXPECT_NE(snapshot_key(a, {}), snapshot_key(b, {}));

  // An argv element moved into the environment block is a different launch, too.
  a = base_context(), b = base_context();
  a.argv = {"/bin/x", "A=1"};
  a.env = {};
  b.argv = {"/bin/x"};
  b.env = {"A=1"};
  EXPECT_NE(snapshot_key(a, {}), snapshot_key(b, {}));

  // And an app name that absorbs the start of argv[0].
  a = base_context(), b = base_context();
  a.app = "calc";
  a.argv[0] = "x";
  b.app = "calcx";
  b.argv[0] = "";
  EXPECT_NE(snapshot_key(a, {}), snapshot_key(b, {}));

  // A file's path and hash are separate fields.
  FileRecord f1, f2;
  f1.path = "/a", f1.content_hash = "bc";
  f2.path = "/ab", f2.content_hash = "c";
  EXPECT_NE(snapshot_key(base_context(), {f1}), snapshot_key(base_context(), {f2}));
}

}  // namespace
}  // namespace prewarm::policy
