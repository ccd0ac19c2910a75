// The vDSO checks and the restore plan on a Linux 6.1 layout (Debian 12's kernel), which has no
// [vvar_vclock]: [vvar] is four pages right below a two-page [vdso] (arch/x86/entry/vdso/vma.c
// of 6.1, as /proc/PID/maps shows it). A 6.1 kernel cannot be booted here, so the data is that
// layout's and the code paths are the real ones; plan checks replay the blob's vDSO moves.
#include "restorer/compat_check.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "restorer/plan.h"
#include "snapshot/proc_maps.h"

namespace prewarm {
namespace {

// /proc/PID/maps of `cat` on Debian 12's 6.1 (trimmed): no [vvar_vclock].
constexpr const char* kMaps61 =
    "555555554000-555555556000 r--p 00000000 08:01 1311012                    /usr/bin/cat\n"
    "555555556000-55555555b000 r-xp 00002000 08:01 1311012                    /usr/bin/cat\n"
    "55555555f000-555555580000 rw-p 00000000 00:00 0                          [heap]\n"
    "7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0                          [vvar]\n"
    "7ffff7fc5000-7ffff7fc7000 r-xp 00000000 00:00 0                          [vdso]\n"
    "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

// The launcher's own pair on the same kernel, at another address (ASLR).
constexpr const char* kOwnMaps61 =
    "7f12aa3f0000-7f12aa3f4000 r--p 00000000 00:00 0                          [vvar]\n"
    "7f12aa3f4000-7f12aa3f6000 r-xp 00000000 00:00 0                          [vdso]\n";

// The same on 6.13+: [vvar] and [vvar_vclock] in front of [vdso].
constexpr const char* kOwnMaps618 =
    "7f12aa3ee000-7f12aa3f2000 r--p 00000000 00:00 0                          [vvar]\n"
    "7f12aa3f2000-7f12aa3f4000 r--p 00000000 00:00 0                          [vvar_vclock]\n"
    "7f12aa3f4000-7f12aa3f6000 r-xp 00000000 00:00 0                          [vdso]\n";

SpecialMappings specials(const char* maps) {
  auto vmas = parse_smaps(maps);
  EXPECT_TRUE(vmas.ok()) << vmas.error().describe();
  auto s = special_mappings_of(vmas.ok() ? *vmas : std::vector<Vma>{});
  EXPECT_TRUE(s.ok()) << s.error().describe();
  return s.ok() ? *s : SpecialMappings{};
}

pb::Mapping* add(pb::Snapshot& snap, uint64_t start, uint64_t end, int prot, pb::Mapping::Kind kind,
                 const std::string& name) {
  auto* m = snap.add_mappings();
  m->set_start(start);
  m->set_end(end);
  m->set_prot(static_cast<uint32_t>(prot));
  m->set_kind(kind);
  m->set_name(name);
  return m;
}

// A small image as a 6.1 dump writes it: what the dump records for [vvar]/[vdso] (their
// sizes, no [vvar_vclock]), an anonymous code and heap mapping, the stack with one stored page.
pb::Snapshot image61() {
  pb::Snapshot snap;
  add(snap, 0x555555554000, 0x55555555b000, PROT_READ | PROT_EXEC, pb::Mapping::ANON, "");
  add(snap, 0x55555555f000, 0x555555580000, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "[heap]");
  add(snap, 0x7ffff7fc1000, 0x7ffff7fc5000, PROT_READ, pb::Mapping::VVAR, "[vvar]");
  add(snap, 0x7ffff7fc5000, 0x7ffff7fc7000, PROT_READ | PROT_EXEC, pb::Mapping::VDSO, "[vdso]");
  add(snap, 0x7ffffffde000, 0x7ffffffff000, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "[stack]")
      ->set_growsdown(true);
  auto* run = snap.add_page_runs();
  run->set_addr(0x7fffffffd000);
  run->set_len(4096);
  auto* c = snap.mutable_compat();
  c->set_kernel_release("6.1.0-28-amd64");
  c->set_vvar_size(0x4000);
  c->set_vvar_vclock_size(0);
  c->set_vdso_size(0x2000);
  auto* mm = snap.mutable_mm();
  mm->set_start_code(0x555555556000);
  mm->set_end_code(0x55555555b000);
  mm->set_start_data(0x55555555e000);
  mm->set_end_data(0x55555555f000);
  mm->set_start_brk(0x55555555f000);
  mm->set_brk(0x555555580000);
  mm->set_start_stack(0x7fffffffe000);
  mm->set_arg_start(0x7fffffffe100);
  mm->set_arg_end(0x7fffffffe110);
  mm->set_env_start(0x7fffffffe110);
  mm->set_env_end(0x7fffffffe200);
  mm->set_auxv(std::string(32, '\0'));  // AT_NULL
  auto* r = snap.mutable_regs();
  r->set_rsp(0x7fffffffd800);
  r->set_rip(0x555555557000);
  r->set_xsave(std::string(832, '\0'));
  return snap;
}

TEST(SpecialMappings61, NoVvarVclockIsZeroAndTheRestIsFound) {
  const SpecialMappings s = specials(kMaps61);
  EXPECT_EQ(s.vvar_start, 0x7ffff7fc1000u);
  EXPECT_EQ(s.vvar_end, 0x7ffff7fc5000u);
  EXPECT_EQ(s.vvar_vclock_start, 0u);
  EXPECT_EQ(s.vvar_vclock_end, 0u);
  EXPECT_EQ(s.vdso_start, 0x7ffff7fc5000u);
  EXPECT_EQ(s.vdso_end, 0x7ffff7fc7000u);
}

TEST(SpecialMappings61, NoVdsoIsRefused) {
  auto vmas = parse_smaps("7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0   [vvar]\n");
  ASSERT_TRUE(vmas.ok());
  EXPECT_FALSE(special_mappings_of(*vmas).ok());
}

TEST(VdsoLayout61, ImageWithoutVclockMatchesALauncherWithout) {
  auto r = check_vdso_layout(image61(), specials(kOwnMaps61));
  EXPECT_TRUE(r.ok()) << r.error().describe();
}

TEST(VdsoLayout61, ImageWithoutVclockIsRefusedByALauncherWithIt) {
  auto r = check_vdso_layout(image61(), specials(kOwnMaps618));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("sizes"), std::string::npos) << r.error().message;
}

TEST(VdsoLayout61, ImageThatClaimsAVclockThe61KernelLacksIsRefused) {
  pb::Snapshot snap = image61();
  add(snap, 0x7ffff7fc3000, 0x7ffff7fc5000, PROT_READ, pb::Mapping::VVAR_VCLOCK, "[vvar_vclock]");
  auto r = check_vdso_layout(snap, specials(kOwnMaps61));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("recorded sizes"), std::string::npos) << r.error().message;
}

TEST(VdsoLayout61, VvarAtAnotherDistanceFromTheVdsoIsRefused) {
  pb::Snapshot snap = image61();
  for (auto& m : *snap.mutable_mappings())
    if (m.kind() == pb::Mapping::VVAR) m.set_start(m.start() - 0x1000), m.set_end(m.end() - 0x1000);
  auto r = check_vdso_layout(snap, specials(kOwnMaps61));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("layout"), std::string::npos) << r.error().message;
}

struct BuiltPlan {
  HoleLayout layout;
  uint64_t hole = 0;
  std::vector<char> plan;
};

Result<BuiltPlan> plan_for(const pb::Snapshot& snap, const SpecialMappings& own) {
  PW_ASSIGN(auto frame, build_sigframe(snap));
  BuiltPlan b;
  PW_ASSIGN(b.layout, layout_hole(snap, own, 3 * 4096, frame.bytes.size(), 8, 0));
  std::vector<Interval> taken;
  for (const auto& m : snap.mappings()) taken.push_back({m.start(), m.end()});
  for (uint64_t at : hole_candidates(taken, b.layout.hole_len))
    if (at + b.layout.hole_len <= own.vvar_start || at >= own.vdso_end) {
      b.hole = at;
      break;
    }
  if (b.hole == 0) return data_error("no hole");
  PlanInputs in{.snap = snap, .layout = b.layout, .hole = b.hole, .own = own, .frame = frame,
                .file_fd = [](const std::string&) { return 10; }};
  PW_ASSIGN(b.plan, build_plan(in));
  return b;
}

// The blob moves each of this kernel's special mappings to the hop slot and then to the image's
// address: on 6.1 that is [vvar] and [vdso] only, four moves, each source mapped when it runs.
TEST(Plan61, TheVdsoPairWithoutVclockMovesThroughTheHopSlotToTheImagesPlace) {
  const pb::Snapshot snap = image61();
  const SpecialMappings own = specials(kOwnMaps61);
  auto b = plan_for(snap, own);
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_EQ(b->layout.vdso_span, 0x6000u) << "[vvar] + [vdso], nothing for a [vvar_vclock]";
  PwPlan p;
  ASSERT_GE(b->plan.size(), sizeof p);
  std::memcpy(&p, b->plan.data(), sizeof p);
  ASSERT_EQ(p.moves_count, 4u);
  ASSERT_LE(p.moves_off + 4 * sizeof(PwMove), b->plan.size());
  std::vector<PwMove> moves(4);
  std::memcpy(moves.data(), b->plan.data() + p.moves_off, 4 * sizeof(PwMove));
  const uint64_t hop = b->hole + b->layout.hop_off;
  EXPECT_EQ(moves[0].from, own.vvar_start);
  EXPECT_EQ(moves[0].to, hop);
  EXPECT_EQ(moves[0].len, 0x4000u);
  EXPECT_EQ(moves[1].from, own.vdso_start);
  EXPECT_EQ(moves[1].to, hop + 0x4000);
  EXPECT_EQ(moves[1].len, 0x2000u);
  EXPECT_EQ(moves[2].from, hop);
  EXPECT_EQ(moves[2].to, 0x7ffff7fc1000u);
  EXPECT_EQ(moves[3].from, hop + 0x4000);
  EXPECT_EQ(moves[3].to, 0x7ffff7fc5000u);
  // Nothing the blob unmaps may cover where the pair lands.
  std::vector<PwRange> unmap(p.unmap_count);
  std::memcpy(unmap.data(), b->plan.data() + p.unmap_off, p.unmap_count * sizeof(PwRange));
  for (const auto& u : unmap)
    EXPECT_TRUE(u.start + u.len <= 0x7ffff7fc1000u || u.start >= 0x7ffff7fc7000u)
        << "unmap " << std::hex << u.start << "+" << u.len << " covers the image's vDSO";
}

TEST(Plan61, AnImageWithAVclockIsRefusedOnAKernelWithout) {
  pb::Snapshot snap = image61();
  add(snap, 0x7ffff7fbf000, 0x7ffff7fc1000, PROT_READ, pb::Mapping::VVAR_VCLOCK, "[vvar_vclock]");
  auto b = plan_for(snap, specials(kOwnMaps61));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("does not match this kernel"), std::string::npos) << b.error().message;
}

TEST(Plan61, AnImageWithoutVclockIsRefusedOnAKernelWithIt) {
  auto b = plan_for(image61(), specials(kOwnMaps618));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("lacks one of this kernel"), std::string::npos) << b.error().message;
}

}  // namespace
}  // namespace prewarm
