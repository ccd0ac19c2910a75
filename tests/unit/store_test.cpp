// Tests the image store on a real directory tree: private directories, cleanup of interrupted
// captures, publish and reload of images with their metadata, quarantine of images whose metadata
// cannot be trusted, removal and eviction by recency; and that nothing planted in the state
// directory (symlinks, FIFOs, images that are not the daemon's) is followed, opened or trusted.
#include "prewarmd/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

namespace fs = std::filesystem;

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void write_text(const std::string& path, const std::string& text) {
  auto fd = open_fd(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(fd.ok()) << path << ": " << fd.error().describe();
  ASSERT_TRUE(write_all(fd->get(), text.data(), text.size()).ok());
}

// A 32-hex-digit key that sorts by `n`.
std::string key_n(int n) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%032x", n);
  return buf;
}

bool any_mentions(const std::vector<std::string>& lines, const std::string& a, const std::string& b) {
  for (const auto& l : lines)
    if (l.find(a) != std::string::npos && l.find(b) != std::string::npos) return true;
  return false;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "\n  " + l;
  return out.empty() ? " (none)" : out;
}

// A directory outside the state directory that nothing in the store may touch.
struct Victim {
  std::string dir;
  explicit Victim(const std::string& scratch) : dir(scratch + "/victim") {
    EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0);
    write_text(dir + "/keep", "precious");
    write_text(dir + "/pages.img", "precious pages");
    EXPECT_EQ(::mkdir((dir + "/sub").c_str(), 0700), 0);
    write_text(dir + "/sub/deep", "deep");
  }
  bool intact() const {
    auto a = read_file(dir + "/keep");
    auto b = read_file(dir + "/pages.img");
    auto c = read_file(dir + "/sub/deep");
    return a && *a == "precious" && b && *b == "precious pages" && c && *c == "deep";
  }
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    state_ = scratch_ + "/state";
  }
  void TearDown() override { fs::remove_all(scratch_); }

  // A complete capture in incoming/ID with a manifest and `page_bytes` of page data.
  std::string make_incoming(ImageStore& store, const std::string& id, size_t page_bytes) {
    const std::string dir = store.incoming_dir(id);
    EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0) << dir;
    write_text(dir + "/snapshot.pb", "manifest of " + id);
    write_text(dir + "/pages.img", std::string(page_bytes, 'p'));
    return dir;
  }

  StoreEntry entry(const std::string& key, const std::string& app) {
    StoreEntry e;
    e.key = key;
    e.app = app;
    e.uid = ::geteuid();
    e.gid = ::getegid();
    FileRecord exe;
    exe.path = "/usr/bin/" + app;
    exe.id = {2049, 1234567, 99999, 1700000000123456789, 1700000000987654321};
    exe.content_hash = "00112233445566778899aabbccddeeff";
    FileRecord lib = exe;
    lib.path = "/usr/lib/libfoo.so.1", lib.id.ino = 7, lib.id.size = 1, lib.id.mtime_ns = -1, lib.id.ctime_ns = 0;
    lib.content_hash = "ffeeddccbbaa99887766554433221100";
    e.files = {exe, lib};
    e.capture_ms = 12.5;
    e.freeze_ms = 3.25;
    return e;
  }

  void publish(ImageStore& store, const std::string& key, const std::string& app, size_t page_bytes) {
    const std::string in = make_incoming(store, "cap-" + key, page_bytes);
    auto r = store.publish(in, entry(key, app));
    ASSERT_TRUE(r.ok()) << r.error().describe();
  }

  // Sets the image directory's mtime, which is what a reopened store takes as its last use.
  void set_last_used(const std::string& key, time_t sec) {
    timespec ts[2] = {{sec, 0}, {sec, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (state_ + "/store/" + key).c_str(), ts, 0), 0);
  }

  std::string scratch_, state_;
};

TEST_F(StoreTest, OpenCreatesPrivateDirectories) {
  const mode_t old = ::umask(0);  // even with a permissive umask
  ImageStore store(state_);
  auto r = store.open();
  ::umask(old);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  for (const std::string d : {"", "/store", "/incoming", "/quarantine"}) {
    const mode_t m = mode_of(state_ + d);
    EXPECT_TRUE(S_ISDIR(m)) << state_ + d;
    EXPECT_EQ(m & 07777, 0700u) << state_ + d;
  }
  EXPECT_TRUE(store.entries().empty());
  EXPECT_EQ(store.total_bytes(), 0u);
}

TEST_F(StoreTest, OpenTightensAnExistingStateDirectory) {
  ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(state_.c_str(), 0755), 0);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_EQ(mode_of(state_) & 07777, 0700u);
}

TEST_F(StoreTest, OpenRefusesAFileWhereADirectoryBelongs) {
  write_text(state_, "not a directory");
  ImageStore store(state_);
  EXPECT_FALSE(store.open().ok());
}

// The path up to the state directory is the administrator's (it may pass a symlink such as
// /var/run -> /run); the state directory itself must not be a symlink.
TEST_F(StoreTest, OpenFollowsTheParentsPathButNotTheStateDirectory) {
  ASSERT_EQ(::mkdir((scratch_ + "/real").c_str(), 0700), 0);
  ASSERT_EQ(::symlink((scratch_ + "/real").c_str(), (scratch_ + "/via").c_str()), 0);
  ImageStore through(scratch_ + "/via/state");
  auto r = through.open();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(S_ISDIR(mode_of(scratch_ + "/real/state/store")));

  ASSERT_EQ(::symlink((scratch_ + "/real/state").c_str(), state_.c_str()), 0);
  ImageStore linked(state_);
  auto l = linked.open();
  ASSERT_FALSE(l.ok()) << "a state directory that is a symlink was used";
  EXPECT_NE(l.error().describe().find("symlink"), std::string::npos) << l.error().describe();
}

TEST_F(StoreTest, OpenRemovesLeftoversOfInterruptedCaptures) {
  {
    ImageStore first(state_);
    ASSERT_TRUE(first.open().ok());
  }
  const std::string in = state_ + "/incoming";
  ASSERT_EQ(::mkdir((in + "/1234").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((in + "/1234/deep").c_str(), 0700), 0);
  write_text(in + "/1234/pages.img", "half");
  write_text(in + "/1234/deep/x", "x");
  write_text(in + "/stray-file", "y");
  // A symlink to a directory outside (in the scratch tree, never a system one: tests may run as root).
  const std::string outside = scratch_ + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  write_text(outside + "/keep", "k");
  ASSERT_EQ(::symlink(outside.c_str(), (in + "/link").c_str()), 0);

  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(names_in(in).empty());
  EXPECT_TRUE(S_ISDIR(mode_of(in)));
  EXPECT_TRUE(exists(outside + "/keep")) << "remove_tree followed a symlink";
}

TEST_F(StoreTest, PublishMovesTheCaptureIntoPlace) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string key = key_n(1);
  const int64_t before = now_ms();
  const std::string in = make_incoming(store, "42", 64 * 1024);
  ASSERT_TRUE(store.publish(in, entry(key, "calc")).ok());
  const int64_t after = now_ms();

  EXPECT_FALSE(exists(in)) << "the capture directory is still in incoming/";
  const std::string dir = store.image_dir(key);
  EXPECT_EQ(dir, state_ + "/store/" + key);
  EXPECT_EQ(names_in(dir), (std::set<std::string>{"meta.json", "pages.img", "snapshot.pb"}));
  EXPECT_EQ(mode_of(dir + "/meta.json") & 07777, 0600u);
  auto pages = read_file(dir + "/pages.img");
  ASSERT_TRUE(pages.ok());
  EXPECT_EQ(*pages, std::string(64 * 1024, 'p'));

  ASSERT_EQ(store.entries().size(), 1u);
  const StoreEntry& e = store.entries().at(key);
  EXPECT_EQ(e.key, key);
  EXPECT_EQ(e.app, "calc");
  EXPECT_GE(e.bytes, 64u * 1024);
  EXPECT_EQ(store.total_bytes(), e.bytes);
  EXPECT_GE(e.created_ms, before);
  EXPECT_LE(e.created_ms, after);
  EXPECT_EQ(e.last_used_ms, e.created_ms);
}

// The image holds the app's memory and root reads it: it stays the daemon's and private, never
// handed to the app's user (who could then swap its contents under root); meta.json says whose.
TEST_F(StoreTest, PublishKeepsTheImageTheDaemonsOwnAndPrivate) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string key = key_n(1);
  const std::string in = make_incoming(store, "42", 4096);
  // A capture written with loose modes is tightened.
  ASSERT_EQ(::chmod(in.c_str(), 0755), 0);
  ASSERT_EQ(::chmod((in + "/pages.img").c_str(), 0644), 0);
  StoreEntry e = entry(key, "calc");
  e.uid = 65534;
  e.gid = 65533;
  auto r = store.publish(in, e);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const std::string dir = store.image_dir(key);
  for (const std::string& path : {dir, dir + "/meta.json", dir + "/pages.img", dir + "/snapshot.pb"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_uid, ::geteuid()) << path;
    EXPECT_EQ(st.st_mode & 07777, path == dir ? 0700u : 0600u) << path;
  }
  EXPECT_EQ(store.entries().at(key).uid, 65534u);
  ImageStore again(state_);
  ASSERT_TRUE(again.open().ok());
  ASSERT_EQ(again.entries().count(key), 1u) << "a published image did not survive a reopen";
  EXPECT_EQ(again.entries().at(key).uid, 65534u);
  EXPECT_EQ(again.entries().at(key).gid, 65533u);
  EXPECT_TRUE(again.take_warnings().empty());
}

TEST_F(StoreTest, ReopenLoadsPublishedImages) {
  const std::string k1 = key_n(1), k2 = key_n(2);
  uint64_t bytes1 = 0;
  int64_t created1 = 0;
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k1, "calc", 16 * 1024);
    publish(store, k2, "web", 4096);
    bytes1 = store.entries().at(k1).bytes;
    created1 = store.entries().at(k1).created_ms;
  }
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  ASSERT_EQ(store.entries().size(), 2u);
  ASSERT_TRUE(store.entries().count(k1));
  const StoreEntry& e = store.entries().at(k1);
  const StoreEntry want = entry(k1, "calc");
  EXPECT_EQ(e.key, k1);
  EXPECT_EQ(e.app, "calc");
  EXPECT_EQ(e.uid, want.uid);
  EXPECT_EQ(e.gid, want.gid);
  EXPECT_EQ(e.bytes, bytes1);
  EXPECT_EQ(e.created_ms, created1);
  EXPECT_EQ(e.capture_ms, want.capture_ms);
  EXPECT_EQ(e.freeze_ms, want.freeze_ms);
  ASSERT_EQ(e.files.size(), want.files.size());
  for (size_t i = 0; i < want.files.size(); ++i) {
    EXPECT_EQ(e.files[i].path, want.files[i].path);
    EXPECT_EQ(e.files[i].id.dev, want.files[i].id.dev);
    EXPECT_EQ(e.files[i].id.ino, want.files[i].id.ino);
    EXPECT_EQ(e.files[i].id.size, want.files[i].id.size);
    EXPECT_EQ(e.files[i].id.mtime_ns, want.files[i].id.mtime_ns);
    EXPECT_EQ(e.files[i].id.ctime_ns, want.files[i].id.ctime_ns);
    EXPECT_EQ(e.files[i].content_hash, want.files[i].content_hash);
  }
  EXPECT_EQ(store.entries().at(k2).app, "web");
}

TEST_F(StoreTest, ReopenTakesLastUseFromTheDirectoryMtime) {
  const std::string k = key_n(1);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k, "calc", 4096);
  }
  set_last_used(k, 1'000'000);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_EQ(store.entries().at(k).last_used_ms, 1'000'000'000);

  // touch() records a use now, in memory and on disk.
  store.touch(k);
  EXPECT_GE(store.entries().at(k).last_used_ms, now_ms() - 60'000);
  ImageStore again(state_);
  ASSERT_TRUE(again.open().ok());
  EXPECT_GE(again.entries().at(k).last_used_ms, now_ms() - 60'000);
}

TEST_F(StoreTest, PublishReplacesAnImageWithTheSameKey) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string k = key_n(7);
  publish(store, k, "calc", 4096);
  const std::string in = store.incoming_dir("second");
  ASSERT_EQ(::mkdir(in.c_str(), 0700), 0);
  write_text(in + "/snapshot.pb", "second manifest");
  write_text(in + "/pages.img", "second pages");
  ASSERT_TRUE(store.publish(in, entry(k, "calc")).ok());
  EXPECT_EQ(store.entries().size(), 1u);
  EXPECT_EQ(names_in(store.image_dir(k)), (std::set<std::string>{"meta.json", "pages.img", "snapshot.pb"}));
  auto text = read_file(store.image_dir(k) + "/snapshot.pb");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "second manifest");
  // The replaced image went with the swap: nothing is left in incoming/.
  EXPECT_TRUE(names_in(state_ + "/incoming").empty());
}

class StoreQuarantineTest : public StoreTest {
 protected:
  // Publishes a good image, then lets `damage` at its meta.json, and reopens.
  void damaged_meta_is_quarantined(const std::function<void(const std::string& meta)>& damage) {
    const std::string good = key_n(1), bad = key_n(2);
    {
      ImageStore store(state_);
      ASSERT_TRUE(store.open().ok());
      publish(store, good, "calc", 4096);
      publish(store, bad, "calc", 4096);
    }
    damage(state_ + "/store/" + bad + "/meta.json");
    ImageStore store(state_);
    try {
      ASSERT_TRUE(store.open().ok());
    } catch (const std::exception& e) {
      FAIL() << "open() threw " << e.what() << " instead of quarantining the image";
    }
    EXPECT_EQ(store.entries().count(bad), 0u) << "an image with damaged metadata was loaded";
    EXPECT_FALSE(exists(state_ + "/store/" + bad)) << "it was left in the store";
    auto q = names_in(state_ + "/quarantine");
    ASSERT_EQ(q.size(), 1u);
    EXPECT_EQ(q.begin()->rfind(bad + "-", 0), 0u) << *q.begin();
    EXPECT_TRUE(exists(state_ + "/quarantine/" + *q.begin() + "/pages.img")) << "kept for inspection";
    // The healthy image next to it is unaffected.
    EXPECT_EQ(store.entries().count(good), 1u);
    EXPECT_TRUE(exists(state_ + "/store/" + good + "/meta.json"));
  }
};

TEST_F(StoreQuarantineTest, MissingMeta) {
  damaged_meta_is_quarantined([](const std::string& meta) { ASSERT_EQ(::unlink(meta.c_str()), 0); });
}

TEST_F(StoreQuarantineTest, GarbledMeta) {
  damaged_meta_is_quarantined([](const std::string& meta) { write_text(meta, "{\"version\":1,\"key\":"); });
}

TEST_F(StoreQuarantineTest, MetaWithMissingFields) {
  damaged_meta_is_quarantined([](const std::string& meta) { write_text(meta, R"({"version":1})"); });
}

TEST_F(StoreQuarantineTest, MetaOfAnUnknownVersion) {
  damaged_meta_is_quarantined([](const std::string& meta) {
    auto text = read_file(meta);
    ASSERT_TRUE(text.ok());
    auto at = text->find("\"version\": 1");
    ASSERT_NE(at, std::string::npos) << *text;
    write_text(meta, text->replace(at, 12, "\"version\": 2"));
  });
}

// A meta.json copied from another image: its key does not name the directory it is in.
TEST_F(StoreQuarantineTest, MetaOfAnotherKey) {
  damaged_meta_is_quarantined([this](const std::string& meta) {
    auto other = read_file(state_ + "/store/" + key_n(1) + "/meta.json");
    ASSERT_TRUE(other.ok());
    write_text(meta, *other);
  });
}

TEST_F(StoreQuarantineTest, MetaWithAVersionOfTheWrongType) {
  damaged_meta_is_quarantined([](const std::string& meta) {
    write_text(meta, R"({"version":"1","key":"x","app":"calc","uid":0,"gid":0,"files":[]})");
  });
}

TEST_F(StoreTest, AFileInTheStoreIsQuarantined) {
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
  }
  write_text(state_ + "/store/" + key_n(3), "not an image directory");
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(store.entries().empty());
  EXPECT_TRUE(names_in(state_ + "/store").empty());
}

TEST_F(StoreTest, QuarantineKeepsOnlyTheNewestFew) {
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
  }
  for (int i = 0; i < 7; ++i) {
    const std::string dir = state_ + "/store/" + key_n(100 + i);
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    write_text(dir + "/pages.img", "x");
  }
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(names_in(state_ + "/store").empty());
  const auto q = names_in(state_ + "/quarantine");
  EXPECT_EQ(q.size(), 4u);
}

// The image just moved aside is the one someone is about to inspect; it must survive the pruning
// even if it was last used long before the images quarantined earlier.
TEST_F(StoreTest, QuarantineKeepsTheImageJustQuarantined) {
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
  }
  for (int i = 0; i < 4; ++i) {
    const std::string dir = state_ + "/quarantine/" + key_n(200 + i) + "-" + std::to_string(1000 + i);
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  }
  const std::string bad = key_n(5);
  const std::string dir = state_ + "/store/" + bad;
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  write_text(dir + "/pages.img", "x");  // no meta.json
  set_last_used(bad, 1'000'000);

  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const auto q = names_in(state_ + "/quarantine");
  EXPECT_EQ(q.size(), 4u);
  bool kept = false;
  for (const auto& n : q) kept |= n.rfind(bad + "-", 0) == 0;
  EXPECT_TRUE(kept) << "the image quarantined just now was pruned at once";
}

TEST_F(StoreTest, RemoveDropsTheEntryAndTheDirectory) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  publish(store, key_n(1), "calc", 4096);
  publish(store, key_n(2), "calc", 4096);
  store.remove(key_n(1));
  EXPECT_EQ(store.entries().count(key_n(1)), 0u);
  EXPECT_FALSE(exists(store.image_dir(key_n(1))));
  EXPECT_EQ(store.entries().count(key_n(2)), 1u);
  EXPECT_TRUE(exists(store.image_dir(key_n(2)) + "/meta.json"));
  EXPECT_EQ(store.total_bytes(), store.entries().at(key_n(2)).bytes);
  store.remove(key_n(99));  // unknown keys are no-ops
  EXPECT_EQ(store.entries().size(), 1u);
}

TEST_F(StoreTest, EvictDropsLeastRecentlyUsedUntilUnderBudget) {
  const std::string oldest = key_n(3), middle = key_n(1), newest = key_n(2);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, oldest, "calc", 32 * 1024);
    publish(store, middle, "calc", 32 * 1024);
    publish(store, newest, "web", 32 * 1024);
  }
  set_last_used(oldest, 1000);
  set_last_used(middle, 2000);
  set_last_used(newest, 3000);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const uint64_t total = store.total_bytes();
  const uint64_t b_oldest = store.entries().at(oldest).bytes;
  ASSERT_GT(b_oldest, 0u);

  // Nothing to do within the budget.
  EXPECT_TRUE(store.evict(total, "").empty());
  EXPECT_EQ(store.entries().size(), 3u);

  // One byte over: only the oldest goes.
  auto dropped = store.evict(total - 1, "");
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].key, oldest);
  EXPECT_EQ(dropped[0].app, "calc");
  EXPECT_FALSE(exists(store.image_dir(oldest)));
  EXPECT_EQ(store.total_bytes(), total - b_oldest);

  // Budget 0 with the newest kept: the middle one goes, the kept one stays although over budget.
  dropped = store.evict(0, newest);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].key, middle);
  EXPECT_FALSE(exists(store.image_dir(middle)));
  ASSERT_EQ(store.entries().size(), 1u);
  EXPECT_TRUE(exists(store.image_dir(newest) + "/pages.img"));
}

TEST_F(StoreTest, EntriesOfSelectsByApp) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  publish(store, key_n(1), "calc", 4096);
  publish(store, key_n(2), "web", 4096);
  publish(store, key_n(3), "calc", 4096);
  std::set<std::string> calc;
  for (const StoreEntry* e : store.entries_of("calc")) {
    EXPECT_EQ(e->app, "calc");
    calc.insert(e->key);
  }
  EXPECT_EQ(calc, (std::set<std::string>{key_n(1), key_n(3)}));
  ASSERT_EQ(store.entries_of("web").size(), 1u);
  EXPECT_EQ(store.entries_of("web")[0]->key, key_n(2));
  EXPECT_TRUE(store.entries_of("cal").empty());
  EXPECT_TRUE(store.entries_of("").empty());

  // The per-app index follows every change: a key published again for another app, a removal, a
  // quarantine, and a store opened again from disk.
  publish(store, key_n(3), "web", 4096);
  ASSERT_EQ(store.entries_of("calc").size(), 1u);
  EXPECT_EQ(store.entries_of("calc")[0]->key, key_n(1));
  ASSERT_EQ(store.entries_of("web").size(), 2u);
  EXPECT_EQ(store.entries_of("web")[1]->key, key_n(3));
  store.remove(key_n(2));
  store.quarantine(key_n(1));
  EXPECT_TRUE(store.entries_of("calc").empty());
  ASSERT_EQ(store.entries_of("web").size(), 1u);
  EXPECT_EQ(store.entries_of("web")[0]->app, "web");
  ImageStore again(state_);
  ASSERT_TRUE(again.open().ok());
  ASSERT_EQ(again.entries_of("web").size(), 1u);
  EXPECT_EQ(again.entries_of("web")[0]->key, key_n(3));
  EXPECT_TRUE(again.entries_of("calc").empty());
}

// ---- nothing planted in the state directory is followed, opened or trusted ----------------------

// A symlink inside an image directory (where a subdirectory or a file was) pointing outside.
class StorePlantedTest : public StoreTest {
 protected:
  void plant_links(const std::string& key, const Victim& v) {
    const std::string dir = state_ + "/store/" + key;
    ASSERT_EQ(::symlink(v.dir.c_str(), (dir + "/sub").c_str()), 0);
    ASSERT_EQ(::unlink((dir + "/pages.img").c_str()), 0);
    ASSERT_EQ(::symlink((v.dir + "/pages.img").c_str(), (dir + "/pages.img").c_str()), 0);
  }
};

TEST_F(StorePlantedTest, RemoveNeverFollowsASymlinkInAnImage) {
  Victim v(scratch_);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  publish(store, key_n(1), "calc", 4096);
  plant_links(key_n(1), v);
  store.remove(key_n(1));
  EXPECT_FALSE(exists(store.image_dir(key_n(1))));
  EXPECT_TRUE(v.intact()) << "remove() deleted files outside the state directory";
}

TEST_F(StorePlantedTest, QuarantineAndItsPruningNeverFollowASymlinkInAnImage) {
  Victim v(scratch_);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  // More than are kept, so the pruning removes planted images too.
  for (int i = 0; i < 6; ++i) {
    publish(store, key_n(i), "calc", 4096);
    plant_links(key_n(i), v);
    store.quarantine(key_n(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // distinct KEY-MS names
  }
  EXPECT_TRUE(names_in(state_ + "/store").empty());
  EXPECT_EQ(names_in(state_ + "/quarantine").size(), 4u);
  EXPECT_TRUE(v.intact()) << "quarantine() deleted files outside the state directory";
}

TEST_F(StorePlantedTest, EvictNeverFollowsASymlinkInAnImage) {
  Victim v(scratch_);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  publish(store, key_n(1), "calc", 4096);
  publish(store, key_n(2), "calc", 4096);
  plant_links(key_n(1), v);
  plant_links(key_n(2), v);
  auto dropped = store.evict(0, "");
  EXPECT_EQ(dropped.size(), 2u);
  EXPECT_TRUE(names_in(state_ + "/store").empty());
  EXPECT_TRUE(v.intact()) << "evict() deleted files outside the state directory";
}

// The reported attack: a directory in the tree swapped for a symlink while root removes the
// tree. A removal by paths (lstat says directory, then a path through it resolves via the
// symlink) deletes the victim's files; one by directory descriptors cannot. The victim's files
// have the names of the tree's, and the swap runs on another thread for many rounds, so a
// path-based removal is caught (it was, every run, when this test was written).
TEST(RemoveTree, NeverFollowsASymlinkSwappedInForADirectory) {
  char tmpl[] = "/tmp/prewarm-store-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  const std::string victim = root + "/victim";
  ASSERT_EQ(::mkdir(victim.c_str(), 0700), 0);
  constexpr int kFiles = 32;
  for (int i = 0; i < kFiles; ++i) write_text(victim + "/f" + std::to_string(i), "k");
  auto victim_files = [&] { return names_in(victim).size(); };
  const std::string tree = root + "/tree", d = tree + "/d", l = tree + "/l";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int rounds = 0;
  for (; rounds < 300 && std::chrono::steady_clock::now() < deadline; ++rounds) {
    ASSERT_EQ(::mkdir(tree.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
    for (int i = 0; i < kFiles; ++i) write_text(d + "/f" + std::to_string(i), "f");
    ASSERT_EQ(::symlink(victim.c_str(), l.c_str()), 0);
    std::atomic<bool> stop{false};
    std::atomic<int> swaps{0};
    std::thread swapper([&] {
      while (!stop.load(std::memory_order_relaxed))
        if (::renameat2(AT_FDCWD, d.c_str(), AT_FDCWD, l.c_str(), RENAME_EXCHANGE) == 0) ++swaps;
    });
    while (swaps.load() < 8) std::this_thread::yield();  // the race is on before the removal starts
    remove_tree(tree);
    stop = true;
    swapper.join();
    ASSERT_EQ(victim_files(), size_t{kFiles}) << "remove_tree followed a swapped-in symlink in round " << rounds;
    remove_tree(tree);  // what a lost race left (a directory renamed mid-walk), now without a swapper
    ASSERT_FALSE(exists(tree)) << "round " << rounds;
  }
  EXPECT_GT(rounds, 20);
  fs::remove_all(root);
}

TEST(RemoveTree, RemovesASymlinkItselfAndNotItsTarget) {
  char tmpl[] = "/tmp/prewarm-store-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  Victim v(root);
  ASSERT_EQ(::symlink(v.dir.c_str(), (root + "/link").c_str()), 0);
  EXPECT_TRUE(remove_tree(root + "/link"));
  EXPECT_FALSE(exists(root + "/link"));
  EXPECT_TRUE(v.intact());
  EXPECT_TRUE(remove_tree(root + "/link/"));  // already gone: trailing slash, still no following
  EXPECT_TRUE(v.intact());
  fs::remove_all(root);
}

// A FIFO where pages.img belongs: open() must neither block on it nor load the image.
TEST_F(StoreTest, AFifoInAnImageIsRefusedWithoutBlocking) {
  const std::string k = key_n(1), good = key_n(2);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k, "calc", 4096);
    publish(store, good, "calc", 4096);
  }
  const std::string pages = state_ + "/store/" + k + "/pages.img";
  ASSERT_EQ(::unlink(pages.c_str()), 0);
  ASSERT_EQ(::mkfifo(pages.c_str(), 0600), 0);
  ImageStore store(state_);
  auto opened = std::async(std::launch::async, [&] { return store.open().ok(); });
  if (opened.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    // Unblock a reader stuck in open(2) on the FIFO so the test can end, then fail.
    if (auto w = open_fd(pages, O_WRONLY)) (void)w;
    opened.wait();
    FAIL() << "ImageStore::open() blocked on a FIFO planted as pages.img";
  }
  ASSERT_TRUE(opened.get());
  EXPECT_EQ(store.entries().count(k), 0u) << "an image with a FIFO for pages.img was loaded";
  EXPECT_EQ(store.entries().count(good), 1u);
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "pages.img", "FIFO")) << joined(w);
  EXPECT_FALSE(exists(state_ + "/store/" + k));
  EXPECT_TRUE(store.take_warnings().empty()) << "take_warnings() did not clear them";
}

// A symlink as store/KEY to a complete, well-formed image elsewhere (the daemon's own files, so
// only the link is wrong): refused and removed, its target untouched.
TEST_F(StoreTest, ASymlinkAsAnImageDirectoryIsRefused) {
  const std::string k = key_n(1);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k, "calc", 4096);
  }
  const std::string elsewhere = scratch_ + "/elsewhere";
  ASSERT_EQ(::rename((state_ + "/store/" + k).c_str(), elsewhere.c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), (state_ + "/store/" + k).c_str()), 0);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(store.entries().empty()) << "an image reached through a symlink was loaded";
  EXPECT_FALSE(exists(state_ + "/store/" + k));
  EXPECT_EQ(names_in(elsewhere), (std::set<std::string>{"meta.json", "pages.img", "snapshot.pb"}));
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "store/" + k, "symlink")) << joined(w);
  EXPECT_FALSE(store.open_image(k).ok());
}

TEST_F(StoreTest, ObjectsPlantedInIncomingAndQuarantineAreRemovedNotFollowed) {
  Victim v(scratch_);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
  }
  ASSERT_EQ(::mkfifo((state_ + "/incoming/fifo").c_str(), 0600), 0);
  ASSERT_EQ(::symlink(v.dir.c_str(), (state_ + "/incoming/link").c_str()), 0);
  ASSERT_EQ(::mkdir((state_ + "/incoming/7-1").c_str(), 0700), 0);
  ASSERT_EQ(::symlink(v.dir.c_str(), (state_ + "/incoming/7-1/sub").c_str()), 0);
  ASSERT_EQ(::mkfifo((state_ + "/quarantine/fifo").c_str(), 0600), 0);
  ASSERT_EQ(::symlink(v.dir.c_str(), (state_ + "/quarantine/" + key_n(1) + "-5").c_str()), 0);
  ImageStore store(state_);
  auto opened = std::async(std::launch::async, [&] { return store.open().ok(); });
  ASSERT_EQ(opened.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "open() blocked";
  ASSERT_TRUE(opened.get());
  EXPECT_TRUE(names_in(state_ + "/incoming").empty());
  EXPECT_TRUE(names_in(state_ + "/quarantine").empty());
  EXPECT_TRUE(v.intact());
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "incoming/fifo", "FIFO")) << joined(w);
  EXPECT_TRUE(any_mentions(w, "incoming/link", "symlink")) << joined(w);
  EXPECT_TRUE(any_mentions(w, "quarantine/fifo", "FIFO")) << joined(w);
  EXPECT_TRUE(any_mentions(w, "quarantine/" + key_n(1) + "-5", "symlink")) << joined(w);
}

// The store's own subdirectory replaced by a symlink (only root could, but nothing is followed).
TEST_F(StoreTest, ASymlinkAsTheStoreDirectoryIsReplacedByADirectory) {
  Victim v(scratch_);
  ASSERT_EQ(::mkdir(state_.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(v.dir.c_str(), (state_ + "/store").c_str()), 0);
  ImageStore store(state_);
  auto r = store.open();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(S_ISDIR(mode_of(state_ + "/store")));
  EXPECT_TRUE(v.intact());
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "/store", "symlink")) << joined(w);
}

// An image its user could have changed (what an older prewarm left: handed to the app's user).
TEST_F(StoreTest, AnImageOwnedByItsUserIsQuarantined) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give an image to another user";
  const std::string k = key_n(1);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k, "calc", 4096);
  }
  const std::string dir = state_ + "/store/" + k;
  for (const std::string& path : {dir, dir + "/pages.img"}) ASSERT_EQ(::lchown(path.c_str(), 65534, 65534), 0);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(store.entries().empty());
  EXPECT_EQ(names_in(state_ + "/quarantine").size(), 1u);
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "owned by uid 65534", "quarantined")) << joined(w);
}

TEST_F(StoreTest, AnImageWithAWritableFileIsQuarantined) {
  const std::string k = key_n(1);
  {
    ImageStore store(state_);
    ASSERT_TRUE(store.open().ok());
    publish(store, k, "calc", 4096);
  }
  ASSERT_EQ(::chmod((state_ + "/store/" + k + "/snapshot.pb").c_str(), 0666), 0);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  EXPECT_TRUE(store.entries().empty());
  auto w = store.take_warnings();
  EXPECT_TRUE(any_mentions(w, "snapshot.pb", "writable")) << joined(w);
}

TEST_F(StoreTest, OpenImageGivesReadOnlyDescriptorsOfRegularFiles) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string k = key_n(1);
  publish(store, k, "calc", 8192);
  auto fds = store.open_image(k);
  ASSERT_TRUE(fds.ok()) << fds.error().describe();
  for (int fd : {fds->manifest.get(), fds->pages.get()}) {
    const int fl = ::fcntl(fd, F_GETFL);
    ASSERT_GE(fl, 0);
    EXPECT_EQ(fl & O_ACCMODE, O_RDONLY);
    EXPECT_EQ(fl & O_NONBLOCK, 0) << "O_NONBLOCK was left set";
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_uid, ::geteuid());
    char c = 0;
    EXPECT_EQ(::write(fd, &c, 1), -1) << "a launch's descriptor can write the image";
  }
  auto manifest = read_fd(fds->manifest.get());
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(*manifest, "manifest of cap-" + k);
  std::string pages(8192, '\0');
  ASSERT_TRUE(pread_all(fds->pages.get(), pages.data(), pages.size(), 0).ok());
  EXPECT_EQ(pages, std::string(8192, 'p'));

  auto unknown = store.open_image(key_n(9));
  EXPECT_FALSE(unknown.ok());
  EXPECT_FALSE(store.open_image("../" + k).ok());
}

TEST_F(StoreTest, OpenImageRefusesASymlinkedOrFifoPagesImg) {
  Victim v(scratch_);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string k1 = key_n(1), k2 = key_n(2);
  publish(store, k1, "calc", 4096);
  publish(store, k2, "calc", 4096);
  // Planted after open(), between the store's checks and a launch.
  const std::string p1 = store.image_dir(k1) + "/pages.img", p2 = store.image_dir(k2) + "/pages.img";
  ASSERT_EQ(::unlink(p1.c_str()), 0);
  ASSERT_EQ(::symlink((v.dir + "/pages.img").c_str(), p1.c_str()), 0);
  ASSERT_EQ(::unlink(p2.c_str()), 0);
  ASSERT_EQ(::mkfifo(p2.c_str(), 0600), 0);

  auto r1 = store.open_image(k1);
  ASSERT_FALSE(r1.ok()) << "a symlinked pages.img was opened";
  EXPECT_EQ(r1.error().code, ELOOP) << r1.error().describe();
  EXPECT_NE(r1.error().describe().find("symlink"), std::string::npos) << r1.error().describe();

  auto r2 = std::async(std::launch::async, [&] { return store.open_image(k2); });
  if (r2.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    if (auto w = open_fd(p2, O_WRONLY)) (void)w;
    r2.wait();
    FAIL() << "open_image() blocked on a FIFO planted as pages.img";
  }
  auto res2 = r2.get();
  ASSERT_FALSE(res2.ok()) << "a FIFO was accepted as pages.img";
  EXPECT_NE(res2.error().describe().find("FIFO"), std::string::npos) << res2.error().describe();
  EXPECT_TRUE(v.intact());
}

TEST_F(StoreTest, OpenImageRefusesFilesOthersCouldWrite) {
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string k = key_n(1);
  publish(store, k, "calc", 4096);
  ASSERT_EQ(::chmod((store.image_dir(k) + "/pages.img").c_str(), 0606), 0);
  auto r = store.open_image(k);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().describe().find("writable"), std::string::npos) << r.error().describe();
}

TEST_F(StoreTest, PublishRefusesACaptureHoldingAnythingButRegularFiles) {
  Victim v(scratch_);
  ImageStore store(state_);
  ASSERT_TRUE(store.open().ok());
  const std::string with_fifo = make_incoming(store, "fifo", 4096);
  ASSERT_EQ(::mkfifo((with_fifo + "/extra").c_str(), 0600), 0);
  const std::string with_link = make_incoming(store, "link", 4096);
  ASSERT_EQ(::unlink((with_link + "/pages.img").c_str()), 0);
  ASSERT_EQ(::symlink((v.dir + "/pages.img").c_str(), (with_link + "/pages.img").c_str()), 0);
  const std::string incomplete = store.incoming_dir("incomplete");
  ASSERT_EQ(::mkdir(incomplete.c_str(), 0700), 0);
  write_text(incomplete + "/snapshot.pb", "m");
  const std::string linked_dir = store.incoming_dir("linked-dir");
  ASSERT_EQ(::symlink(v.dir.c_str(), linked_dir.c_str()), 0);
  int n = 0;
  for (const auto& in : {with_fifo, with_link, incomplete, linked_dir}) {
    auto r = std::async(std::launch::async, [&] { return store.publish(in, entry(key_n(++n), "calc")); });
    ASSERT_EQ(r.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "publish blocked on " << in;
    EXPECT_FALSE(r.get().ok()) << in << " was published";
  }
  EXPECT_TRUE(store.entries().empty());
  EXPECT_TRUE(names_in(state_ + "/store").empty());
  EXPECT_TRUE(v.intact());
  EXPECT_EQ(names_in(v.dir), (std::set<std::string>{"keep", "pages.img", "sub"})) << "meta.json written through a link";
}

TEST(RemoveTree, RemovesNestedTreesWithoutFollowingSymlinks) {
  char tmpl[] = "/tmp/prewarm-store-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  const std::string outside = root + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  write_text(outside + "/keep", "k");
  const std::string tree = root + "/tree";
  ASSERT_EQ(::mkdir(tree.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((tree + "/a").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((tree + "/a/b").c_str(), 0700), 0);
  write_text(tree + "/a/b/f", "f");
  ASSERT_EQ(::symlink(outside.c_str(), (tree + "/a/link").c_str()), 0);
  remove_tree(tree);
  EXPECT_FALSE(exists(tree));
  EXPECT_TRUE(exists(outside + "/keep"));
  remove_tree(root + "/does-not-exist");  // no-op
  fs::remove_all(root);
}

}  // namespace
}  // namespace prewarm
