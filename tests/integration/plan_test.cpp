// The plan builder on a real snapshot (the pattern program, dumped through the CLI) and on that
// snapshot altered the ways a hostile image would be: each alteration must be refused before
// the point of no return, where the blob could only kill the app.
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <sys/resource.h>

#include "harness.h"
#include "restorer/plan.h"
#include "snapshot/image.h"

namespace prewarm::test {
namespace {

class Plan : public DumpTest {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    auto [c, ready] = start_pattern();
    auto dump = prewarm({"dump", "--pid", std::to_string(c.pid()), "--images", *dir_ / "img"});
    ASSERT_EQ(dump.code, 0) << dump.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    DumpTest::SetUp();
    auto img = load_image(*dir_ / "img");
    ASSERT_TRUE(img) << img.error().describe();
    snap = img->snap;
    auto s = own_special_mappings();
    ASSERT_TRUE(s) << s.error().describe();
    own = *s;
  }

  // What `prewarm restore` would build for `snap`: the plan, or the refusal's message.
  std::string refusal(uint64_t* hole_out = nullptr, std::vector<char>* plan_out = nullptr,
                      HoleLayout* layout_out = nullptr) {
    auto frame = build_sigframe(snap);
    if (!frame) return frame.error().describe();
    std::vector<SigframeLayout> thread_frames;
    for (int i = 0; i < snap.threads_size(); ++i) {
      auto f = build_thread_sigframe(snap, i);
      if (!f) return f.error().describe();
      thread_frames.push_back(*f);
    }
    auto layout = layout_hole(snap, own, 3 * 4096, frame->bytes.size(), 8, fd_moves.size() + fd_close.size());
    if (!layout) return layout.error().describe();
    std::vector<Interval> taken;
    for (const auto& m : snap.mappings()) taken.push_back({m.start(), m.end()});
    auto spots = hole_candidates(taken, layout->hole_len);
    if (spots.empty()) return "no hole";
    PlanInputs in{.snap = snap,
                  .layout = *layout,
                  .hole = spots.front(),
                  .own = own,
                  .frame = *frame,
                  .file_fd = [](const std::string&) { return 10; },
                  .notify_fd = 11,
                  .message = ready_message::encode("READY=1\n", 1, 2, 3),
                  .fd_moves = fd_moves,
                  .fd_close = fd_close,
                  .epoll_adds = epoll_adds,
                  .thread_frames = thread_frames};
    auto plan = build_plan(in);
    if (!plan) return plan.error().describe();
    if (hole_out) *hole_out = spots.front();
    if (plan_out) *plan_out = *plan;
    if (layout_out) *layout_out = *layout;
    return "(accepted)";
  }

  pb::Mapping* find(pb::Mapping::Kind kind) {
    for (auto& m : *snap.mutable_mappings())
      if (m.kind() == kind) return &m;
    return nullptr;
  }

  static TempDir* dir_;
  std::vector<PwFdMove> fd_moves;
  std::vector<PwRange> fd_close;
  std::vector<PwEpollAdd> epoll_adds;
  pb::Snapshot snap;
  SpecialMappings own;
};
TempDir* Plan::dir_ = nullptr;

TEST_F(Plan, AcceptsARealSnapshotAndKeepsTheHoleApart) {
  uint64_t H = 0;
  std::vector<char> buf;
  HoleLayout l;
  ASSERT_EQ(refusal(&H, &buf, &l), "(accepted)");
  PwPlan p;
  std::memcpy(&p, buf.data(), sizeof p);
  EXPECT_EQ(p.magic, PW_PLAN_MAGIC);
  EXPECT_EQ(p.size, buf.size());
  EXPECT_EQ(p.self_start, H + l.blob_len);
  EXPECT_EQ(p.self_start + p.self_len, H + l.hole_len);
  // One op per mapping but the vDSO pair, each the snapshot's range, none in the hole.
  size_t specials = 0;
  for (const auto& m : snap.mappings())
    specials += m.kind() == pb::Mapping::VDSO || m.kind() == pb::Mapping::VVAR || m.kind() == pb::Mapping::VVAR_VCLOCK;
  ASSERT_EQ(p.ops_count, snap.mappings_size() - specials);
  const auto* ops = reinterpret_cast<const PwVmaOp*>(buf.data() + p.ops_off);
  for (uint32_t i = 0; i < p.ops_count; ++i)
    EXPECT_TRUE(ops[i].start + ops[i].len <= H || ops[i].start >= p.self_start + p.self_len) << i;
  // The readiness stamps point at their fixed-width slots.
  const std::string msg(buf.data() + p.notify_off, p.notify_len);
  EXPECT_EQ(msg.substr(p.notify_mapped_off, PW_STAMP_DIGITS), std::string(PW_STAMP_DIGITS, '0'));
  EXPECT_EQ(msg.substr(p.notify_mapped_off - 18, 18), "PREWARM_MAPPED_NS=");
  EXPECT_EQ(msg.substr(p.notify_resumed_off - 19, 19), "PREWARM_RESUMED_NS=");
}

// The blob's epoll_ctl needs the epoll fd and its target at their numbers (stdio is the launch's).
TEST_F(Plan, EpollRegistrationsOnlyBetweenPlacedFds) {
  fd_moves = {{200, 5, 1, 0}, {201, 7, 0, 0}};
  epoll_adds = {{5, 7, 1, 0, 42}, {5, 0, 1, 0, 43}};
  std::vector<char> buf;
  ASSERT_EQ(refusal(nullptr, &buf), "(accepted)");
  PwPlan p;
  std::memcpy(&p, buf.data(), sizeof p);
  ASSERT_EQ(p.epoll_count, 2u);
  PwEpollAdd first;
  std::memcpy(&first, buf.data() + p.epoll_off, sizeof first);
  EXPECT_EQ(first.data, 42u);
  epoll_adds = {{5, 9, 1, 0, 42}};
  EXPECT_NE(refusal().find("epoll registration of an fd it does not have"), std::string::npos);
  epoll_adds = {{6, 7, 1, 0, 42}};
  EXPECT_NE(refusal().find("epoll registration of an fd it does not have"), std::string::npos);
}

// The kernel refuses mmap below vm.mmap_min_addr: the blob would find out too late.
TEST_F(Plan, RefusesAMappingBelowMmapMinAddr) {
  auto& first = *snap.mutable_mappings(0);
  ASSERT_GT(first.start(), 0x1000u);
  ASSERT_TRUE(snap.page_runs_size() == 0 || snap.page_runs(0).addr() >= first.start());
  first.set_start(0);
  ASSERT_TRUE(check_structure(snap, snap.pages_img_size())) << "the parser alone lets it through";
  EXPECT_NE(refusal().find("outside the user address range"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesAVdsoMappingOfAnotherSize) {
  pb::Mapping* vdso = find(pb::Mapping::VDSO);
  ASSERT_NE(vdso, nullptr);
  vdso->set_end(vdso->end() - 4096);
  EXPECT_NE(refusal().find("does not match this kernel's"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesATwiceListedOrMissingVdso) {
  pb::Mapping* vdso = find(pb::Mapping::VDSO);
  ASSERT_NE(vdso, nullptr);
  const pb::Mapping copy = *vdso;
  vdso->set_kind(pb::Mapping::ANON);  // now missing
  EXPECT_NE(refusal().find("lacks one of this kernel's vDSO"), std::string::npos) << refusal();
  vdso->CopyFrom(copy);
  // A second [vdso] (in a free range just below [stack]) would be moved from the hop slot twice.
  auto& ms = *snap.mutable_mappings();
  int stack = 0;
  while (stack < ms.size() && ms[stack].name() != "[stack]") ++stack;
  ASSERT_LT(stack, ms.size());
  ASSERT_GT(ms[stack].start() - ms[stack - 1].end(), 2 * (copy.end() - copy.start()));
  pb::Mapping second = copy;
  second.set_start(ms[stack].start() - (copy.end() - copy.start()) - 4096);
  second.set_end(ms[stack].start() - 4096);
  *ms.Add() = second;
  std::sort(ms.begin(), ms.end(), [](const pb::Mapping& a, const pb::Mapping& b) { return a.start() < b.start(); });
  ASSERT_TRUE(check_structure(snap, snap.pages_img_size()));
  EXPECT_NE(refusal().find("does not match this kernel's"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesAnUnalignedFileOffset) {
  auto& m = *snap.mutable_mappings(0);
  ASSERT_EQ(m.kind(), pb::Mapping::FILE);
  m.set_file_offset(m.file_offset() + 100);
  EXPECT_NE(refusal().find("unaligned file offset"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesASharedWritableFileMappingWhoseFileMayNotBeWritten) {
  auto& m = *snap.mutable_mappings(0);
  m.set_shared(true);
  m.set_prot(PROT_READ | PROT_WRITE);
  m.set_may_write(false);
  EXPECT_NE(refusal().find("may not be written"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesWhatTheBlobsTaskSyscallsWouldRefuse) {
  const pb::Snapshot good = snap;
  snap.mutable_regs()->set_fs_base(kTaskSize);
  EXPECT_NE(refusal().find("fs or gs base"), std::string::npos) << refusal();
  snap = good;
  snap.mutable_regs()->set_gs_base(~0ull);
  EXPECT_NE(refusal().find("fs or gs base"), std::string::npos) << refusal();
  snap = good;
  ASSERT_NE(snap.task().rseq_area(), 0u) << "glibc registers rseq";
  snap.mutable_task()->set_rseq_area(snap.task().rseq_area() + 8);
  EXPECT_NE(refusal().find("rseq"), std::string::npos) << refusal();
  snap = good;
  snap.mutable_task()->set_rseq_size(16);
  EXPECT_NE(refusal().find("rseq"), std::string::npos) << refusal();
  snap = good;
  ASSERT_NE(snap.task().robust_list(), 0u);
  snap.mutable_task()->set_robust_list_len(23);
  EXPECT_NE(refusal().find("robust futex list"), std::string::npos) << refusal();
}

// The plan's size estimate counts the app's files: many of them must not overflow it.
TEST_F(Plan, ManyOpenFilesFitThePlan) {
  for (int i = 0; i < 1000; ++i) fd_moves.push_back({2000 + i, 3 + i, 0, 0}), fd_close.push_back({1003u + 2 * i, 1});
  EXPECT_EQ(refusal(), "(accepted)");
}

TEST_F(Plan, RefusesAStackPointerOutsideAWritableMapping) {
  // Into the first mapping, the executable's read-only start.
  ASSERT_FALSE(snap.mappings(0).prot() & PROT_WRITE);
  snap.mutable_regs()->set_rsp(snap.mappings(0).start() + 8192);
  EXPECT_NE(refusal().find("stack pointer"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesAStackPointerThatWrapsAround) {
  snap.mutable_regs()->set_rsp(~0ull - 16);
  EXPECT_NE(refusal().find("stack pointer"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesAnInvalidAuxiliaryVector) {
  snap.mutable_mm()->mutable_auxv()->append("x");
  EXPECT_NE(refusal().find("auxiliary vector"), std::string::npos) << refusal();
  snap.mutable_mm()->set_auxv(std::string(2048, '\0'));
  EXPECT_NE(refusal().find("auxiliary vector"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesAnInvalidSignalNumber) {
  auto* a = snap.mutable_signals()->add_actions();
  a->set_signo(65);
  EXPECT_NE(refusal().find("invalid signal number"), std::string::npos) << refusal();
  a->set_signo(0);
  EXPECT_NE(refusal().find("invalid signal number"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesInconsistentMmFields) {
  snap.mutable_mm()->set_end_code(snap.mm().start_code());
  EXPECT_NE(refusal().find("inconsistent mm fields"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesMmFieldsOutsideUserSpace) {
  snap.mutable_mm()->set_arg_end(kTaskSize + 4096);
  EXPECT_NE(refusal().find("mm field outside user space"), std::string::npos) << refusal();
}

TEST_F(Plan, ChecksTheDataSegmentAgainstTheAppsRlimit) {
  PwMmMap mm{};
  mm.start_code = 0x400000, mm.end_code = 0x401000, mm.start_data = 0x600000, mm.end_data = 0x700000;
  mm.start_brk = mm.brk = 0x800000;
  mm.start_stack = mm.arg_start = mm.arg_end = mm.env_start = mm.env_end = 0x7ff000000000;
  EXPECT_TRUE(check_mm_map(mm, 65536, RLIM_INFINITY));
  EXPECT_TRUE(check_mm_map(mm, 65536, 0x100000));
  auto r = check_mm_map(mm, 65536, 0xfffff);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().describe().find("RLIMIT_DATA"), std::string::npos);
}

TEST_F(Plan, RefusesAnOversizedReadinessMessage) {
  auto frame = build_sigframe(snap);
  ASSERT_TRUE(frame);
  EXPECT_FALSE(layout_hole(snap, own, 4096, frame->bytes.size(), 1 << 20, 0));
}

TEST(HoleCandidates, LieInGapsAlignedAndAbove4GiB) {
  const uint64_t M = 1ull << 20;
  std::vector<Interval> taken{{0x400000, 0x500000}, {(1ull << 32) + 3 * M, (1ull << 32) + 40 * M},
                              {0x7f0000000000, kTaskSize}};
  const uint64_t size = 8 * M;
  auto spots = hole_candidates(taken, size);
  ASSERT_FALSE(spots.empty());
  for (uint64_t at : spots) {
    EXPECT_EQ(at % (2 * M), 0u);
    EXPECT_GE(at, 1ull << 32);
    EXPECT_LE(at + size, kTaskSize);
    for (const auto& t : taken) EXPECT_TRUE(at + size <= t.start || at >= t.end) << std::hex << at;
  }
  // A gap too small for the hole is never offered.
  EXPECT_TRUE(hole_candidates({{1ull << 32, kTaskSize - M}}, 4 * M).empty());
}

// ---- threads ----

// A thread like the main one (its registers, on the main stack): enough for the plan's checks.
pb::ThreadState* add_thread(pb::Snapshot& snap, const char* comm) {
  auto* t = snap.add_threads();
  t->set_tid(1000 + snap.threads_size());
  t->set_comm(comm);
  *t->mutable_regs() = snap.regs();
  t->set_blocked(1ull << (SIGUSR1 - 1));
  return t;
}

TEST_F(Plan, CarriesEveryThreadWithAStackOfItsOwn) {
  for (const char* name : {"worker-0", "worker-1", "worker-2"}) add_thread(snap, name);
  std::vector<char> buf;
  HoleLayout l;
  ASSERT_EQ(refusal(nullptr, &buf, &l), "(accepted)");
  PwPlan p;
  std::memcpy(&p, buf.data(), sizeof p);
  ASSERT_EQ(p.threads_count, 3u);
  EXPECT_EQ(std::string(p.main_comm), snap.process().comm().substr(0, 15));
  std::vector<uint64_t> tops;
  for (uint32_t i = 0; i < p.threads_count; ++i) {
    PwThread t;
    std::memcpy(&t, buf.data() + p.threads_off + i * sizeof t, sizeof t);
    EXPECT_EQ(std::string(t.comm), "worker-" + std::to_string(i));
    EXPECT_EQ(t.stack_top % 16, 0u);
    // Its stack: inside the region the blob unmaps, past the plan's data, below the main stack.
    EXPECT_GT(t.stack_top, p.self_start + buf.size());
    EXPECT_LE(t.stack_top, p.self_start + l.plan_len - 64 * 1024);
    for (uint64_t other : tops) EXPECT_GE(t.stack_top > other ? t.stack_top - other : other - t.stack_top, 16u * 1024);
    tops.push_back(t.stack_top);
    auto f = build_thread_sigframe(snap, static_cast<int>(i));
    ASSERT_TRUE(f);
    ASSERT_LE(t.frame_off + t.frame_len, buf.size());
    EXPECT_EQ(std::string(buf.data() + t.frame_off, t.frame_len), f->bytes);
    EXPECT_EQ(t.final_sp, f->final_sp);
    EXPECT_EQ(t.fs_base, snap.regs().fs_base());
  }
}

TEST_F(Plan, RefusesAThreadWhoseTidCacheIsNotWritable) {
  const pb::Mapping* code = nullptr;
  for (const auto& m : snap.mappings())
    if (m.kind() == pb::Mapping::FILE && !(m.prot() & PROT_WRITE)) code = &m;
  ASSERT_NE(code, nullptr);
  auto* t = add_thread(snap, "w");
  t->set_clear_child_tid(code->start() + 64);
  t->set_tid_cached(true);
  EXPECT_NE(refusal().find("clear_child_tid is not in writable memory"), std::string::npos) << refusal();
  t->set_tid_cached(false);  // only written when it is a cache
  EXPECT_EQ(refusal(), "(accepted)");
}

TEST_F(Plan, RefusesAThreadWithoutAStack) {
  add_thread(snap, "w")->mutable_regs()->set_rsp(0x10000);
  EXPECT_NE(refusal().find("stack pointer is not inside a writable stack mapping"), std::string::npos) << refusal();
}

TEST_F(Plan, RefusesMoreThreadsThanARestoreCarries) {
  for (int i = 0; i <= kMaxRestoredThreads; ++i) add_thread(snap, "w");
  EXPECT_NE(refusal().find("more threads"), std::string::npos) << refusal();
}

}  // namespace
}  // namespace prewarm::test
