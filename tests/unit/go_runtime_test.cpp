// go_tid_words on m lists laid out in memory the way the Go runtime lays them out, at offsets no
// release uses, so the search is shown to need no layout.
#include "snapshot/go_runtime.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

namespace prewarm {
namespace {

constexpr uint64_t kMSize = 0x400;
constexpr uint64_t kAllm = 0x1000;  // runtime.allm
constexpr uint64_t kM0 = 0x2000;    // runtime.m0

// Memory of ms: each m is kMSize bytes, the link at `link`, the tid at `tid`.
struct Memory {
  std::map<uint64_t, std::vector<uint64_t>> ms;
  uint64_t allm = 0;
  size_t link, tid;
  Memory(size_t link_field, size_t tid_field) : link(link_field), tid(tid_field) {}

  // Adds an m for `thread_id`, newest first as the runtime does.
  void add(uint64_t at, pid_t thread_id) {
    auto& m = ms[at];
    m.assign(kMSize / 8, 0);
    for (size_t i = 0; i < m.size(); ++i) m[i] = 0x5a5a0000 + i;  // other fields: not tids, not null
    m[link] = allm;
    m[tid] = static_cast<uint64_t>(thread_id);
    allm = at;
  }
  ReadMemory reader() const {
    return [this](uint64_t addr, void* out, size_t len) {
      if (addr == kAllm && len == 8) return std::memcpy(out, &allm, 8), true;
      auto it = ms.upper_bound(addr);  // the m that holds [addr, addr + len), if one does
      if (it == ms.begin()) return false;
      --it;
      if (addr + len > it->first + kMSize) return false;
      std::memcpy(out, reinterpret_cast<const char*>(it->second.data()) + (addr - it->first), len);
      return true;
    };
  }
};

const GoRuntimeSymbols kSym{kAllm, kM0, kMSize};

// Each word's address and thread; every word takes a whole 32-bit tid.
std::map<uint64_t, uint32_t> by_address(const std::vector<TidWord>& words) {
  std::map<uint64_t, uint32_t> got;
  for (const auto& w : words) {
    EXPECT_EQ(w.mask, 0xffffffffu);
    got[w.addr] = w.thread;
  }
  return got;
}

TEST(GoTidWords, EveryMsIdAtAnUnknownOffset) {
  Memory mem(37, 11);
  mem.add(kM0, 500);
  mem.add(0x9000, 503);
  mem.add(0x5000, 501);
  auto words = go_tid_words(mem.reader(), kSym, {500, 501, 503});
  ASSERT_TRUE(words) << words.error().describe();
  ASSERT_EQ(words->size(), 3u);
  EXPECT_EQ(by_address(*words), (std::map<uint64_t, uint32_t>{{kM0 + 11 * 8, 0}, {0x5000 + 11 * 8, 1}, {0x9000 + 11 * 8, 2}}));
}

// cgo: a spare m with no thread (id 0), and a thread C code started that has no m.
TEST(GoTidWords, AnMWithoutAThreadAndAThreadWithoutAnM) {
  Memory mem(3, 9);
  mem.add(kM0, 500);
  mem.add(0x5000, 501);
  mem.add(0x6000, 0);
  auto words = go_tid_words(mem.reader(), kSym, {500, 501, 777});
  ASSERT_TRUE(words) << words.error().describe();
  EXPECT_EQ(by_address(*words), (std::map<uint64_t, uint32_t>{{kM0 + 9 * 8, 0}, {0x5000 + 9 * 8, 1}}));
}

// Links that go round and round, or on for ever through memory the process crafted, are
// followed only so far.
TEST(GoTidWords, ACraftedListIsFollowedOnlySoFar) {
  Memory loop(3, 9);
  loop.add(kM0, 500);
  loop.add(0x5000, 501);
  loop.add(0x6000, 502);
  loop.ms[0x5000][3] = 0x6000;  // 0x6000 -> 0x5000 -> 0x6000
  EXPECT_FALSE(go_tid_words(loop.reader(), kSym, {500, 501, 502}));
  size_t reads = 0;
  const ReadMemory endless = [&](uint64_t addr, void* out, size_t len) {
    ++reads;
    std::memset(out, 0, len);
    if (len == 8) {
      const uint64_t next = addr + 0x4000;  // every word of every "m" leads to another
      std::memcpy(out, &next, 8);
    }
    return true;
  };
  EXPECT_FALSE(go_tid_words(endless, GoRuntimeSymbols{kAllm, kM0, 16u << 10}, {500}));
  EXPECT_LE(reads, (1u << 20) + 2);
}

TEST(GoTidWords, AnMWhoseThreadIsGoneIsRefused) {
  Memory mem(3, 9);
  mem.add(kM0, 500);
  mem.add(0x5000, 999);  // not a thread of the process
  auto words = go_tid_words(mem.reader(), kSym, {500, 501});
  ASSERT_FALSE(words);
  EXPECT_NE(words.error().message.find("no field of the runtime's m holds its thread's id"), std::string::npos)
      << words.error().message;
}

TEST(GoTidWords, TheLongestListIsTheRuntimes) {
  Memory mem(20, 9);
  mem.add(kM0, 500);
  mem.add(0x5000, 501);
  mem.add(0x6000, 502);
  // Another pointer of the newest m leads straight to m0 (m0's own is null): a shorter list.
  mem.ms[0x6000][5] = kM0;
  mem.ms[kM0][5] = 0;
  auto words = go_tid_words(mem.reader(), kSym, {500, 501, 502});
  ASSERT_TRUE(words) << words.error().describe();
  EXPECT_EQ(words->size(), 3u);
}

TEST(GoTidWords, AListThatDoesNotEndAtM0IsRefused) {
  Memory mem(3, 9);
  mem.add(0x7000, 500);  // m0 is not on the list
  mem.add(0x5000, 501);
  mem.ms[kM0].assign(kMSize / 8, 0);
  auto words = go_tid_words(mem.reader(), kSym, {500, 501});
  ASSERT_FALSE(words);
  EXPECT_NE(words.error().message.find("leads from runtime.allm to runtime.m0"), std::string::npos) << words.error().message;
}

TEST(GoTidWords, TwoIdsInTheOnlyMWithAThreadCannotBeToldApart) {
  Memory mem(3, 9);
  mem.add(kM0, 500);
  mem.ms[kM0][30] = 500;
  auto words = go_tid_words(mem.reader(), kSym, {500});
  ASSERT_FALSE(words);
  // With two threads, a second field that holds each m's id is a second cache: both rewritten.
  Memory two(3, 9);
  two.add(kM0, 500);
  two.add(0x5000, 501);
  two.ms[kM0][30] = 500;
  two.ms[0x5000][30] = 501;
  auto both = go_tid_words(two.reader(), kSym, {500, 501});
  ASSERT_TRUE(both) << both.error().describe();
  EXPECT_EQ(both->size(), 4u);
}

TEST(GoTidWords, UnreadableMemoryAndOddSizesAreRefused) {
  Memory mem(3, 9);
  mem.add(kM0, 500);
  EXPECT_FALSE(go_tid_words(mem.reader(), GoRuntimeSymbols{kAllm, kM0, 12}, {500}));
  EXPECT_FALSE(go_tid_words(mem.reader(), GoRuntimeSymbols{0x42, kM0, kMSize}, {500}));
  mem.allm = 0x8000;  // points at nothing readable
  EXPECT_FALSE(go_tid_words(mem.reader(), kSym, {500}));
}

}  // namespace
}  // namespace prewarm
