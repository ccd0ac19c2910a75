// Tests the launcher's staging step on the real kernel: the hole it reserves, mappings staged
// inside it from a real pages.img (written with ImageWriter), checksum verification, and the
// mmap flags and madvise state derived from a snapshot's mapping.
#include "restorer/hole.h"
#include "restorer/staging.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "restorer/blob/plan_abi.h"
#include "snapshot/image.h"
#include "snapshot/proc_maps.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = kPageSize;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kTaskTop = 0x7ffffffff000;
// Snapshot addresses: only names here, nothing is mapped there in this process.
constexpr uint64_t kHeap = 0x10000000, kLib = 0x20000000;
constexpr const char* kShmFlags = "rd wr sh mr mw me ms sd";

pb::Mapping mapping(uint64_t start, uint64_t pages, pb::Mapping::Kind kind, uint32_t prot,
                    const std::string& vm_flags = "rd wr mr mw me ac sd") {
  pb::Mapping m;
  m.set_start(start);
  m.set_end(start + pages * kPage);
  m.set_kind(kind);
  m.set_prot(prot);
  m.set_vm_flags(vm_flags);
  m.set_name(kind == pb::Mapping::ANON ? "[heap]" : "");
  return m;
}

// Page i of a run filled with `fill + i`, so a page read from the wrong place shows.
std::string pages_of(char fill, uint64_t n) {
  std::string s(n * kPage, '\0');
  for (uint64_t i = 0; i < n; ++i)
    std::memset(s.data() + i * kPage, fill + static_cast<char>(i), kPage);
  return s;
}

// The VMA of this process that contains addr.
Vma vma_at(uint64_t addr) {
  auto vmas = read_smaps(0);
  EXPECT_TRUE(vmas.ok()) << vmas.error().describe();
  if (vmas.ok())
    for (const auto& v : *vmas)
      if (v.start <= addr && addr < v.end) return v;
  ADD_FAILURE() << "no mapping at " << std::hex << addr;
  return {};
}

class StageMapping : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prewarm-staging-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    scratch_ = tmpl;
    auto hole = reserve_hole({}, 16 * kMiB);
    ASSERT_TRUE(hole.ok()) << hole.error().describe();
    hole_ = std::move(*hole);
    slot_ = reinterpret_cast<uint64_t>(hole_.get());
  }
  void TearDown() override { std::filesystem::remove_all(scratch_); }

  // Publishes an image holding `mappings` and the given runs (address, contents), then opens its
  // pages.img the way restore does.
  void write_image(const std::vector<pb::Mapping>& mappings,
                   const std::vector<std::pair<uint64_t, std::string>>& runs) {
    for (const auto& m : mappings) *snap_.add_mappings() = m;
    auto w = ImageWriter::create(scratch_ + "/img");
    ASSERT_TRUE(w.ok()) << w.error().describe();
    for (const auto& [addr, data] : runs)
      ASSERT_TRUE(w->append_run(snap_, addr, data.data(), data.size()).ok());
    snap_.mutable_regs()->set_xsave(std::string(832, '\0'));
    ASSERT_TRUE(w->commit(snap_).ok());
    auto img = load_image(scratch_ + "/img");
    ASSERT_TRUE(img.ok()) << img.error().describe();
    pages_ = std::move(img->pages);
  }

  Result<void> stage(int mapping, int first_run, int last_run, int file_fd = -1) {
    return stage_mapping(snap_, snap_.mappings(mapping), first_run, last_run, slot_, pages_.get(),
                         file_fd, stats_);
  }

  const char* at(uint64_t page) const {
    return reinterpret_cast<const char*>(slot_ + page * kPage);
  }

  std::string scratch_;
  UniqueMapping hole_;
  uint64_t slot_ = 0;
  pb::Snapshot snap_;
  UniqueFd pages_;
  StagedRead stats_;
};

TEST_F(StageMapping, AnonymousRunsLandAtTheirOffsetsAndTheRestIsZero) {
  const std::string a = pages_of('a', 2), c = pages_of('c', 1);
  write_image({mapping(kHeap, 6, pb::Mapping::ANON, PROT_READ | PROT_WRITE)},
              {{kHeap, a}, {kHeap + 4 * kPage, c}});
  auto r = stage(0, 0, 2);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(stats_.bytes, 3 * kPage);
  EXPECT_EQ(std::string(at(0), 2 * kPage), a);
  EXPECT_EQ(std::string(at(4), kPage), c);
  const std::string zero(kPage, '\0');
  for (uint64_t page : {2, 3, 5}) EXPECT_EQ(std::string(at(page), kPage), zero) << "page " << page;
  const Vma v = vma_at(slot_);
  EXPECT_EQ(v.start, slot_);
  EXPECT_EQ(v.end, slot_ + 6 * kPage);
  EXPECT_EQ(v.prot, PROT_READ | PROT_WRITE);
  EXPECT_FALSE(v.shared);
}

TEST_F(StageMapping, EndsWithTheSnapshotsProtection) {
  write_image({mapping(kHeap, 2, pb::Mapping::ANON, PROT_READ)}, {{kHeap, pages_of('r', 1)}});
  ASSERT_TRUE(stage(0, 0, 1).ok());
  EXPECT_EQ(vma_at(slot_).prot, PROT_READ);
  EXPECT_EQ(at(0)[0], 'r');
}

TEST_F(StageMapping, PrivateFileMappingGetsWrittenPagesOverTheFile) {
  const std::string file_data = pages_of('F', 3);
  const std::string path = scratch_ + "/libfoo.so";
  auto fd = open_fd(path, O_RDWR | O_CREAT, 0600);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(write_all(fd->get(), file_data.data(), file_data.size()).ok());
  auto lib = mapping(kLib, 2, pb::Mapping::FILE, PROT_READ, "rd mr mw me sd");
  lib.set_file_offset(kPage);  // file pages 1 and 2
  lib.set_name(path);
  const std::string written = pages_of('W', 1);
  write_image({lib}, {{kLib + kPage, written}});

  auto ro = open_fd(path, O_RDONLY);
  ASSERT_TRUE(ro.ok());
  auto r = stage(0, 0, 1, ro->get());
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(std::string(at(0), kPage), file_data.substr(kPage, kPage));
  EXPECT_EQ(std::string(at(1), kPage), written);
  // Copy-on-write: the file itself is untouched.
  std::string back(file_data.size(), '\0');
  ASSERT_TRUE(pread_all(fd->get(), back.data(), back.size(), 0).ok());
  EXPECT_EQ(back, file_data);
  EXPECT_EQ(vma_at(slot_).name, path);
}

TEST_F(StageMapping, SharedAnonymousStaysShared) {
  auto m = mapping(kHeap, 2, pb::Mapping::SHARED_ANON, PROT_READ | PROT_WRITE, kShmFlags);
  m.set_shared(true);
  write_image({m}, {{kHeap + kPage, pages_of('s', 1)}});
  ASSERT_TRUE(stage(0, 0, 1).ok());
  const Vma v = vma_at(slot_);
  EXPECT_TRUE(v.shared);
  EXPECT_EQ(v.name, "/dev/zero (deleted)");
  EXPECT_EQ(at(1)[0], 's');
}

TEST_F(StageMapping, CorruptedRunIsRefusedNamingTheMapping) {
  write_image({mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE)},
              {{kHeap, pages_of('a', 1)}, {kHeap + 2 * kPage, pages_of('b', 2)}});
  // One flipped byte in the second run, as a bad disk block would do it.
  auto rw = open_fd(scratch_ + "/img/" + kPagesName, O_WRONLY);
  ASSERT_TRUE(rw.ok());
  ASSERT_EQ(::pwrite(rw->get(), "X", 1, static_cast<off_t>(kPage + kPage + 100)), 1);

  auto r = stage(0, 0, 2);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().describe();
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0x10002000"), std::string::npos) << msg;  // the run's address
  EXPECT_NE(msg.find("[heap]"), std::string::npos) << msg;
}

TEST_F(StageMapping, PagesImgShorterThanTheRunsIsAnError) {
  write_image({mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE)},
              {{kHeap, pages_of('a', 2)}});
  ASSERT_EQ(::ftruncate(open_fd(scratch_ + "/img/" + kPagesName, O_WRONLY)->get(), kPage), 0);
  auto r = stage(0, 0, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("pages.img"), std::string::npos) << r.error().message;
}

TEST_F(StageMapping, CarriesMadviseStateAndGrowsdown) {
  auto stack = mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE,
                       "rd wr mr mw me gd ac dc dd");
  stack.set_growsdown(true);
  write_image({stack}, {{kHeap + 3 * kPage, pages_of('t', 1)}});
  ASSERT_TRUE(stage(0, 0, 1).ok());
  const Vma v = vma_at(slot_ + 3 * kPage);
  for (VmFlag flag : {VmFlag::kGrowsDown, VmFlag::kDontCopy, VmFlag::kDontDump})
    EXPECT_TRUE(v.vm_flags.has(flag)) << mnemonic(flag) << " in " << v.vm_flags_text();
  EXPECT_FALSE(v.vm_flags.has(VmFlag::kHugePage)) << "a 16 KiB mapping gets no huge pages";
}

// An image from this prewarm: the decoded bits and no text, so only the bits can carry the flags.
pb::Mapping bits_only(pb::Mapping m) {
  m.set_vm_flag_bits(parse_vm_flags(m.vm_flags()).known.bits());
  m.clear_vm_flags();
  return m;
}

TEST_F(StageMapping, CarriesMadviseStateFromTheDecodedBits) {
  auto m = bits_only(mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE, "rd wr mr mw me ac dc dd"));
  write_image({m}, {{kHeap, pages_of('b', 1)}});
  ASSERT_TRUE(stage(0, 0, 1).ok());
  const Vma v = vma_at(slot_);
  EXPECT_TRUE(v.vm_flags.has(VmFlag::kDontCopy)) << v.vm_flags_text();
  EXPECT_TRUE(v.vm_flags.has(VmFlag::kDontDump)) << v.vm_flags_text();
}

// A window of the address space free in this process, to offer reserve_hole as its only gap.
uint64_t free_window(uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EXPECT_NE(p, MAP_FAILED);
  ::munmap(p, size);
  return reinterpret_cast<uint64_t>(p);
}

// Everything but [lo, hi) belongs to the snapshot.
std::vector<Interval> all_but(uint64_t lo, uint64_t hi) { return {{0x10000, lo}, {hi, kTaskTop}}; }

TEST(ReserveHole, LandsInTheOnlyGapTheSnapshotLeavesAndIsInaccessible) {
  const uint64_t w = free_window(64 * kMiB);
  auto hole = reserve_hole(all_but(w, w + 64 * kMiB), 4 * kMiB);
  ASSERT_TRUE(hole.ok()) << hole.error().describe();
  const auto h = reinterpret_cast<uint64_t>(hole->get());
  EXPECT_EQ(hole->size(), 4 * kMiB);
  EXPECT_GE(h, w);
  EXPECT_LE(h + 4 * kMiB, w + 64 * kMiB);
  const Vma v = vma_at(h);
  EXPECT_EQ(v.prot, 0);
  EXPECT_LE(v.start, h);
  EXPECT_GE(v.end, h + 4 * kMiB);
}

TEST(ReserveHole, NeverReplacesTheLaunchersOwnMappings) {
  const uint64_t w = free_window(64 * kMiB);
  // The launcher's own data in the middle of the gap, where a hole would most naturally go.
  void* own = ::mmap(reinterpret_cast<void*>(w + 16 * kMiB), 32 * kMiB, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(own, reinterpret_cast<void*>(w + 16 * kMiB));
  UniqueMapping own_guard(own, 32 * kMiB);
  std::memset(own, 'L', 32 * kMiB);

  auto hole = reserve_hole(all_but(w, w + 64 * kMiB), 4 * kMiB);
  ASSERT_TRUE(hole.ok()) << hole.error().describe();
  const auto h = reinterpret_cast<uint64_t>(hole->get());
  EXPECT_TRUE(h + 4 * kMiB <= w + 16 * kMiB || h >= w + 48 * kMiB) << std::hex << h;
  EXPECT_GE(h, w);
  EXPECT_LE(h + 4 * kMiB, w + 64 * kMiB);
  const auto* bytes = static_cast<const char*>(own);
  EXPECT_EQ(bytes[0], 'L');
  EXPECT_EQ(bytes[32 * kMiB - 1], 'L');
}

TEST(ReserveHole, NoFreeRangeIsENOMEM) {
  auto full = reserve_hole({{0, kTaskTop}}, 2 * kMiB);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ENOMEM);
  EXPECT_NE(full.error().message.find("no address range is free"), std::string::npos);

  const uint64_t w = free_window(8 * kMiB);
  auto too_big = reserve_hole(all_but(w, w + 8 * kMiB), 16 * kMiB);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code, ENOMEM);
}

TEST(MmapFlagsFor, FollowsSharingGrowsdownAndNoreserve) {
  auto heap = mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE, "rd wr mr mw me ac sd");
  EXPECT_EQ(mmap_flags_for(heap), MAP_PRIVATE);

  auto shm = mapping(kHeap, 4, pb::Mapping::SHARED_ANON, PROT_READ | PROT_WRITE, kShmFlags);
  shm.set_shared(true);
  EXPECT_EQ(mmap_flags_for(shm), MAP_SHARED);

  auto stack = mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE, "rd wr mr mw me gd ac");
  stack.set_growsdown(true);
  EXPECT_EQ(mmap_flags_for(stack), MAP_PRIVATE | MAP_GROWSDOWN);

  // A V8-style reservation made with MAP_NORESERVE.
  auto cage = mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE, "rd wr mr mw me nr sd");
  EXPECT_EQ(mmap_flags_for(cage), MAP_PRIVATE | MAP_NORESERVE);
}

TEST(AdviceFor, FollowsVmFlagsAndGivesLargeAnonymousMappingsHugePages) {
  struct Case {
    const char* what;
    pb::Mapping m;
    uint32_t want;
  };
  constexpr uint32_t kRw = PROT_READ | PROT_WRITE;
  auto shared = mapping(kHeap, 1024, pb::Mapping::SHARED_ANON, PROT_READ | PROT_WRITE, kShmFlags);
  shared.set_shared(true);
  const Case cases[] = {
      {"small heap", mapping(kHeap, 16, pb::Mapping::ANON, kRw), 0},
      {"4 MiB anonymous", mapping(kHeap, 1024, pb::Mapping::ANON, kRw), PW_ADVISE_HUGEPAGE},
      {"4 MiB anonymous, nh", mapping(kHeap, 1024, pb::Mapping::ANON, kRw, "rd wr mr mw me nh"),
       PW_ADVISE_NOHUGEPAGE},
      {"4 MiB shared anonymous", shared, 0},
      {"4 MiB file", mapping(kLib, 1024, pb::Mapping::FILE, PROT_READ, "rd mr mw me sd"), 0},
      {"file, hg", mapping(kLib, 16, pb::Mapping::FILE, PROT_READ, "rd mr mw me hg"),
       PW_ADVISE_HUGEPAGE},
      {"dc wf dd", mapping(kHeap, 16, pb::Mapping::ANON, kRw, "rd wr mr mw me dc wf dd"),
       PW_ADVISE_DONTFORK | PW_ADVISE_WIPEONFORK | PW_ADVISE_DONTDUMP},
      {"de is not dd", mapping(kHeap, 16, pb::Mapping::ANON, kRw, "rd wr mr mw me de"), 0},
  };
  for (const Case& c : cases) EXPECT_EQ(advice_for(c.m), c.want) << c.what;
}

// The letters advice_for reads are the ones the kernel prints for the advice apply_advice gives.
// A kernel built without THP refuses MADV_(NO)HUGEPAGE (EINVAL) and has no sysfs directory for
// it; there only the other advice is tried.
TEST(AdviceFor, RoundTripsThroughTheKernel) {
  const bool thp = ::access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0;
  if (!thp) std::printf("THP not built into this kernel: huge-page advice not tried\n");
  for (uint32_t bit : {PW_ADVISE_HUGEPAGE, PW_ADVISE_NOHUGEPAGE, PW_ADVISE_DONTFORK,
                       PW_ADVISE_WIPEONFORK, PW_ADVISE_DONTDUMP}) {
    SCOPED_TRACE(bit);
    if (!thp && (bit == PW_ADVISE_HUGEPAGE || bit == PW_ADVISE_NOHUGEPAGE)) continue;
    auto m = map_anonymous(4 * kPage, PROT_READ | PROT_WRITE);
    ASSERT_TRUE(m.ok());
    auto a = apply_advice(m->get(), m->size(), bit);
    ASSERT_TRUE(a.ok()) << a.error().describe();
    const Vma v = vma_at(reinterpret_cast<uint64_t>(m->get()));
    auto seen = mapping(kHeap, 4, pb::Mapping::ANON, PROT_READ | PROT_WRITE, v.vm_flags_text());
    EXPECT_EQ(advice_for(seen), bit) << v.vm_flags_text();
  }
}

// An image written before vm_flag_bits (text only), one with only the bits, and one with both
// (what dump writes now) are restored alike; where both are present the bits are what counts.
TEST(VmFlagsOf, OldAndNewImagesPlanTheSame) {
  constexpr uint32_t kRw = PROT_READ | PROT_WRITE;
  for (const char* text : {"rd wr mr mw me ac sd", "rd wr mr mw me nh", "rd mr mw me hg",
                           "rd wr mr mw me nr dc wf dd", "rd wr mr mw me gd ac", ""}) {
    SCOPED_TRACE(text);
    for (uint64_t pages : {16ull, 1024ull}) {
      const pb::Mapping old_image = mapping(kHeap, pages, pb::Mapping::ANON, kRw, text);
      pb::Mapping both = old_image;
      both.set_vm_flag_bits(parse_vm_flags(text).known.bits());
      const pb::Mapping bits = bits_only(old_image);
      EXPECT_FALSE(old_image.has_vm_flag_bits());
      EXPECT_EQ(vm_flags_of(old_image), vm_flags_of(bits));
      EXPECT_EQ(vm_flags_of(both), vm_flags_of(bits));
      const pb::Mapping* const decoded[] = {&bits, &both};
      for (const pb::Mapping* m : decoded) {
        EXPECT_EQ(advice_for(*m), advice_for(old_image));
        EXPECT_EQ(advice_for(*m, true), advice_for(old_image, true));
        EXPECT_EQ(mmap_flags_for(*m), mmap_flags_for(old_image));
      }
    }
  }
  // Present but zero is "no flags", not "absent": the text is not consulted.
  pb::Mapping zero = mapping(kHeap, 16, pb::Mapping::ANON, kRw, "rd wr mr mw me dc");
  zero.set_vm_flag_bits(0);
  EXPECT_TRUE(vm_flags_of(zero).empty());
  EXPECT_EQ(advice_for(zero), 0u);
}

}  // namespace
}  // namespace prewarm
