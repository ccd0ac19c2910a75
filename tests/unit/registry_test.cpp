// Tests that the registry file keeps every field across a save and load, is private and replaced
// atomically, and that a damaged or foreign file is an error rather than an empty registry.
#include "prewarmd/registry.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

namespace fs = std::filesystem;

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-registry-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    path_ = scratch_ + "/registry.json";
  }
  void TearDown() override { fs::remove_all(scratch_); }

  void write_text(const std::string& text) {
    auto fd = open_fd(path_, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(fd.ok()) << fd.error().describe();
    ASSERT_TRUE(write_all(fd->get(), text.data(), text.size()).ok());
  }

  // A registry file holding one app "calc" whose config has `config_extra` merged in.
  std::string one_app(const std::string& version, const std::string& config_override = "") {
    std::string config = config_override.empty()
                             ? R"({"uid":1000,"gid":1000,"argv":["/usr/bin/calc"],"cwd":"/","ready":"idle:500"})"
                             : config_override;
    return R"({"version":)" + version + R"(,"apps":{"calc":{"config":)" + config +
           R"(,"status":{"state":"none"}}}})";
  }

  // Loads path_ and expects an error that names the file (the daemon logs it as is).
  void expect_load_error(const std::string& what) {
    Registry reg;
    try {
      auto r = reg.load(path_);
      ASSERT_FALSE(r.ok()) << what << " loaded as a registry of " << reg.apps.size() << " apps";
      EXPECT_NE(r.error().message.find(path_), std::string::npos) << r.error().describe();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": load threw " << e.what() << " instead of returning an error";
    }
  }

  std::string scratch_, path_;
};

App sample_app(const std::string& name) {
  App a;
  a.config.name = name;
  a.config.uid = 1234;
  a.config.gid = 5678;
  a.config.argv = {"/usr/bin/" + name, "--flag", "with space", ""};
  a.config.cwd = "/srv/" + name;
  a.config.ready = policy::ReadyMode{policy::ReadyMode::kDelay, 1500};
  a.config.watch = {"/etc/" + name + ".conf", "/var/lib/" + name};
  a.status.state = policy::AppState::kStale;
  a.status.reason = "/usr/lib/libfoo.so.1 changed (mtime)";
  return a;
}

TEST_F(RegistryTest, SaveLoadRoundTrip) {
  Registry reg;
  reg.apps["calc"] = sample_app("calc");
  App notify = sample_app("web.v2");
  notify.config.ready = policy::ReadyMode{policy::ReadyMode::kNotify, 0};
  notify.config.watch.clear();
  notify.status = AppStatus{};
  reg.apps["web.v2"] = notify;
  ASSERT_TRUE(reg.save(path_).ok());

  Registry back;
  auto r = back.load(path_);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  ASSERT_EQ(back.apps.size(), 2u);
  for (const auto& [name, want] : reg.apps) {
    ASSERT_TRUE(back.apps.count(name)) << name;
    const App& got = back.apps.at(name);
    EXPECT_EQ(got.config.name, want.config.name);
    EXPECT_EQ(got.config.uid, want.config.uid);
    EXPECT_EQ(got.config.gid, want.config.gid);
    EXPECT_EQ(got.config.argv, want.config.argv);
    EXPECT_EQ(got.config.cwd, want.config.cwd);
    EXPECT_EQ(got.config.ready.kind, want.config.ready.kind);
    EXPECT_EQ(got.config.ready.ms, want.config.ready.ms);
    EXPECT_EQ(got.config.watch, want.config.watch);
    EXPECT_EQ(got.status.state, want.status.state);
    EXPECT_EQ(got.status.reason, want.status.reason);
  }
}

// Saves reuse each app's configuration text while its generation stands: a re-registration (a
// new generation) is written anew, a status change always, a removed app not at all.
TEST_F(RegistryTest, LaterSavesCarryEveryChange) {
  Registry reg;
  reg.apps["calc"] = sample_app("calc");
  reg.apps["gone"] = sample_app("gone");
  ASSERT_TRUE(reg.save(path_).ok());
  App& calc = reg.apps["calc"];
  calc.config.argv = {"/usr/bin/bc", "-q"};
  calc.generation = App::next_generation();
  calc.status.reason = "capture failed: 2";
  reg.apps.erase("gone");
  reg.apps["new"] = sample_app("new");
  ASSERT_TRUE(reg.save(path_).ok());
  Registry back;
  auto r = back.load(path_);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(back.apps.size(), 2u);
  EXPECT_FALSE(back.apps.count("gone"));
  ASSERT_TRUE(back.apps.count("calc") && back.apps.count("new"));
  EXPECT_EQ(back.apps.at("calc").config.argv, calc.config.argv);
  EXPECT_EQ(back.apps.at("calc").status.reason, "capture failed: 2");
  EXPECT_EQ(back.apps.at("new").config.name, "new");
}

TEST_F(RegistryTest, EmptyRegistryRoundTrips) {
  ASSERT_TRUE(Registry{}.save(path_).ok());
  Registry back;
  auto r = back.load(path_);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(back.apps.empty());
}

TEST_F(RegistryTest, SavedFileIsPrivate) {
  const mode_t old = ::umask(0);  // the mode must not depend on the caller's umask
  Registry reg;
  reg.apps["calc"] = sample_app("calc");
  auto r = reg.save(path_);
  ::umask(old);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(mode_of(path_), 0600u);
}

TEST_F(RegistryTest, SaveLeavesOnlyTheRegistryFile) {
  Registry reg;
  reg.apps["calc"] = sample_app("calc");
  ASSERT_TRUE(reg.save(path_).ok());
  reg.apps["other"] = sample_app("other");
  ASSERT_TRUE(reg.save(path_).ok());  // replacing an existing file
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"registry.json"});
}

TEST_F(RegistryTest, MissingFileIsAnEmptyRegistry) {
  Registry reg;
  auto r = reg.load(path_);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(reg.apps.empty());
}

TEST_F(RegistryTest, UnreadableFileIsAnError) {
  ASSERT_EQ(::mkdir(path_.c_str(), 0700), 0);  // a directory where the file should be
  Registry reg;
  EXPECT_FALSE(reg.load(path_).ok());
}

TEST_F(RegistryTest, CorruptJsonIsAnError) {
  write_text("{\"version\":1,\"apps\":{");
  expect_load_error("truncated JSON");
  write_text("not json at all");
  expect_load_error("text");
  write_text("");
  expect_load_error("an empty file");
  write_text("[1,2,3]");
  expect_load_error("a JSON array");

  // A good file cut short, as a crash without the atomic rename would leave it.
  Registry reg;
  reg.apps["calc"] = sample_app("calc");
  ASSERT_TRUE(reg.save(path_).ok());
  auto text = read_file(path_);
  ASSERT_TRUE(text.ok());
  write_text(text->substr(0, text->size() / 2));
  expect_load_error("a half-written registry");
}

TEST_F(RegistryTest, UnknownVersionIsAnError) {
  write_text(one_app("1"));
  Registry ok_reg;
  auto good = ok_reg.load(path_);
  ASSERT_TRUE(good.ok()) << good.error().describe();  // the fixture itself is loadable
  ASSERT_EQ(ok_reg.apps.size(), 1u);

  for (const char* v : {"2", "0", "-1"}) {
    write_text(one_app(v));
    expect_load_error(std::string("version ") + v);
  }
  write_text(R"({"apps":{}})");
  expect_load_error("no version");

  Registry reg;
  write_text(one_app("2"));
  auto r = reg.load(path_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("version"), std::string::npos) << r.error().describe();
}

// A version of the wrong JSON type is damage like any other; it must not escape as an exception.
TEST_F(RegistryTest, VersionOfTheWrongTypeIsAnError) {
  write_text(one_app("\"1\""));
  expect_load_error("a string version");
  write_text(one_app("[1]"));
  expect_load_error("an array version");
}

// One app with a bad configuration costs that app (reported in `skipped`), never the others: a
// phantom entry must not stop prewarmd from starting.
TEST_F(RegistryTest, InvalidAppIsSkippedOthersKept) {
  const std::string good = R"("calc":{"config":{"uid":0,"gid":0,"argv":["/bin/x"],"cwd":"/","ready":"idle"},"status":{}})";
  for (const std::string bad : {
           R"("a":{"config":{"uid":1000,"gid":1000,"argv":[],"cwd":"/","ready":"idle"},"status":{}})",
           R"("a":{"config":{"uid":1000,"gid":1000,"argv":["/bin/x"],"cwd":"/","ready":"soon"},"status":{}})",
           R"("a":{"config":{"uid":1000,"gid":1000,"argv":["/bin/x"],"cwd":"/"},"status":{}})",
           R"("a":{"config":{"uid":"root","gid":1000,"argv":["/bin/x"],"cwd":"/","ready":"idle"},"status":{}})",
           R"("../etc":{"config":{"uid":0,"gid":0,"argv":["/bin/x"],"cwd":"/","ready":"idle"},"status":{}})",
           R"("a":{"config":{"uid":0,"gid":0,"argv":["x"],"cwd":"/","ready":"idle"},"status":{}})",
           R"("a":{"status":{}})", R"("a":7)"}) {
    write_text(R"({"version":1,"apps":{)" + bad + "," + good + "}}");
    Registry reg;
    auto r = reg.load(path_);
    ASSERT_TRUE(r.ok()) << bad << ": " << r.error().describe();
    EXPECT_EQ(reg.apps.size(), 1u) << bad;
    EXPECT_TRUE(reg.apps.count("calc")) << bad;
    EXPECT_EQ(reg.skipped.size(), 1u) << bad;
  }
  write_text(R"({"version":1})");
  expect_load_error("no apps");
}

TEST_F(RegistryTest, MissingStatusIsNone) {
  write_text(R"({"version":1,"apps":{"calc":{"config":{"uid":0,"gid":0,"argv":["/bin/x"],"cwd":"/","ready":"idle"}}}})");
  Registry reg;
  ASSERT_TRUE(reg.load(path_).ok());
  ASSERT_TRUE(reg.apps.count("calc"));
  EXPECT_EQ(reg.apps.at("calc").status.state, policy::AppState::kNone);
}

// The per-app copies a launch reads while prewarmd is down: owned by the app's user, read-only,
// believed only for the uid that owns the file.
TEST_F(RegistryTest, AppCopiesRoundTripAndAreBelievedOnlyForTheirOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (hands copies to another uid)";
  const std::string apps = scratch_ + "/apps";
  ASSERT_EQ(::mkdir(apps.c_str(), 0711), 0);
  auto dir = open_fd(apps, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir.ok());
  App a = sample_app("calc");
  const passwd* nobody = ::getpwnam("nobody");
  if (!nobody) GTEST_SKIP() << "needs a user named nobody";
  const uid_t u = nobody->pw_uid;
  a.config.uid = u;
  a.config.gid = 0;  // as if its owner had edited the copy to name root's group
  ASSERT_TRUE(write_app_copy(dir->get(), a.config).ok());
  struct stat st {};
  const std::string mine = apps + "/" + std::to_string(u);
  ASSERT_EQ(::stat(mine.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, u);
  EXPECT_EQ(st.st_mode & 07777, 0500u) << "only its user may look names up in it";
  ASSERT_EQ(::stat((mine + "/calc.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, u);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  auto back = read_app_copy(scratch_, u, "calc");
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(back->argv, a.config.argv);
  EXPECT_EQ(back->cwd, a.config.cwd);
  EXPECT_EQ(back->gid, nobody->pw_gid) << "the group named in a user's own file is not believed";
  // Under another uid's name, or owned by someone else, a copy is not believed.
  EXPECT_FALSE(read_app_copy(scratch_, u - 1, "calc").ok());
  // A directory of another uid's name holding this user's file is not believed.
  const std::string other = apps + "/" + std::to_string(u - 1);
  ASSERT_EQ(::rename(mine.c_str(), other.c_str()), 0);
  EXPECT_FALSE(read_app_copy(scratch_, u - 1, "calc").ok());
  std::vector<std::string> skipped;
  EXPECT_TRUE(read_app_copies(dir->get(), skipped).empty());
  EXPECT_EQ(skipped.size(), 1u);
  ASSERT_EQ(::rename(other.c_str(), mine.c_str()), 0);
  // A symlink is never followed, and a file the user does not own is not believed.
  ASSERT_EQ(::symlink("/etc/passwd", (mine + "/evil.json").c_str()), 0);
  EXPECT_FALSE(read_app_copy(scratch_, u, "evil").ok());
  ASSERT_EQ(::mkdir((apps + "/0").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("/etc/passwd", (apps + "/0/evil.json").c_str()), 0);
  EXPECT_FALSE(read_app_copy(scratch_, 0, "evil").ok());
  // Its user may have made the directory writable: writing a copy puts it back to 0500.
  ASSERT_EQ(::chmod(mine.c_str(), 0700), 0);
  ASSERT_TRUE(write_app_copy(dir->get(), a.config).ok());
  ASSERT_EQ(::stat(mine.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0500u);
  skipped.clear();
  auto all = read_app_copies(dir->get(), skipped);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "calc");
  EXPECT_EQ(all[0].uid, u);
  // An unchanged copy is not written again (same inode); a changed app, or a copy its user
  // edited or chmod'ed, is replaced.
  const std::string file = mine + "/calc.json";
  auto inode = [&] { struct stat s {}; return ::stat(file.c_str(), &s) == 0 ? s.st_ino : 0; };
  const ino_t first = inode();
  ASSERT_TRUE(write_app_copy(dir->get(), a.config).ok());
  EXPECT_EQ(inode(), first) << "an unchanged copy was rewritten";
  a.config.argv.push_back("--more");
  ASSERT_TRUE(write_app_copy(dir->get(), a.config).ok());
  const ino_t second = inode();
  EXPECT_NE(second, first) << "a changed app's copy was not rewritten";
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  ASSERT_TRUE(write_app_copy(dir->get(), a.config).ok());
  EXPECT_NE(inode(), second) << "a copy its user made writable was left so";
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  remove_app_copy(dir->get(), u, "calc");
  EXPECT_FALSE(read_app_copy(scratch_, u, "calc").ok());
}

TEST_F(RegistryTest, AppsThatAreNotAnObjectAreAnError) {
  write_text(R"({"version":1,"apps":[{"config":{"uid":0,"gid":0,"argv":["/bin/x"],"cwd":"/",)"
             R"("ready":"idle"},"status":{}}]})");
  expect_load_error("an apps array");
}

TEST(ValidAppName, AcceptsPlainNames) {
  for (const auto& name : std::vector<std::string>{"calc", "a", "A9", "my-app_2.0", "x.y.z", "a..b",
                                                   std::string(64, 'n')})
    EXPECT_TRUE(valid_app_name(name)) << name;
}

TEST(ValidAppName, RefusesPathsHiddenOptionsAndOddCharacters) {
  for (const auto& name :
       std::vector<std::string>{"", ".", "..", ".hidden", "-rf", "a/b", "/abs", "a b", "tab\t",
                                "new\nline", std::string("nul\0x", 5), "caf\xc3\xa9", "a:b", "a*",
                                std::string(65, 'n')})
    EXPECT_FALSE(valid_app_name(name)) << '"' << name << '"';
}

TEST_F(RegistryTest, WriteFileAtomicWritesContentAndMode) {
  const std::string file = scratch_ + "/out.txt";
  const mode_t old = ::umask(0);
  auto r = write_file_atomic(file, "first\n", 0640);
  ::umask(old);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto text = read_file(file);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "first\n");
  EXPECT_EQ(mode_of(file), 0640u);
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"out.txt"});
}

// The new content arrives by rename: a reader holding the old file keeps the old content.
TEST_F(RegistryTest, WriteFileAtomicReplacesByRename) {
  const std::string file = scratch_ + "/out.txt";
  ASSERT_TRUE(write_file_atomic(file, "old", 0600).ok());
  auto old_fd = open_fd(file, O_RDONLY);
  ASSERT_TRUE(old_fd.ok());
  ASSERT_TRUE(write_file_atomic(file, "new content", 0600).ok());
  auto old_text = read_fd(old_fd->get());
  ASSERT_TRUE(old_text.ok());
  EXPECT_EQ(*old_text, "old");
  auto text = read_file(file);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "new content");
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"out.txt"});
}

TEST_F(RegistryTest, WriteFileAtomicFailureLeavesNoTempFile) {
  // rename(2) of a file over a non-empty directory fails after the temp file was written.
  const std::string target = scratch_ + "/target";
  ASSERT_EQ(::mkdir(target.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((target + "/sub").c_str(), 0700), 0);
  EXPECT_FALSE(write_file_atomic(target, "x", 0600).ok());
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"target"});

  EXPECT_FALSE(write_file_atomic(scratch_ + "/no/such/dir/file", "x", 0600).ok());
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"target"});
}

// A temp file left by an interrupted earlier write must not lend its permissions to the new file.
TEST_F(RegistryTest, WriteFileAtomicIgnoresAStaleTempFile) {
  const std::string file = scratch_ + "/registry.json";
  {
    auto fd = open_fd(file + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(write_all(fd->get(), "stale stale stale", 17).ok());
    ASSERT_EQ(::fchmod(fd->get(), 0644), 0);
  }
  ASSERT_TRUE(write_file_atomic(file, "fresh", 0600).ok());
  auto text = read_file(file);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "fresh");
  EXPECT_EQ(mode_of(file), 0600u);
  EXPECT_EQ(names_in(scratch_), std::set<std::string>{"registry.json"});
}

}  // namespace
}  // namespace prewarm
