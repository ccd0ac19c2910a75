// TidWordFinder on bytes laid out as glibc lays out its locks: held ones are found with their
// holder, released ones and look-alikes are not, and a lock split across two scans is found once.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include "snapshot/threads.h"

namespace prewarm {
namespace {

std::vector<ThreadInfo> threads_with_tids(const std::vector<pid_t>& tids) {
  std::vector<ThreadInfo> out;
  for (pid_t t : tids) {
    ThreadInfo i;
    i.tid = t;
    out.push_back(i);
  }
  return out;
}

void put_mutex(std::string& mem, size_t off, int32_t lock, int32_t owner, int32_t nusers, int32_t kind) {
  const int32_t m[5] = {lock, (kind & 3) == 1 ? 1 : 0 /* a recursive one's holds */, owner, nusers, kind};
  std::memcpy(mem.data() + off, m, sizeof m);
}

void put_write_held_rwlock(std::string& mem, size_t off, int32_t writer) {
  const uint32_t r[8] = {3 /* WRPHASE | WRLOCKED */, 0, 1, 1, 0, 0, static_cast<uint32_t>(writer), 0};
  std::memcpy(mem.data() + off, r, sizeof r);
}

constexpr uint64_t kBase = 0x7f0000000000;

// libc's writable data at kBase, two pages, with a page of bss after it.
std::vector<Vma> libc_data() {
  Vma data;
  data.start = kBase, data.end = kBase + 8192, data.prot = PROT_READ | PROT_WRITE;
  data.name = "/usr/lib/x86_64-linux-gnu/libc.so.6";
  Vma bss;
  bss.start = kBase + 8192, bss.end = kBase + 12288, bss.prot = PROT_READ | PROT_WRITE;
  return {data, bss};
}

TEST(TidWordFinder, FindsHeldMutexesWithTheirHolder) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 64, 1, 4242, 1, 1);            // recursive, held by thread 1
  put_mutex(mem, 128, 2, 100, 2, 2);            // error-checking, contended, held by the main thread
  put_mutex(mem, 192, 0x80000000 | 4242, 4242, 1, 0x20);  // PI with waiters: the word is the tid too
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), mem.size());
  ASSERT_EQ(f.words().size(), 4u);
  EXPECT_EQ(f.words()[0].addr, kBase + 64 + 8);
  EXPECT_EQ(f.words()[0].thread, 1u);
  EXPECT_EQ(f.words()[0].mask, 0xffffffffu);
  EXPECT_EQ(f.words()[1].addr, kBase + 128 + 8);
  EXPECT_EQ(f.words()[1].thread, 0u);
  EXPECT_EQ(f.words()[2].addr, kBase + 192 + 8);
  EXPECT_EQ(f.words()[3].addr, kBase + 192);
  EXPECT_EQ(f.words()[3].mask, 0x3fffffffu);  // the waiter bits stay
}

TEST(TidWordFinder, IgnoresReleasedLocksAndLookAlikes) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 64, 0, 4242, 1, 1);      // released (its __owner is 0 in glibc, but the word decides)
  put_mutex(mem, 128, 1, 4243, 1, 1);     // a tid of no thread
  put_mutex(mem, 192, 7, 4242, 1, 1);     // a lock word a recursive mutex never has
  put_mutex(mem, 256, 1, 4242, 0, 1);     // no users
  put_mutex(mem, 320, 1, 4242, 1, 0x401); // a kind glibc cannot make
  put_mutex(mem, 388, 1, 4242, 1, 1);     // not 8-aligned
  // Held normal and adaptive mutexes: glibc never reads their __owner, so they need no new tid
  // (and the JVM keeps records of this very shape that are not mutexes: rewriting one crashed it).
  put_mutex(mem, 512, 2, 4242, 74, 0);
  put_mutex(mem, 576, 1, 4242, 1, 3);
  put_mutex(mem, 640, 1, 4242, 1, 2);
  mem[640 + 4] = 1;                       // an error-checking mutex counts no holds
  put_mutex(mem, 448, 0x80000000 | 17, 4242, 1, 0x20);  // PI whose word names another tid
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), mem.size());
  EXPECT_TRUE(f.words().empty());
}

// Outside ld.so's and libc's data a recursive or error-checking mutex's shape is not enough
// (the JVM's per-thread records have it); PI mutexes and rwlocks are found everywhere.
TEST(TidWordFinder, RecursiveAndErrorCheckingOnlyInGlibcData) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 64, 1, 4242, 1, 1);
  put_mutex(mem, 128, 2, 4242, 2, 2);
  put_mutex(mem, 192, 4242, 4242, 1, 0x20);
  put_write_held_rwlock(mem, 256, 100);
  TidWordFinder in_libc(threads, libc_data());
  in_libc.scan(kBase + 4096, mem.data(), mem.size());
  EXPECT_EQ(in_libc.words().size(), 5u);
  TidWordFinder in_heap(threads, libc_data());
  in_heap.scan(kBase + 0x100000, mem.data(), mem.size());
  ASSERT_EQ(in_heap.words().size(), 3u);
  EXPECT_EQ(in_heap.words()[0].addr, kBase + 0x100000 + 192 + 8);
  EXPECT_EQ(in_heap.words()[2].addr, kBase + 0x100000 + 256 + 24);
}

// Words seen rewritten in a JVM whose tids were 703..739 (a pid namespace starting at 700): its
// JIT's tables of small numbers matched the 20 bytes once checked, and a restore aborted in malloc.
// Checked whole, none is a lock.
TEST(TidWordFinder, SmallNumbersThatEqualTidsAreNotLocks) {
  std::vector<pid_t> tids{703};
  for (pid_t t = 707; t <= 724; ++t) tids.push_back(t);
  for (pid_t t : {727, 736, 737, 738, 739}) tids.push_back(t);
  auto threads = threads_with_tids(tids);
  const std::vector<std::vector<uint32_t>> seen{
      {0x190, 0x250, 0x280, 0x280, 0, 0x298, 0x2c8, 0x2d0, 0x2d0, 0x2d0, 0x2d0, 0x2d0, 0x2d0, 0x20, 0x10, 3, 0x2000000, 2},
      {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x2cb, 0x2c4, 0x2c1, ~0u, ~0u, ~0u, ~0u, ~0u},
      {0x2b7, 0x2b8, 0x2b9, 0x2ba, 0x2bb, 0x2bc, 0x2bd, 0x2be, 0x2bf, 0x2c0, 0x2c1, 0x2c2, 0x2c3, 0x2c4, 0x2c5, 0x2c6},
      // A write-held rwlock's shape but for its padding.
      {3, 0, 1, 1, 0, 0, 0x2c4, 0, 0x2c4, 0, 0, 0, 0, 0, 0, 0}};
  for (const auto& words : seen) {
    std::string mem(4096, '\0');
    for (size_t off = 512; off < 3584; off += words.size() * 4) std::memcpy(mem.data() + off, words.data(), words.size() * 4);
    TidWordFinder in_heap(threads, libc_data());
    in_heap.scan(kBase + 0x100000, mem.data(), mem.size());
    EXPECT_TRUE(in_heap.words().empty()) << std::hex << words[0] << " matched at " << in_heap.words()[0].addr;
    TidWordFinder in_libc(threads, libc_data());
    in_libc.scan(kBase, mem.data(), mem.size());
    EXPECT_TRUE(in_libc.words().empty()) << std::hex << words[0] << " matched at " << in_libc.words()[0].addr;
    EXPECT_TRUE(in_libc.lookalikes().empty());
  }
}

// A priority-protect mutex held: the ceiling in the lock word, and __count 1 whatever its type
// (glibc sets it at every PP acquire).
TEST(TidWordFinder, FindsHeldPriorityProtectMutexes) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 64, (5 << 19) | 1, 4242, 1, 0x42);  // error-checking
  mem[64 + 4] = 1;
  put_mutex(mem, 128, (5 << 19) | 2, 100, 2, 0x41);  // recursive, contended
  TidWordFinder f(threads, libc_data());
  f.scan(kBase + 0x100000, mem.data(), mem.size());
  ASSERT_EQ(f.words().size(), 2u);
  EXPECT_EQ(f.words()[0].addr, kBase + 0x100000 + 64 + 8);
  EXPECT_EQ(f.words()[0].thread, 1u);
  EXPECT_EQ(f.words()[1].addr, kBase + 0x100000 + 128 + 8);
  EXPECT_EQ(f.words()[1].thread, 0u);
}

// A robust mutex held is on its holder's robust list, which makes the dump refuse; its shape
// elsewhere is not a lock. An elision-enabled kind is never one of the kinds whose owner is read.
TEST(TidWordFinder, RobustAndElisionKindsAreNeverRewritten) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 64, 4242, 4242, 1, 0x10);
  put_mutex(mem, 128, 4242, 4242, 1, 0x30);
  put_mutex(mem, 192, 1, 4242, 1, 0x101);
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), mem.size());
  EXPECT_TRUE(f.words().empty());
}

// glibc's struct pthread has the tid at clear_child_tid: the thread's own cache, not a lock.
TEST(TidWordFinder, SkipsTheThreadsOwnTidCache) {
  auto threads = threads_with_tids({100, 4242});
  threads[1].clear_child_tid = kBase + 64 + 8;
  std::string mem(4096, '\0');
  put_mutex(mem, 64, 1, 4242, 1, 1);
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), mem.size());
  EXPECT_TRUE(f.words().empty());
}

TEST(TidWordFinder, FindsARwlockHeldForWriting) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_write_held_rwlock(mem, 512, 4242);
  std::string read_held = mem;
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), mem.size());
  ASSERT_EQ(f.words().size(), 1u);
  EXPECT_EQ(f.words()[0].addr, kBase + 512 + 24);
  EXPECT_EQ(f.words()[0].thread, 1u);
  // Readers only (no WRLOCKED bit): nothing names a tid.
  const uint32_t readers = 8 << 3;
  std::memcpy(read_held.data() + 512, &readers, sizeof readers);
  TidWordFinder g(threads, libc_data());
  g.scan(kBase, read_held.data(), read_held.size());
  EXPECT_TRUE(g.words().empty());
}

// A mutex across the boundary of two stored runs is found once; runs that do not touch are not joined.
TEST(TidWordFinder, JoinsConsecutiveScans) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(8192, '\0');
  put_mutex(mem, 4096 - 8, 1, 4242, 1, 1);  // lock and count in the first page, owner on in the second
  put_mutex(mem, 64, 1, 100, 1, 1);
  TidWordFinder f(threads, libc_data());
  f.scan(kBase, mem.data(), 4096);
  f.scan(kBase + 4096, mem.data() + 4096, 4096);
  ASSERT_EQ(f.words().size(), 2u);
  EXPECT_EQ(f.words()[0].addr, kBase + 64 + 8);
  EXPECT_EQ(f.words()[1].addr, kBase + 4096);
  EXPECT_EQ(f.words()[1].thread, 1u);
  TidWordFinder apart(threads, libc_data());
  apart.scan(kBase, mem.data(), 4096);
  apart.scan(kBase + 3 * 4096, mem.data() + 4096, 4096);
  EXPECT_EQ(apart.words().size(), 1u);
}

// A lock whose last fields lie in memory the dump does not store (a skipped zero page, pages
// never touched) is found against zeros, only where the caller says zeros follow.
TEST(TidWordFinder, FindsALockThatEndsInUnstoredZeros) {
  auto threads = threads_with_tids({100, 4242});
  std::string mem(4096, '\0');
  put_mutex(mem, 4096 - 24, 0x80000000 | 4242, 4242, 1, 0x20);  // PI: its spins, elision and list beyond
  put_write_held_rwlock(mem, 4096 - 80, 4242);  // whole within the run: a control
  TidWordFinder f(threads, {});
  f.scan(kBase, mem.data(), mem.size(), kBase + 3 * 4096);
  f.scan(kBase + 2 * 4096, mem.data(), 64);  // the next stored run: the tail meets zeros first
  f.finish();
  ASSERT_EQ(f.words().size(), 3u);
  EXPECT_EQ(f.words()[0].addr, kBase + 4096 - 80 + 24);
  EXPECT_EQ(f.words()[1].addr, kBase + 4096 - 24 + 8);
  EXPECT_EQ(f.words()[2].addr, kBase + 4096 - 24);
  // A rwlock whose flags and padding lie beyond: found at the end of the pages as well.
  std::string rw(4096, '\0');
  put_write_held_rwlock(rw, 4096 - 32, 4242);
  TidWordFinder g(threads, {});
  g.scan(kBase, rw.data(), rw.size(), kBase + 4096 + 4096);
  EXPECT_TRUE(g.words().empty());  // not before the end is known
  g.finish();
  ASSERT_EQ(g.words().size(), 1u);
  EXPECT_EQ(g.words()[0].addr, kBase + 4096 - 32 + 24);
  // Not where what follows is not known to be zero (a file's pages), nor past the mapping's end.
  TidWordFinder file(threads, {});
  file.scan(kBase, mem.data(), mem.size());
  file.finish();
  EXPECT_EQ(file.words().size(), 1u);  // the whole rwlock only
  TidWordFinder end(threads, {});
  end.scan(kBase, rw.data(), rw.size(), kBase + 4096);
  end.finish();
  EXPECT_TRUE(end.words().empty());
}

}  // namespace
}  // namespace prewarm
