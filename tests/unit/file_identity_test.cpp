// FileIdentity: the one "changed" rule (on synthetic identities and on real files whose ctime
// alone moved), its proto and JSON forms, and the restore side using it (open_mapped_files).
#include "snapshot/file_identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "restorer/compat_check.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

const FileIdentity kId{2049, 100, 4096, 1'700'000'000'123'456'789, 1'700'000'000'987'654'321};

std::string reason(const FileIdentity& was, const FileIdentity& now) {
  auto why = changed(was, now);
  return why ? std::string(*why) : "";
}

TEST(FileIdentityChanged, SameIsNothing) { EXPECT_FALSE(changed(kId, kId)); }

TEST(FileIdentityChanged, NamesEachReason) {
  FileIdentity s = kId;
  s.ino += 1;
  EXPECT_EQ(reason(kId, s), "replaced (new inode)");
  s = kId;
  s.dev += 1;  // the same inode number on another filesystem is another file
  EXPECT_EQ(reason(kId, s), "replaced (new inode)");
  s = kId;
  s.size += 1;
  EXPECT_EQ(reason(kId, s), "size changed");
  s = kId;
  s.mtime_ns += 1;
  EXPECT_EQ(reason(kId, s), "modified (mtime)");
  s = kId;
  s.ctime_ns += 1;  // the restore side once ignored this one
  EXPECT_EQ(reason(kId, s), "changed (ctime)");
}

// When several things changed, the reason given is the most telling one.
TEST(FileIdentityChanged, MostSpecificReasonFirst) {
  FileIdentity s = kId;
  s.ino += 1, s.size += 1, s.mtime_ns += 1, s.ctime_ns += 1;
  EXPECT_EQ(reason(kId, s), "replaced (new inode)");
  s = kId;
  s.size += 1, s.mtime_ns += 1, s.ctime_ns += 1;
  EXPECT_EQ(reason(kId, s), "size changed");
  s = kId;
  s.mtime_ns += 1, s.ctime_ns += 1;
  EXPECT_EQ(reason(kId, s), "modified (mtime)");
}

TEST(FileIdentityChanged, DirectoriesCompareByInodeOnly) {
  FileIdentity s = kId;
  s.size += 1, s.mtime_ns += 1, s.ctime_ns += 1;  // an entry added
  EXPECT_TRUE(same_inode(kId, s));
  s.ino += 1;
  EXPECT_FALSE(same_inode(kId, s));
}

TEST(FileIdentityForms, ProtoRoundTrip) {
  pb::FileId p;
  to_proto(kId, &p);
  EXPECT_EQ(p.dev(), kId.dev);
  EXPECT_EQ(p.inode(), kId.ino);
  EXPECT_EQ(p.mtime_ns(), kId.mtime_ns);
  EXPECT_EQ(p.ctime_ns(), kId.ctime_ns);
  EXPECT_EQ(from_proto(p), kId);
}

TEST(FileIdentityForms, JsonRoundTrip) {
  const FileRecord r{"/usr/lib/libfoo.so.1", kId, "00112233445566778899aabbccddeeff"};
  const FileRecord back = nlohmann::json::parse(nlohmann::json(r).dump()).get<FileRecord>();
  EXPECT_EQ(back.path, r.path);
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.content_hash, r.content_hash);
}

// A record exactly as meta.json (store version 1) and capture results have always written it.
TEST(FileIdentityForms, ReadsTheStoredJson) {
  const auto j = nlohmann::json::parse(
      R"({"path":"/usr/bin/calc","dev":2049,"ino":1234567,"size":99999,)"
      R"("mtime_ns":1700000000123456789,"ctime_ns":-1,"hash":"ffeeddccbbaa99887766554433221100"})");
  const FileRecord r = j.get<FileRecord>();
  EXPECT_EQ(r.path, "/usr/bin/calc");
  EXPECT_EQ(r.id, (FileIdentity{2049, 1234567, 99999, 1700000000123456789, -1}));
  EXPECT_EQ(r.content_hash, "ffeeddccbbaa99887766554433221100");
  EXPECT_EQ(nlohmann::json(r), j);  // and writes it the same way
}

TEST(FileIdentityForms, MissingOrMistypedFieldThrows) {
  auto j = nlohmann::json(FileRecord{"/a", kId, "00"});
  j.erase("ctime_ns");
  EXPECT_THROW(j.get<FileRecord>(), nlohmann::json::exception);
  j = nlohmann::json(FileRecord{"/a", kId, "00"});
  j["ino"] = "seven";
  EXPECT_THROW(j.get<FileRecord>(), nlohmann::json::exception);
}

class FileIdentityOnDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/file_identity_test.XXXXXX";
    int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    fd_ = UniqueFd(fd);
    path_ = tmpl;
    ASSERT_EQ(::write(fd_.get(), "version 1\n", 10), 10);
    // A fixed mtime, in the past: what a package installs.
    const timespec times[2] = {{1'600'000'000, 0}, {1'600'000'000, 500}};
    ASSERT_EQ(::futimens(fd_.get(), times), 0);
  }
  void TearDown() override { ::unlink(path_.c_str()); }

  // The next ctime the kernel sets is later than `id`'s: its clock has moved past it.
  static void wait_past_ctime(const FileIdentity& id) {
    for (int i = 0; i < 10'000; ++i) {
      timespec now{};
      ::clock_gettime(CLOCK_REALTIME_COARSE, &now);
      if (now.tv_sec * 1'000'000'000ll + now.tv_nsec > id.ctime_ns) return;
      const timespec ms{0, 1'000'000};
      ::nanosleep(&ms, nullptr);
    }
    GTEST_SKIP() << "CLOCK_REALTIME_COARSE did not pass the file's ctime in 10 s";
  }

  UniqueFd fd_;
  std::string path_;
};

TEST_F(FileIdentityOnDisk, FdAndPathAgreeAndNothingChanged) {
  auto a = identity_of_fd(fd_.get());
  auto b = identity_of_path(path_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->size, 10u);
  EXPECT_EQ(a->mtime_ns, 1'600'000'000'000'000'500ll);
  EXPECT_FALSE(changed(*a, *b));
  EXPECT_FALSE(identity_of_path(path_ + ".missing").ok());
}

// Same size, same mtime (put back), other content: only ctime tells, as after a copy that
// preserves timestamps over the file. Both the launch check and the restore check must see it.
TEST_F(FileIdentityOnDisk, RewriteWithMtimePutBackIsChangedByCtime) {
  auto was = identity_of_fd(fd_.get());
  ASSERT_TRUE(was.ok());
  wait_past_ctime(*was);
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(::pwrite(fd_.get(), "version 2\n", 10, 0), 10);
  const timespec times[2] = {{0, UTIME_OMIT}, {was->mtime_ns / 1'000'000'000, was->mtime_ns % 1'000'000'000}};
  ASSERT_EQ(::futimens(fd_.get(), times), 0);
  auto now = identity_of_fd(fd_.get());
  ASSERT_TRUE(now.ok());
  ASSERT_EQ(now->mtime_ns, was->mtime_ns);
  ASSERT_EQ(now->size, was->size);
  EXPECT_EQ(reason(*was, *now), "changed (ctime)");
}

TEST_F(FileIdentityOnDisk, ChmodIsChangedByCtime) {
  auto was = identity_of_path(path_);
  ASSERT_TRUE(was.ok());
  wait_past_ctime(*was);
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(::fchmod(fd_.get(), 0640), 0);
  auto now = identity_of_path(path_);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(reason(*was, *now), "changed (ctime)");
}

// The restore side (restorer/compat_check.cpp) with the same rule: an executable whose ctime
// alone moved since the dump is refused, naming the reason.
TEST_F(FileIdentityOnDisk, RestoreRefusesAnExecutableWhoseCtimeMoved) {
  auto was = identity_of_fd(fd_.get());
  ASSERT_TRUE(was.ok());
  pb::Snapshot snap;
  snap.mutable_process()->set_exe_path(path_);
  to_proto(*was, snap.mutable_process()->mutable_exe());
  auto opened = open_mapped_files(snap);
  ASSERT_TRUE(opened.ok()) << opened.error().describe();

  wait_past_ctime(*was);
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(::fchmod(fd_.get(), 0640), 0);
  auto refused = open_mapped_files(snap);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("changed since the snapshot: changed (ctime)"), std::string::npos)
      << refused.error().message;
}

}  // namespace
}  // namespace prewarm

TEST(OwnProcPath, IsTheRestoredProcessesOwnEntryOnly) {
  using prewarm::is_own_proc_path;
  for (const char* own : {"/proc/self", "/proc/self/stat", "/proc/self/fd/3", "/proc/thread-self", "/proc/thread-self/comm"})
    EXPECT_TRUE(is_own_proc_path(own)) << own;
  for (const char* other : {"/proc/selfish", "/proc/self-ish/stat", "/proc/1/stat", "/proc/stat", "/proc", "/proc/", "/home/proc/self",
                            "proc/self/stat", "", "/proc/thread-selfie"})
    EXPECT_FALSE(is_own_proc_path(other)) << other;
}
