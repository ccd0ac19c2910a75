// The one directory reader, on real directories: names sorted without "." and "..", the
// caller's descriptor left where it was, numbers only from whole decimal names, and errors as
// values for what is not a directory.
#include "snapshot/dir_entries.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

class DirEntries : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dir_entries_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& n : made_) ::unlink((dir_ + "/" + n).c_str());
    ::rmdir(dir_.c_str());
  }
  void make(const std::string& name) {
    const int fd = ::open((dir_ + "/" + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << name;
    ::close(fd);
    made_.push_back(name);
  }
  std::string dir_;
  std::vector<std::string> made_;
};

TEST_F(DirEntries, NamesSortedWithoutDotEntries) {
  for (const char* n : {"b", ".hidden", "a", "10", "2"}) make(n);
  auto names = dir_names(dir_);
  ASSERT_TRUE(names) << names.error().describe();
  EXPECT_EQ(*names, (std::vector<std::string>{".hidden", "10", "2", "a", "b"}));
}

TEST_F(DirEntries, NumbersAreWholeDecimalNamesAscending) {
  for (const char* n : {"10", "2", "0", "7x", "-1", "x", "99999999999999999999"}) make(n);
  auto numbers = dir_numbers(dir_);
  ASSERT_TRUE(numbers) << numbers.error().describe();
  EXPECT_EQ(*numbers, (std::vector<int>{0, 2, 10}));
}

TEST_F(DirEntries, ReadingByDescriptorLeavesItAsItWas) {
  make("one");
  const int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const off_t before = ::lseek(fd, 0, SEEK_CUR);
  for (int i = 0; i < 2; ++i) {  // twice: a reader that moved the offset would see nothing again
    auto names = dir_names_at(fd);
    ASSERT_TRUE(names) << names.error().describe();
    EXPECT_EQ(*names, std::vector<std::string>{"one"});
  }
  EXPECT_EQ(::lseek(fd, 0, SEEK_CUR), before);
  EXPECT_GE(::fcntl(fd, F_GETFD), 0) << "the caller's descriptor was closed";
  ::close(fd);
}

TEST_F(DirEntries, OwnProcessTasksAndFds) {
  auto tids = dir_numbers("/proc/self/task");
  ASSERT_TRUE(tids) << tids.error().describe();
  EXPECT_EQ(*tids, std::vector<int>{static_cast<int>(::getpid())});  // gtest runs single-threaded
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto fds = dir_numbers("/proc/self/fd");
  ::close(fd);
  ASSERT_TRUE(fds) << fds.error().describe();
  EXPECT_NE(std::find(fds->begin(), fds->end(), fd), fds->end());
}

TEST_F(DirEntries, WhatIsNotADirectoryIsAnError) {
  make("file");
  auto file = dir_names(dir_ + "/file");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, ENOTDIR);
  EXPECT_NE(file.error().message.find(dir_ + "/file"), std::string::npos) << file.error().message;
  auto gone = dir_names(dir_ + "/gone");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ENOENT);
  ASSERT_EQ(::symlink(dir_.c_str(), (dir_ + "/link").c_str()), 0);
  made_.push_back("link");
  EXPECT_TRUE(dir_names(dir_ + "/link"));
  auto nofollow = dir_names(dir_ + "/link", /*nofollow=*/true);
  ASSERT_FALSE(nofollow);
  // O_DIRECTORY|O_NOFOLLOW on a symlink: ENOTDIR on Linux (ELOOP without O_DIRECTORY).
  EXPECT_TRUE(nofollow.error().code == ENOTDIR || nofollow.error().code == ELOOP) << nofollow.error().describe();
  EXPECT_FALSE(dir_names_at(-1));
}

}  // namespace
}  // namespace prewarm
