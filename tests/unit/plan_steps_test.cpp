// The plan builder on a snapshot made here, field by field, so each step (mappings, vDSO moves,
// the launcher's unmap, the ops, lazy ranges, threads, tid words, fd entries) is checked on its
// own input, without a dump. tests/integration/plan_test.cpp does the same on a real dump.
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include <gtest/gtest.h>

#include "restorer/plan.h"

namespace prewarm {
namespace {

constexpr uint64_t kPg = 4096;
constexpr uint64_t kExe = 0x400000, kHeap = 0x10000000, kStack = 0x7ffd00000000;
constexpr uint64_t kVvar = 0x7ffd10000000, kVdso = kVvar + 4 * kPg;

pb::Mapping* add(pb::Snapshot& s, uint64_t start, uint64_t len, uint32_t prot, pb::Mapping::Kind kind,
                 const std::string& name) {
  auto* m = s.add_mappings();
  m->set_start(start);
  m->set_end(start + len);
  m->set_prot(prot);
  m->set_kind(kind);
  m->set_name(name);
  return m;
}

class PlanSteps : public ::testing::Test {
 protected:
  void SetUp() override {
    add(snap, kExe, 2 * kPg, PROT_READ | PROT_EXEC, pb::Mapping::FILE, "/usr/bin/app");
    add(snap, kHeap, 16 * kPg, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "[heap]");
    add(snap, kHeap + 32 * kPg, 8 * kPg, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "");  // never touched
    add(snap, kStack, 32 * kPg, PROT_READ | PROT_WRITE, pb::Mapping::ANON, "[stack]")->set_growsdown(true);
    add(snap, kVvar, 4 * kPg, PROT_READ, pb::Mapping::VVAR, "[vvar]");
    add(snap, kVdso, 2 * kPg, PROT_READ | PROT_EXEC, pb::Mapping::VDSO, "[vdso]");
    auto* run = snap.add_page_runs();  // the heap's first two pages are stored
    run->set_addr(kHeap);
    run->set_len(2 * kPg);
    auto* mm = snap.mutable_mm();
    mm->set_start_code(kExe);
    mm->set_end_code(kExe + kPg);
    mm->set_start_data(kExe + kPg);
    mm->set_end_data(kExe + 2 * kPg);
    mm->set_start_brk(kHeap);
    mm->set_brk(kHeap + 16 * kPg);
    mm->set_start_stack(kStack + 30 * kPg);
    mm->set_arg_start(kStack + 31 * kPg);
    mm->set_arg_end(kStack + 31 * kPg + 64);
    mm->set_env_start(kStack + 31 * kPg + 64);
    mm->set_env_end(kStack + 31 * kPg + 128);
    mm->set_auxv(std::string(32, '\0'));
    // This process's vDSO pair: elsewhere, the same sizes.
    own.vvar_start = 0x7fff00000000;
    own.vvar_end = own.vvar_start + 4 * kPg;
    own.vdso_start = own.vvar_end;
    own.vdso_end = own.vdso_start + 2 * kPg;
    frame.dest = kStack + 28 * kPg;
    frame.final_sp = frame.dest;
    frame.bytes.assign(1024, '\0');
  }

  // The plan, or why it was refused; the hole goes where a restore would put it.
  Result<std::vector<char>> plan() {
    auto l = layout_hole(snap, own, 3 * kPg, frame.bytes.size(), 0, fd_moves.size());
    if (!l) return l.error();
    layout = *l;
    std::vector<Interval> taken;
    for (const auto& m : snap.mappings()) taken.push_back({m.start(), m.end()});
    taken.push_back({own.vvar_start, own.vdso_end});
    std::sort(taken.begin(), taken.end(), [](auto& a, auto& b) { return a.start < b.start; });
    auto spots = hole_candidates(taken, layout.hole_len);
    if (spots.empty()) return data_error("no hole");
    hole = spots.front();
    if (lazy_uffd >= 0) lazy_region = hole + layout.hole_len + 2 * kPg;
    PlanInputs in{.snap = snap,
                  .layout = layout,
                  .hole = hole,
                  .own = own,
                  .frame = frame,
                  .file_fd = [](const std::string& p) { return p == "/usr/bin/app" ? 40 : -1; },
                  .fd_moves = fd_moves,
                  .epoll_adds = epoll_adds,
                  .posix_locks = posix_locks,
                  .thread_frames = thread_frames,
                  .lazy_uffd = lazy_uffd,
                  .lazy_region = lazy_region,
                  .lazy_region_len = lazy_uffd >= 0 ? 4 * kPg : 0,
                  .lazy_ranges = lazy_ranges};
    return build_plan(in);
  }
  std::string refusal() {
    auto p = plan();
    return p ? std::string("(accepted)") : p.error().describe();
  }
  template <typename T>
  static std::vector<T> array(const std::vector<char>& buf, uint64_t off, uint32_t n) {
    std::vector<T> out(n);
    if (n) std::memcpy(out.data(), buf.data() + off, n * sizeof(T));
    return out;
  }
  static PwPlan header(const std::vector<char>& buf) {
    PwPlan p;
    std::memcpy(&p, buf.data(), sizeof p);
    return p;
  }

  pb::Snapshot snap;
  SpecialMappings own;
  SigframeLayout frame;
  HoleLayout layout;
  uint64_t hole = 0, lazy_region = 0;
  int lazy_uffd = -1;
  std::vector<PwFdMove> fd_moves;
  std::vector<PwEpollAdd> epoll_adds;
  std::vector<PwPosixLock> posix_locks;
  std::vector<SigframeLayout> thread_frames;
  std::vector<PwRange> lazy_ranges;
};

TEST_F(PlanSteps, OneOpPerMappingOfItsKind) {
  auto buf = plan();
  ASSERT_TRUE(buf) << buf.error().describe();
  const PwPlan p = header(*buf);
  auto ops = array<PwVmaOp>(*buf, p.ops_off, p.ops_count);
  ASSERT_EQ(ops.size(), 4u) << "every mapping but the vDSO pair";
  EXPECT_EQ(ops[0].kind, PW_OP_MAP_FILE);
  EXPECT_EQ(ops[0].fd, 40);
  EXPECT_EQ(ops[1].kind, PW_OP_MOVE_STAGED);
  EXPECT_EQ(ops[1].staged, hole + layout.slot_off[1]);
  EXPECT_EQ(ops[2].kind, PW_OP_MAP_ANON);
  EXPECT_EQ(ops[3].kind, PW_OP_MAP_ANON);
  EXPECT_NE(ops[3].flags & MAP_GROWSDOWN, 0u);
  EXPECT_EQ(p.self_start + p.self_len, hole + layout.hole_len);
}

// The launcher's unmap covers all of user space except the hole and the image's vDSO pair
// (moved there from the hop slot), and the vDSO pair passes through the hop slot.
TEST_F(PlanSteps, UnmapsAllButTheHoleAndTheVdsoTarget) {
  auto buf = plan();
  ASSERT_TRUE(buf) << buf.error().describe();
  const PwPlan p = header(*buf);
  auto unmap = array<PwRange>(*buf, p.unmap_off, p.unmap_count);
  std::vector<PwRange> all = unmap;
  all.push_back({hole, layout.hole_len});
  all.push_back({kVvar, 6 * kPg});
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.start < b.start; });
  uint64_t at = 0;
  for (const auto& r : all) {
    EXPECT_EQ(r.start, at) << "a gap or an overlap at " << std::hex << at;
    at = r.start + r.len;
  }
  EXPECT_EQ(at, kTaskSize);
  auto moves = array<PwMove>(*buf, p.moves_off, p.moves_count);
  ASSERT_EQ(moves.size(), 4u);
  const uint64_t hop = hole + layout.hop_off;
  EXPECT_EQ(moves[0].from, own.vvar_start);
  EXPECT_EQ(moves[0].to, hop);
  EXPECT_EQ(moves[2].from, hop);
  EXPECT_EQ(moves[2].to, kVvar);
  EXPECT_EQ(moves[3].to, kVdso);
}

TEST_F(PlanSteps, RefusesAVdsoPairUnlikeThisKernels) {
  snap.mutable_mappings(5)->set_end(kVdso + 3 * kPg);
  EXPECT_NE(refusal().find("does not match this kernel's"), std::string::npos) << refusal();
}

TEST_F(PlanSteps, LazyRangesOnlyOnEmptyPrivateAnonymousMappings) {
  lazy_uffd = 7;
  lazy_ranges = {{kHeap + 32 * kPg, 8 * kPg}};
  auto buf = plan();
  ASSERT_TRUE(buf) << buf.error().describe();
  const PwPlan p = header(*buf);
  EXPECT_EQ(p.lazy_ranges_count, 1u);
  EXPECT_EQ(p.lazy_region, lazy_region);
  for (const auto& r : array<PwRange>(*buf, p.unmap_off, p.unmap_count))
    EXPECT_FALSE(r.start < lazy_region + 4 * kPg && lazy_region < r.start + r.len) << "the server's region is kept";

  lazy_ranges = {{kHeap, 16 * kPg}};  // staged: its pages come from the hole, not from faults
  EXPECT_NE(refusal().find("not an empty private anonymous mapping"), std::string::npos) << refusal();
  lazy_ranges = {{kExe, 2 * kPg}};
  EXPECT_NE(refusal().find("not an empty private anonymous mapping"), std::string::npos) << refusal();
}

TEST_F(PlanSteps, FdEntriesOnlyOnPlacedFds) {
  fd_moves = {{60, 5, 0, 0}};
  posix_locks = {{5, 1, 0, 0}};
  epoll_adds = {{5, 1, 1, 0, 0}};  // stdio is the launch's own
  ASSERT_TRUE(plan()) << refusal();
  posix_locks = {{6, 1, 0, 0}};
  EXPECT_NE(refusal().find("POSIX lock on an fd it does not have"), std::string::npos) << refusal();
  posix_locks.clear();
  epoll_adds = {{5, 9, 1, 0, 0}};
  EXPECT_NE(refusal().find("epoll registration of an fd it does not have"), std::string::npos) << refusal();
}

TEST_F(PlanSteps, ThreadsGetAStackEachAndAreCheckedByName) {
  for (int i = 0; i < 2; ++i) {
    auto* t = snap.add_threads();
    t->set_tid(1001 + i);
    t->set_comm("worker");
    SigframeLayout f = frame;
    f.dest -= (i + 1) * 4 * kPg;
    f.final_sp = f.dest;
    thread_frames.push_back(f);
  }
  auto buf = plan();
  ASSERT_TRUE(buf) << buf.error().describe();
  const PwPlan p = header(*buf);
  auto threads = array<PwThread>(*buf, p.threads_off, p.threads_count);
  ASSERT_EQ(threads.size(), 2u);
  EXPECT_EQ(threads[1].stack_top - threads[0].stack_top, kBlobThreadStack);
  EXPECT_STREQ(threads[0].comm, "worker");
  EXPECT_EQ(threads[1].frame_dest, thread_frames[1].dest);

  snap.mutable_threads(1)->set_rseq_area(kHeap + 8);  // not 32-aligned
  snap.mutable_threads(1)->set_rseq_size(32);
  EXPECT_NE(refusal().find("thread 1002 has an invalid rseq registration"), std::string::npos) << refusal();
  snap.mutable_threads(1)->set_rseq_area(0);
  thread_frames[0].dest = kExe;  // not a writable mapping
  EXPECT_NE(refusal().find("thread 1001: its stack pointer"), std::string::npos) << refusal();
}

TEST_F(PlanSteps, TidWordsOnlyInWritableMemoryOfAThread) {
  auto* w = snap.add_tid_words();
  w->set_addr(kHeap + 64);
  w->set_mask(0x3fffffff);
  ASSERT_TRUE(plan()) << refusal();
  w->set_addr(kExe + 64);
  EXPECT_NE(refusal().find("tid word outside writable memory"), std::string::npos) << refusal();
  w->set_addr(kHeap + 64);
  w->set_thread(3);  // no such thread
  EXPECT_NE(refusal().find("of no thread"), std::string::npos) << refusal();
}

TEST_F(PlanSteps, SignalDispositions) {
  snap.mutable_signals()->set_ignored(1ull << (SIGPIPE - 1));
  auto* a = snap.mutable_signals()->add_actions();
  a->set_signo(SIGTERM);
  a->set_handler(kExe + 16);
  auto buf = plan();
  ASSERT_TRUE(buf) << buf.error().describe();
  const PwPlan p = header(*buf);
  EXPECT_EQ(p.sigactions[SIGPIPE - 1].handler, 1u) << "SIG_IGN";
  EXPECT_EQ(p.sigactions[SIGTERM - 1].handler, kExe + 16);
  EXPECT_EQ(p.sigactions[SIGINT - 1].handler, 0u) << "SIG_DFL";
  a->set_signo(PW_NSIG + 1);
  EXPECT_NE(refusal().find("invalid signal number"), std::string::npos) << refusal();
}

}  // namespace
}  // namespace prewarm
