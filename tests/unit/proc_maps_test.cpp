// Tests that parse_smaps turns /proc/PID/smaps and maps text into the right Vma list, on sample text
// and on this process's own mappings.
#include "snapshot/proc_maps.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

// Shaped like real smaps output (Debian 12, 6.x kernel), detail lines trimmed to a few.
const char* const kSmaps =
    "55d4c8a00000-55d4c8a02000 r--p 00000000 fd:01 1311234                    /usr/bin/cat\n"
    "Size:                  8 kB\n"
    "KernelPageSize:        4 kB\n"
    "Rss:                   8 kB\n"
    "Anonymous:             0 kB\n"
    "THPeligible:    0\n"
    "VmFlags: rd mr mw me dw sd\n"
    "55d4c8a02000-55d4c8a07000 r-xp 00002000 fd:01 1311234                    /usr/bin/cat\n"
    "Size:                 20 kB\n"
    "VmFlags: rd ex mr mw me dw sd\n"
    "55d4c9b3e000-55d4c9b5f000 rw-p 00000000 00:00 0                          [heap]\n"
    "Size:                132 kB\n"
    "VmFlags: rd wr mr mw me ac sd\n"
    "7f1c2a000000-7f1c2a100000 rw-s 00000000 00:01 4                          /dev/zero (deleted)\n"
    "Size:               1024 kB\n"
    "VmFlags: rd wr sh mr mw me ms sd\n"
    "7f1c2b000000-7f1c2b001000 rw-s 00000000 00:0e 1066                       anon_inode:[perf_event]\n"
    "Size:                  4 kB\n"
    "VmFlags: rd wr sh mr mw ms pf io dc de dd\n"
    "7f1c2c000000-7f1c2c004000 rw-p 00000000 00:00 0 \n"
    "Size:                 16 kB\n"
    "VmFlags: rd wr mr mw me ac sd\n"
    "7f1c2d000000-7f1c2d001000 r--p 00001000 08:02 77                         /home/u/My Documents/lib x.so\n"
    "VmFlags: rd mr mw me sd\n"
    "7ffd5c8e1000-7ffd5c902000 rw-p 00000000 00:00 0                          [stack]\n"
    "VmFlags: rd wr mr mw me gd ac\n"
    "7ffd5c9f0000-7ffd5c9f4000 r--p 00000000 00:00 0                          [vvar]\n"
    "VmFlags: rd mr pf io de dd sd\n"
    "7ffd5c9f4000-7ffd5c9f6000 r-xp 00000000 00:00 0                          [vdso]\n"
    "VmFlags: rd ex mr mw me de sd\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
    "VmFlags: ex\n";

std::vector<Vma> parse_ok(const std::string& text) {
  auto r = parse_smaps(text);
  EXPECT_TRUE(r.ok()) << r.error().describe();
  return r.ok() ? r.value() : std::vector<Vma>{};
}

TEST(ParseSmaps, ReadsEveryMappingOnce) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  EXPECT_EQ(v[0].name, "/usr/bin/cat");
  EXPECT_EQ(v[2].name, "[heap]");
  EXPECT_EQ(v[10].name, "[vsyscall]");
}

TEST(ParseSmaps, ReadsHeaderFields) {
  auto v = parse_ok(kSmaps);
  ASSERT_GE(v.size(), 2u);
  EXPECT_EQ(v[0].start, 0x55d4c8a00000u);
  EXPECT_EQ(v[0].end, 0x55d4c8a02000u);
  EXPECT_EQ(v[0].size(), 0x2000u);
  EXPECT_EQ(v[0].prot, PROT_READ);
  EXPECT_FALSE(v[0].shared);
  EXPECT_EQ(v[0].offset, 0u);
  EXPECT_EQ(v[0].dev_major, 0xfdu);
  EXPECT_EQ(v[0].dev_minor, 0x01u);
  EXPECT_EQ(v[0].inode, 1311234u);

  EXPECT_EQ(v[1].prot, PROT_READ | PROT_EXEC);
  EXPECT_EQ(v[1].offset, 0x2000u);
  EXPECT_EQ(v[2].prot, PROT_READ | PROT_WRITE);
}

TEST(ParseSmaps, ReadsTheHighVsyscallAddress) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  EXPECT_EQ(v[10].start, 0xffffffffff600000u);
  EXPECT_EQ(v[10].end, 0xffffffffff601000u);
  EXPECT_EQ(v[10].prot, PROT_EXEC);
}

TEST(ParseSmaps, AttachesVmFlagsToTheirOwnMapping) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  const Vma& perf = v[4];
  EXPECT_EQ(perf.name, "anon_inode:[perf_event]");
  EXPECT_TRUE(perf.vm_flags.has(VmFlag::kPfnMap));
  EXPECT_TRUE(perf.vm_flags.has(VmFlag::kIo));
  EXPECT_EQ(perf.vm_flags_text(), "rd wr sh mr mw ms pf io dc de dd");

  const Vma& heap = v[2];
  EXPECT_FALSE(heap.vm_flags.has(VmFlag::kPfnMap));
  EXPECT_FALSE(heap.vm_flags.has(VmFlag::kIo));
  EXPECT_TRUE(heap.vm_flags.has(VmFlag::kAccount));
  EXPECT_EQ(heap.vm_flags_text(), "rd wr mr mw me ac sd");

  EXPECT_EQ(v[10].vm_flags_text(), "ex");
}

TEST(ParseSmaps, HasFlagMatchesWholeFlagsOnly) {
  auto v = parse_ok(kSmaps);
  ASSERT_GE(v.size(), 1u);
  EXPECT_TRUE(v[0].vm_flags.has(VmFlag::kMayWrite));
  auto partial = parse_vm_flags("m mwx wr_");
  EXPECT_TRUE(partial.known.empty());
  ASSERT_EQ(partial.unknown.size(), 3u);
  EXPECT_EQ(partial.unknown[0].mnemonic, "m");
  EXPECT_EQ(partial.unknown[1].mnemonic, "mwx");
}

TEST(ParseSmaps, ReadsSharedAndDeleted) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  const Vma& zero = v[3];
  EXPECT_EQ(zero.name, "/dev/zero (deleted)");
  EXPECT_TRUE(zero.shared);
  EXPECT_TRUE(zero.is_deleted());
  EXPECT_FALSE(v[0].shared);
  EXPECT_FALSE(v[0].is_deleted());
}

TEST(ParseSmaps, AnonymousMappingHasEmptyName) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  EXPECT_EQ(v[5].start, 0x7f1c2c000000u);
  EXPECT_EQ(v[5].name, "");
  EXPECT_EQ(v[5].inode, 0u);
}

TEST(ParseSmaps, KeepsSpacesInsideNames) {
  auto v = parse_ok(kSmaps);
  ASSERT_EQ(v.size(), 11u);
  EXPECT_EQ(v[6].name, "/home/u/My Documents/lib x.so");
  EXPECT_EQ(v[6].offset, 0x1000u);
  EXPECT_EQ(v[6].dev_major, 8u);
  EXPECT_EQ(v[6].dev_minor, 2u);
}

TEST(ParseSmaps, NameOnlyDeletedSuffixIsNotDeleted) {
  Vma vma;
  vma.name = " (deleted)";
  EXPECT_FALSE(vma.is_deleted());
  vma.name = "/tmp/x (deleted)";
  EXPECT_TRUE(vma.is_deleted());
  vma.name = "/tmp/x (deleted) but not at the end";
  EXPECT_FALSE(vma.is_deleted());
}

TEST(ParseSmaps, MapsTextGivesNoVmFlags) {
  auto v = parse_ok(
      "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n"
      "00e03000-00e24000 rw-p 00000000 00:00 0           [heap]\n"
      "35b1800000-35b1820000 r-xp 00000000 08:02 135522  /usr/lib64/ld-2.15.so\n");
  ASSERT_EQ(v.size(), 3u);
  for (const auto& vma : v) EXPECT_TRUE(vma.vm_flags.empty()) << vma.name;
  EXPECT_EQ(v[2].start, 0x35b1800000u);
  EXPECT_EQ(v[2].name, "/usr/lib64/ld-2.15.so");
}

TEST(ParseSmaps, EmptyTextIsNoMappings) {
  auto v = parse_smaps("");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->empty());
}

TEST(ParseSmaps, RefusesMappingsOutOfOrder) {
  auto r = parse_smaps(
      "7f0000002000-7f0000003000 rw-p 00000000 00:00 0\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("out of order"), std::string::npos) << r.error().message;
}

TEST(ParseSmaps, RefusesOverlappingMappings) {
  auto r = parse_smaps(
      "7f0000000000-7f0000002000 rw-p 00000000 00:00 0\n"
      "7f0000001000-7f0000003000 rw-p 00000000 00:00 0\n");
  EXPECT_FALSE(r.ok());
}

TEST(ParseSmaps, RefusesVmFlagsBeforeAnyMapping) {
  auto r = parse_smaps("VmFlags: rd wr\n7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("VmFlags"), std::string::npos) << r.error().message;
}

TEST(ParseSmaps, RefusesMalformedHeaders) {
  const char* const bad[] = {
      "7f0000000000-7f0000001000 rw-p zz 00:00 0\n",          // offset not hex
      "7f0000000000-7f0000001000 rw- 00000000 00:00 0\n",     // perms too short
      "7f0000000000-7f0000001000 rw-p 00000000 0000 0\n",     // device without colon
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 12a\n",  // inode not decimal
      "7f0000002000-7f0000001000 rw-p 00000000 00:00 0\n",    // end before start
      "7f0000001000-7f0000001000 rw-p 00000000 00:00 0\n",    // empty range
      "7f0000000000-7f0000001000 rw-p\n",                     // too few fields
  };
  for (const char* text : bad) {
    auto r = parse_smaps(text);
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("cannot parse"), std::string::npos) << text;
    }
  }
}

// A scratch mapping of this process, found again in its own smaps.
const Vma* find_vma(const std::vector<Vma>& v, uint64_t start) {
  for (const auto& vma : v)
    if (vma.start == start) return &vma;
  return nullptr;
}

// Private anonymous pages between two PROT_NONE guard pages: a neighbour of the same kind could
// otherwise merge with them and move the start of their VMA.
struct Guarded {
  UniqueMapping whole;
  char* p = nullptr;
};
Guarded guarded_anonymous(size_t pages, int prot) {
  Guarded g;
  const size_t len = (pages + 2) * 4096;
  void* all = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (all == MAP_FAILED) return g;
  g.whole = UniqueMapping(all, len);
  char* p = static_cast<char*>(all) + 4096;
  if (::mprotect(p, pages * 4096, prot) == 0) g.p = p;
  return g;
}

TEST(ReadSmaps, SeesOwnMappingsSplitByProtection) {
  const size_t page = 4096;
  Guarded g = guarded_anonymous(3, PROT_READ | PROT_WRITE);
  char* p = g.p;
  ASSERT_NE(p, nullptr);
  const auto base = reinterpret_cast<uint64_t>(p);
  ASSERT_EQ(::mprotect(p + page, page, PROT_READ), 0);
  ASSERT_EQ(::madvise(p + 2 * page, page, MADV_DONTDUMP), 0);

  auto r = read_smaps(0);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const Vma* first = find_vma(*r, base);
  const Vma* middle = find_vma(*r, base + page);
  const Vma* last = find_vma(*r, base + 2 * page);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(middle, nullptr);
  ASSERT_NE(last, nullptr);

  EXPECT_EQ(first->end, base + page);
  EXPECT_EQ(first->prot, PROT_READ | PROT_WRITE);
  EXPECT_TRUE(first->vm_flags.has(VmFlag::kRead));
  EXPECT_TRUE(first->vm_flags.has(VmFlag::kWrite));
  EXPECT_FALSE(first->vm_flags.has(VmFlag::kDontDump));

  EXPECT_EQ(middle->prot, PROT_READ);
  EXPECT_FALSE(middle->vm_flags.has(VmFlag::kWrite));

  EXPECT_EQ(last->end, base + 3 * page);
  EXPECT_TRUE(last->vm_flags.has(VmFlag::kDontDump));
  EXPECT_EQ(last->name, "");
  EXPECT_FALSE(last->shared);
}

TEST(ReadSmaps, SeesSharedAnonymousAsDeletedDevZero) {
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  UniqueMapping guard(p, 4096);
  auto r = read_smaps(0);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const Vma* vma = find_vma(*r, reinterpret_cast<uint64_t>(p));
  ASSERT_NE(vma, nullptr);
  EXPECT_TRUE(vma->shared);
  EXPECT_EQ(vma->name, "/dev/zero (deleted)");
  EXPECT_TRUE(vma->vm_flags.has(VmFlag::kShared));
}

TEST(ReadSmaps, SeesFileMappingWithPathInodeAndOffset) {
  char path[] = "/tmp/prewarm-proc-maps-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  UniqueFd file(fd);
  ASSERT_EQ(::ftruncate(fd, 3 * 4096), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 2 * 4096);
  ASSERT_NE(p, MAP_FAILED);
  UniqueMapping guard(p, 4096);

  auto r = read_smaps(0);
  ::unlink(path);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const Vma* vma = find_vma(*r, reinterpret_cast<uint64_t>(p));
  ASSERT_NE(vma, nullptr);
  EXPECT_EQ(vma->name, path);
  EXPECT_EQ(vma->inode, st.st_ino);
  EXPECT_EQ(vma->offset, 2u * 4096);
  EXPECT_EQ(vma->prot, PROT_READ);
  EXPECT_EQ(makedev(vma->dev_major, vma->dev_minor), st.st_dev);
}

TEST(ReadMaps, SeesOwnMappingWithoutVmFlags) {
  Guarded g = guarded_anonymous(1, PROT_READ);
  ASSERT_NE(g.p, nullptr);
  auto r = read_maps(0);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const Vma* vma = find_vma(*r, reinterpret_cast<uint64_t>(g.p));
  ASSERT_NE(vma, nullptr);
  EXPECT_EQ(vma->end, reinterpret_cast<uint64_t>(g.p) + 4096);
  EXPECT_EQ(vma->prot, PROT_READ);
  EXPECT_TRUE(vma->vm_flags.empty());
}

TEST(ReadSmaps, NoSuchProcessIsAnError) {
  // pid_max is at most 2^22, so this pid cannot exist.
  auto r = read_smaps(1 << 30);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOENT);
}

}  // namespace
}  // namespace prewarm
