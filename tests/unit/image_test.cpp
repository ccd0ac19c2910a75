// Tests that ImageWriter publishes a complete, private image atomically and that load_image reads
// it back (from a directory or from the two open files) and refuses every kind of damaged or
// inconsistent image with a message that says what, and any image file that is not a regular file.
#include "snapshot/image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kHeap = 0x10000000;
constexpr uint64_t kLib = 0x20000000;
constexpr uint64_t kVdso = 0x7ffff7fc0000;

// Four pages, each filled with its own byte (`first`, first+1, ...), so a page read from the
// wrong offset is noticed.
std::string page_data(char first) {
  std::string data(4 * kPageSize, '\0');
  for (size_t i = 0; i < 4; ++i)
    std::fill(data.begin() + i * kPageSize, data.begin() + (i + 1) * kPageSize, char(first + i));
  return data;
}

// A small process: a heap, a library with one written private page, and the vDSO.
pb::Snapshot sample_snapshot(const std::string& comm) {
  pb::Snapshot snap;
  snap.mutable_process()->set_comm(comm);
  auto add = [&](uint64_t start, uint64_t end, uint32_t prot, pb::Mapping::Kind kind,
                 const char* name) {
    auto* m = snap.add_mappings();
    m->set_start(start);
    m->set_end(end);
    m->set_prot(prot);
    m->set_kind(kind);
    m->set_name(name);
  };
  add(kHeap, kHeap + 4 * kPageSize, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "[heap]");
  add(kLib, kLib + 2 * kPageSize, PROT_READ | PROT_EXEC, pb::Mapping::FILE, "/usr/lib/libfoo.so.1");
  add(kVdso, kVdso + 2 * kPageSize, PROT_READ | PROT_EXEC, pb::Mapping::VDSO, "[vdso]");
  auto* regs = snap.mutable_regs();
  regs->set_rip(kLib + 0x123);
  regs->set_rsp(0x7ffffffde000);
  std::string xsave(832, '\0');
  for (size_t i = 0; i < xsave.size(); ++i) xsave[i] = char(i * 7);
  regs->set_xsave(xsave);
  return snap;
}

// Writes the sample image: heap pages 0-1 and 3, and the library's second page.
Result<pb::Snapshot> write_sample(const std::string& dir, const std::string& comm, char first) {
  pb::Snapshot snap = sample_snapshot(comm);
  const std::string data = page_data(first);
  PW_ASSIGN(ImageWriter w, ImageWriter::create(dir));
  PW_TRY(w.append_run(snap, kHeap, data.data(), 2 * kPageSize));
  PW_TRY(w.append_run(snap, kHeap + 3 * kPageSize, data.data() + 2 * kPageSize, kPageSize));
  PW_TRY(w.append_run(snap, kLib + kPageSize, data.data() + 3 * kPageSize, kPageSize));
  PW_TRY(w.commit(snap));
  return snap;
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  auto fd = open_fd(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(fd.ok()) << fd.error().describe();
  ASSERT_TRUE(write_all(fd->get(), text.data(), text.size()).ok());
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-image-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    dir_ = scratch_ + "/img";
  }
  void TearDown() override { fs::remove_all(scratch_); }

  void write_good_image() {
    auto r = write_sample(dir_, "sample", 'a');
    ASSERT_TRUE(r.ok()) << r.error().describe();
  }

  // Parses the published manifest, lets `change` damage it, and writes it back.
  void rewrite_manifest(const std::function<void(pb::Snapshot&)>& change) {
    auto text = read_file(dir_ + "/" + kManifestName);
    ASSERT_TRUE(text.ok()) << text.error().describe();
    pb::Snapshot snap;
    ASSERT_TRUE(snap.ParseFromString(*text));
    change(snap);
    std::string out;
    ASSERT_TRUE(snap.SerializeToString(&out));
    write_text(dir_ + "/" + kManifestName, out);
  }

  // load_image must refuse, naming the image and saying what is wrong.
  void expect_refused(const std::string& what) {
    auto r = load_image(dir_);
    ASSERT_FALSE(r.ok()) << "a damaged image was accepted (expected: " << what << ")";
    const std::string msg = r.error().describe();
    EXPECT_NE(msg.find(dir_), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }

  std::string scratch_, dir_;
};

TEST_F(ImageTest, RoundTripsManifestAndPages) {
  write_good_image();
  auto img = load_image(dir_);
  ASSERT_TRUE(img.ok()) << img.error().describe();
  const pb::Snapshot& snap = img->snap;
  EXPECT_EQ(snap.format_version(), kFormatVersion);
  EXPECT_EQ(snap.process().comm(), "sample");
  EXPECT_EQ(snap.pages_img_size(), 4 * kPageSize);
  ASSERT_EQ(snap.mappings_size(), 3);
  EXPECT_EQ(snap.mappings(0).start(), kHeap);
  EXPECT_EQ(snap.mappings(1).name(), "/usr/lib/libfoo.so.1");
  EXPECT_EQ(snap.mappings(2).kind(), pb::Mapping::VDSO);
  EXPECT_EQ(snap.regs().rip(), kLib + 0x123);
  EXPECT_EQ(snap.regs().xsave(), sample_snapshot("").regs().xsave());

  const std::string data = page_data('a');
  const uint64_t addrs[] = {kHeap, kHeap + 3 * kPageSize, kLib + kPageSize};
  const uint64_t lens[] = {2 * kPageSize, kPageSize, kPageSize};
  ASSERT_EQ(snap.page_runs_size(), 3);
  uint64_t off = 0;
  for (int i = 0; i < 3; ++i) {
    const auto& run = snap.page_runs(i);
    EXPECT_EQ(run.addr(), addrs[i]);
    EXPECT_EQ(run.len(), lens[i]);
    EXPECT_EQ(run.file_offset(), off);
    EXPECT_EQ(run.file_offset() % kPageSize, 0u);
    std::string back(run.len(), '\0');
    ASSERT_TRUE(pread_all(img->pages.get(), back.data(), back.size(),
                          static_cast<off_t>(run.file_offset())).ok());
    EXPECT_EQ(back, data.substr(off, run.len())) << "run " << i;
    EXPECT_EQ(run.xxh3(), xxh3_64(back.data(), back.size())) << "run " << i;
    off += run.len();
  }
  EXPECT_EQ(entries(dir_), (std::set<std::string>{kManifestName, kPagesName}));
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, ImageIsPrivateEvenWithUmaskZero) {
  const mode_t old = ::umask(0);
  write_good_image();
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  for (const char* name : {kManifestName, kPagesName}) {
    ASSERT_EQ(::stat((dir_ + "/" + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << name;
  }
}

TEST_F(ImageTest, PublishingOverAnImageReplacesIt) {
  write_good_image();
  auto second = write_sample(dir_, "second", 'q');
  ASSERT_TRUE(second.ok()) << second.error().describe();
  auto img = load_image(dir_);
  ASSERT_TRUE(img.ok()) << img.error().describe();
  EXPECT_EQ(img->snap.process().comm(), "second");
  char c = 0;
  ASSERT_TRUE(pread_all(img->pages.get(), &c, 1, 0).ok());
  EXPECT_EQ(c, 'q');
  // Neither the old image nor a temporary directory is left behind.
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, PublishingIntoAnEmptyDirectoryWorks) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  write_good_image();
  EXPECT_TRUE(load_image(dir_).ok());
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, TrailingSlashStillPublishesBesideTheDirectory) {
  auto r = write_sample(dir_ + "/", "sample", 'a');
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(load_image(dir_).ok());
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, RefusesToReplaceADirectoryThatIsNotAnImage) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  write_text(dir_ + "/precious.txt", "keep me");
  auto r = write_sample(dir_, "sample", 'a');
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EEXIST);
  EXPECT_NE(r.error().message.find("not a prewarm image"), std::string::npos) << r.error().message;
  EXPECT_EQ(entries(dir_), std::set<std::string>{"precious.txt"});
  auto kept = read_file(dir_ + "/precious.txt");
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, "keep me");
  // The failed writer has removed its temporary directory.
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, RefusesToReplaceARegularFile) {
  write_text(dir_, "not a directory");
  auto r = write_sample(dir_, "sample", 'a');
  ASSERT_FALSE(r.ok());
  auto kept = read_file(dir_);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, "not a directory");
  EXPECT_EQ(entries(scratch_), std::set<std::string>{"img"});
}

TEST_F(ImageTest, AbandonedWriterLeavesNothing) {
  {
    pb::Snapshot snap = sample_snapshot("abandoned");
    const std::string data = page_data('a');
    auto w = ImageWriter::create(dir_);
    ASSERT_TRUE(w.ok()) << w.error().describe();
    ASSERT_TRUE(w->append_run(snap, kHeap, data.data(), kPageSize).ok());
    // While writing, the only trace is one temporary sibling.
    auto during = entries(scratch_);
    ASSERT_EQ(during.size(), 1u);
    EXPECT_EQ(during.begin()->rfind("img.tmp-", 0), 0u) << *during.begin();
  }
  EXPECT_TRUE(entries(scratch_).empty());
}

TEST_F(ImageTest, CreateFailsWhenTheParentIsMissing) {
  auto w = ImageWriter::create(scratch_ + "/no/such/parent/img");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ENOENT);
}

TEST_F(ImageTest, RefusesTruncatedPagesImg) {
  write_good_image();
  ASSERT_EQ(::truncate((dir_ + "/" + kPagesName).c_str(), 3 * kPageSize), 0);
  expect_refused("truncated");
}

TEST_F(ImageTest, RefusesPagesImgWithDataNoRunAccountsFor) {
  write_good_image();
  auto fd = open_fd(dir_ + "/" + kPagesName, O_WRONLY | O_APPEND);
  ASSERT_TRUE(fd.ok());
  const std::string extra(kPageSize, 'x');
  ASSERT_TRUE(write_all(fd->get(), extra.data(), extra.size()).ok());
  rewrite_manifest([](pb::Snapshot& s) { s.set_pages_img_size(5 * kPageSize); });
  expect_refused("no run accounts for");
}

TEST_F(ImageTest, RefusesUnknownFormatVersion) {
  write_good_image();
  rewrite_manifest([](pb::Snapshot& s) { s.set_format_version(kFormatVersion + 1); });
  expect_refused("format version " + std::to_string(kFormatVersion + 1) + " is not supported");
}

TEST_F(ImageTest, RefusesOverlappingMappings) {
  write_good_image();
  rewrite_manifest([](pb::Snapshot& s) { s.mutable_mappings(0)->set_end(kLib + kPageSize); });
  expect_refused("overlap");
}

TEST_F(ImageTest, RefusesRunPastTheEndOfPagesImg) {
  write_good_image();
  // The last run claims one page more than pages.img holds (the sizes still agree).
  rewrite_manifest([](pb::Snapshot& s) { s.mutable_page_runs(2)->set_len(2 * kPageSize); });
  expect_refused("past the end of pages.img");
}

TEST_F(ImageTest, RefusesRunOutsideEveryMapping) {
  write_good_image();
  // Right after the heap's last page: in the gap before the library.
  rewrite_manifest([](pb::Snapshot& s) { s.mutable_page_runs(1)->set_addr(kHeap + 4 * kPageSize); });
  expect_refused("outside every mapping");
}

TEST_F(ImageTest, RefusesRunCrossingTheEndOfItsMapping) {
  write_good_image();
  // The two-page run now starts at the heap's last page.
  rewrite_manifest([](pb::Snapshot& s) { s.mutable_page_runs(0)->set_addr(kHeap + 3 * kPageSize); });
  expect_refused("outside every mapping");
}

TEST_F(ImageTest, RefusesGarbageManifest) {
  write_good_image();
  write_text(dir_ + "/" + kManifestName, std::string(64, '\xff'));
  expect_refused("does not parse");
}

TEST_F(ImageTest, RefusesMissingPagesImg) {
  write_good_image();
  ASSERT_EQ(::unlink((dir_ + "/" + kPagesName).c_str()), 0);
  auto r = load_image(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_NE(r.error().message.find(kPagesName), std::string::npos) << r.error().message;
}

TEST_F(ImageTest, RefusesMissingDirectory) {
  auto r = load_image(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
}

// What prewarmd hands a launch: the two files, open, with no directory to go with them.
TEST_F(ImageTest, LoadsFromTwoDescriptorsAlone) {
  write_good_image();
  auto files = open_image_files(dir_);
  ASSERT_TRUE(files.ok()) << files.error().describe();
  // The manifest is read from offset 0 whatever the descriptor's offset is.
  char skip[3];
  ASSERT_EQ(::read(files->manifest.get(), skip, sizeof skip), 3);
  const std::string moved = scratch_ + "/gone";
  ASSERT_EQ(::rename(dir_.c_str(), moved.c_str()), 0);
  fs::remove_all(moved);  // the files live on only through the descriptors
  auto img = load_image(std::move(files->manifest), std::move(files->pages), "image calc");
  ASSERT_TRUE(img.ok()) << img.error().describe();
  EXPECT_EQ(img->label, "image calc");
  EXPECT_EQ(img->snap.process().comm(), "sample");
  char c = 0;
  ASSERT_TRUE(pread_all(img->pages.get(), &c, 1, 0).ok());
  EXPECT_EQ(c, 'a');
}

TEST_F(ImageTest, DescriptorLoadRefusesADamagedImageNamingItsLabel) {
  write_good_image();
  ASSERT_EQ(::truncate((dir_ + "/" + kPagesName).c_str(), 3 * kPageSize), 0);
  auto files = open_image_files(dir_);
  ASSERT_TRUE(files.ok()) << files.error().describe();
  auto r = load_image(std::move(files->manifest), std::move(files->pages), "image calc");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().describe().find("image calc"), std::string::npos) << r.error().describe();
  EXPECT_NE(r.error().describe().find("truncated"), std::string::npos) << r.error().describe();
}

TEST_F(ImageTest, DescriptorLoadRefusesADirectoryOrNothing) {
  write_good_image();
  auto files = open_image_files(dir_);
  ASSERT_TRUE(files.ok());
  auto d = open_fd(dir_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(d.ok());
  auto r = load_image(std::move(files->manifest), std::move(*d), "image calc");
  ASSERT_FALSE(r.ok()) << "a directory was taken for pages.img";
  EXPECT_NE(r.error().describe().find("directory"), std::string::npos) << r.error().describe();
  EXPECT_FALSE(load_image(UniqueFd(), UniqueFd(), "image calc").ok());
}

TEST_F(ImageTest, RefusesASymlinkedPagesImg) {
  write_good_image();
  const std::string pages = dir_ + "/" + kPagesName, real = scratch_ + "/real-pages";
  ASSERT_EQ(::rename(pages.c_str(), real.c_str()), 0);
  ASSERT_EQ(::symlink(real.c_str(), pages.c_str()), 0);
  auto r = load_image(dir_);
  ASSERT_FALSE(r.ok()) << "pages.img was followed through a symlink";
  EXPECT_EQ(r.error().code, ELOOP);
  EXPECT_NE(r.error().describe().find(dir_), std::string::npos) << r.error().describe();
}

TEST_F(ImageTest, RefusesAFifoManifestWithoutBlocking) {
  write_good_image();
  const std::string mf = dir_ + "/" + kManifestName;
  ASSERT_EQ(::unlink(mf.c_str()), 0);
  ASSERT_EQ(::mkfifo(mf.c_str(), 0600), 0);
  auto r = std::async(std::launch::async, [&] { return load_image(dir_); });
  if (r.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    if (auto w = open_fd(mf, O_WRONLY)) (void)w;  // unblock it so the test can end
    r.wait();
    FAIL() << "load_image blocked opening a FIFO planted as snapshot.pb";
  }
  auto res = r.get();
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().describe().find("FIFO"), std::string::npos) << res.error().describe();
}

TEST_F(ImageTest, OpenedFilesAreReadOnlyAndBlocking) {
  write_good_image();
  auto files = open_image_files(dir_);
  ASSERT_TRUE(files.ok()) << files.error().describe();
  for (int fd : {files->manifest.get(), files->pages.get()}) {
    const int fl = ::fcntl(fd, F_GETFL);
    EXPECT_EQ(fl & O_ACCMODE, O_RDONLY);
    EXPECT_EQ(fl & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  }
}

// check_structure on its own, for the rules that are awkward to reach through files.
class CheckStructure : public ::testing::Test {
 protected:
  void SetUp() override {
    snap_ = sample_snapshot("checked");
    snap_.set_format_version(kFormatVersion);
    auto add_run = [&](uint64_t addr, uint64_t len) {
      auto* run = snap_.add_page_runs();
      run->set_addr(addr);
      run->set_len(len);
      run->set_file_offset(size_);
      size_ += len;
    };
    add_run(kHeap, 2 * kPageSize);
    add_run(kLib + kPageSize, kPageSize);
    snap_.set_pages_img_size(size_);
  }
  std::string refusal() {
    auto r = check_structure(snap_, size_);
    return r.ok() ? std::string("(accepted)") : r.error().describe();
  }
  pb::Snapshot snap_;
  uint64_t size_ = 0;
};

TEST_F(CheckStructure, AcceptsTheSample) { EXPECT_EQ(refusal(), "(accepted)"); }

TEST_F(CheckStructure, RefusesRunInsideTheVdso) {
  auto* run = snap_.add_page_runs();
  run->set_addr(kVdso);
  run->set_len(kPageSize);
  run->set_file_offset(size_);
  size_ += kPageSize;
  snap_.set_pages_img_size(size_);
  EXPECT_NE(refusal().find("never stored"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesMissingOrShortRegisterState) {
  snap_.mutable_regs()->set_xsave(std::string(575, '\0'));
  EXPECT_NE(refusal().find("no register state"), std::string::npos) << refusal();
  snap_.clear_regs();
  EXPECT_NE(refusal().find("no register state"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesAnImageWithoutMappings) {
  snap_.clear_mappings();
  snap_.clear_page_runs();
  snap_.set_pages_img_size(0);
  size_ = 0;
  EXPECT_NE(refusal().find("no mappings"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesUnalignedOrEmptyMappings) {
  snap_.mutable_mappings(2)->set_end(kVdso + 100);
  EXPECT_NE(refusal().find("invalid range"), std::string::npos) << refusal();
  snap_.mutable_mappings(2)->set_end(kVdso);
  EXPECT_NE(refusal().find("invalid range"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesMappingAboveUserSpace) {
  snap_.mutable_mappings(2)->set_start(1ull << 47);
  snap_.mutable_mappings(2)->set_end((1ull << 47) + kPageSize);
  EXPECT_NE(refusal().find("beyond the user address space"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesUnknownProtectionBits) {
  snap_.mutable_mappings(0)->set_prot(PROT_READ | 8);
  EXPECT_NE(refusal().find("invalid protections"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesRunsOutOfOrder) {
  snap_.mutable_page_runs(0)->set_addr(kLib);  // now after the second run's address
  snap_.mutable_page_runs(1)->set_addr(kHeap);
  EXPECT_NE(refusal().find("malformed"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesRunsThatAreNotContiguousInPagesImg) {
  snap_.mutable_page_runs(1)->set_file_offset(3 * kPageSize);
  size_ = 4 * kPageSize;
  snap_.set_pages_img_size(size_);
  EXPECT_NE(refusal().find("past the end of pages.img"), std::string::npos) << refusal();
}

TEST_F(CheckStructure, RefusesUnalignedRun) {
  snap_.mutable_page_runs(0)->set_addr(kHeap + 8);
  EXPECT_NE(refusal().find("malformed"), std::string::npos) << refusal();
}

}  // namespace
}  // namespace prewarm
