// libFuzzer target: the plan builder. Any manifest the parser accepts goes through the same
// steps as `prewarm restore` up to the point of no return (sigframe, hole layout, hole
// placement, plan); a plan that build_plan accepts must be one the blob can carry out without
// touching the hole it runs from or anything outside user space.
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <google/protobuf/stubs/logging.h>

#include "restorer/plan.h"
#include "snapshot/image.h"

namespace {

using namespace prewarm;

void require(bool cond, const char* what) {
  if (cond) return;
  std::fprintf(stderr, "accepted plan breaks an invariant: %s\n", what);
  std::abort();
}

bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

template <typename T>
const T* array_at(const std::vector<char>& buf, uint64_t off, uint64_t count) {
  require(off >= sizeof(PwPlan) && off <= buf.size() && count <= (buf.size() - off) / sizeof(T),
          "array inside the plan block");
  return reinterpret_cast<const T*>(buf.data() + off);
}

// The blob's moves, replayed on a model of the address space: each source must be mapped, as
// one piece, when its move runs, and no destination may cover something still in use.
void check_moves(const PwMove* moves, uint32_t count, const SpecialMappings& own) {
  std::vector<std::pair<uint64_t, uint64_t>> mapped;  // start, len
  for (auto [a, b] : {std::pair{own.vvar_start, own.vvar_end}, std::pair{own.vvar_vclock_start, own.vvar_vclock_end},
                      std::pair{own.vdso_start, own.vdso_end}})
    if (a) mapped.push_back({a, b - a});
  for (uint32_t i = 0; i < count; ++i) {
    auto src = std::find(mapped.begin(), mapped.end(), std::pair{moves[i].from, moves[i].len});
    require(src != mapped.end(), "a move's source is mapped when it runs");
    mapped.erase(src);
    for (const auto& [a, len] : mapped) require(!overlaps(a, len, moves[i].to, moves[i].len), "a move lands on nothing in use");
    mapped.push_back({moves[i].to, moves[i].len});
  }
}

void check_plan(const std::vector<char>& buf, const pb::Snapshot& snap, const HoleLayout& l, uint64_t H,
                uint64_t min_addr, const SpecialMappings& own) {
  require(buf.size() >= sizeof(PwPlan), "plan has a header");
  PwPlan p;
  std::memcpy(&p, buf.data(), sizeof p);
  require(p.magic == PW_PLAN_MAGIC && p.version == PW_PLAN_VERSION && p.size == buf.size(), "header");
  require(p.self_start == H + l.blob_len && p.self_start + p.self_len == H + l.hole_len, "self range");
  require(buf.size() + 64 * 1024 <= l.plan_len, "plan and blob stack fit their slot");

  const auto* ops = array_at<PwVmaOp>(buf, p.ops_off, p.ops_count);
  uint64_t prev_end = 0;
  std::vector<std::pair<uint64_t, uint64_t>> staged;
  for (uint32_t i = 0; i < p.ops_count; ++i) {
    const PwVmaOp& op = ops[i];
    require(op.start % 4096 == 0 && op.len % 4096 == 0 && op.len > 0, "op page aligned");
    require(op.start >= min_addr && op.start < kTaskSize && op.len <= kTaskSize - op.start, "op in user space");
    require(op.start >= prev_end, "ops sorted and disjoint");
    prev_end = op.start + op.len;
    require(!overlaps(op.start, op.len, H, l.hole_len), "op clear of the hole");
    if (op.kind == PW_OP_MOVE_STAGED) {
      require(op.staged >= H + l.hop_off + l.vdso_span && op.staged + op.len <= H + l.hole_len,
              "staged copy inside the hole, after the hop slot");
      staged.push_back({op.staged, op.len});
    } else if (op.kind == PW_OP_MAP_FILE) {
      require(op.fd >= 0 && op.file_offset % 4096 == 0, "file op has an fd and an aligned offset");
    }
    else
      require(op.kind == PW_OP_MAP_ANON, "op kind");
  }
  std::sort(staged.begin(), staged.end());
  for (size_t i = 1; i < staged.size(); ++i)
    require(staged[i - 1].first + staged[i - 1].second <= staged[i].first, "staged copies disjoint");
  const auto* moves = array_at<PwMove>(buf, p.moves_off, p.moves_count);
  check_moves(moves, p.moves_count, own);
  for (uint32_t i = 0; i < p.moves_count; ++i)
    require(moves[i].to < kTaskSize && moves[i].len <= kTaskSize - moves[i].to, "move in user space");
  const auto* unmap = array_at<PwRange>(buf, p.unmap_off, p.unmap_count);
  for (uint32_t i = 0; i < p.unmap_count; ++i) {
    require(unmap[i].len > 0 && unmap[i].start + unmap[i].len <= kTaskSize, "unmap in user space");
    require(!overlaps(unmap[i].start, unmap[i].len, H, l.hole_len), "unmap spares the hole");
    for (uint32_t k = 0; k < p.moves_count; ++k)
      if (!overlaps(moves[k].to, moves[k].len, H, l.hole_len))
        require(!overlaps(unmap[i].start, unmap[i].len, moves[k].to, moves[k].len), "unmap spares the vDSO");
  }
  (void)array_at<char>(buf, p.frame_off, p.frame_len);
  (void)array_at<PwFdMove>(buf, p.fd_moves_off, p.fd_moves_count);
  (void)array_at<PwRange>(buf, p.fd_close_off, p.fd_close_count);
  (void)array_at<PwEpollAdd>(buf, p.epoll_off, p.epoll_count);
  (void)array_at<char>(buf, p.notify_off, p.notify_len);
  require(p.notify_mapped_off + PW_STAMP_DIGITS <= p.notify_len && p.notify_resumed_off + PW_STAMP_DIGITS <= p.notify_len,
          "stamp slots inside the message");
  require(p.mm.auxv == H + l.blob_len + p.auxv_off && p.mm.auxv_size % 16 == 0 && p.mm.auxv_size <= 1024, "auxv");
  (void)array_at<char>(buf, p.auxv_off, p.mm.auxv_size);
  bool frame_ok = false;
  for (const auto& m : snap.mappings())
    frame_ok |= (m.prot() & PROT_WRITE) && m.start() <= p.frame_dest + p.frame_len &&
                p.frame_dest + p.frame_len <= m.end() && p.frame_dest + p.frame_len >= p.frame_dest &&
                (p.frame_dest >= m.start() || m.growsdown());
  require(frame_ok, "frame on a writable mapping");
}


// This process's vDSO pair as the launcher's would be: the image's sizes (so seeds from any
// kernel reach the plan) at a fixed place of its own.
SpecialMappings own_for(const pb::Snapshot& snap) {
  SpecialMappings own;
  uint64_t at = 0x7ff000000000ull;
  for (const auto& m : snap.mappings()) {
    const uint64_t len = m.end() - m.start();
    if (m.kind() == pb::Mapping::VVAR && !own.vvar_start) own.vvar_start = at, own.vvar_end = at + len, at += len;
    if (m.kind() == pb::Mapping::VVAR_VCLOCK && !own.vvar_vclock_start)
      own.vvar_vclock_start = at, own.vvar_vclock_end = at + len, at += len;
    if (m.kind() == pb::Mapping::VDSO && !own.vdso_start) own.vdso_start = at, own.vdso_end = at + len, at += len;
  }
  return own;
}

}  // namespace

// protobuf logs every malformed string field to stderr: noise that slows the run and buries a
// real report.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pb::Snapshot claimed;
  if (!claimed.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto snap = parse_manifest(std::string_view(reinterpret_cast<const char*>(data), size), claimed.pages_img_size());
  if (!snap) return 0;
  auto frame = build_sigframe(*snap);
  if (!frame) return 0;
  std::vector<SigframeLayout> thread_frames;  // as the launcher builds them, so threads are fuzzed too
  for (int i = 0; i < snap->threads_size() && i <= kMaxRestoredThreads; ++i) {
    auto f = build_thread_sigframe(*snap, i);
    if (!f) return 0;
    thread_frames.push_back(std::move(*f));
  }
  const SpecialMappings own = own_for(*snap);
  const std::string base = "READY=1\n";
  const std::vector<PwFdMove> fd_moves{{100, 7, 0, 0}};
  const std::vector<PwRange> fd_close{{3, 95}, {99, 1000}};
  auto layout = layout_hole(*snap, own, 3 * 4096, frame->bytes.size(), base.size(), fd_moves.size() + fd_close.size());
  if (!layout) return 0;
  std::vector<Interval> taken;
  for (const auto& m : snap->mappings()) taken.push_back({m.start(), m.end()});
  // As reserve_hole does: the first candidate free in this process (here: clear of `own`).
  uint64_t own_lo = ~0ull, own_hi = 0;
  for (uint64_t a : {own.vvar_start, own.vvar_vclock_start, own.vdso_start}) if (a) own_lo = std::min(own_lo, a);
  own_hi = std::max({own.vvar_end, own.vvar_vclock_end, own.vdso_end});
  uint64_t H = 0;
  for (uint64_t at : hole_candidates(taken, layout->hole_len))
    if (!own_hi || !overlaps(at, layout->hole_len, own_lo, own_hi - own_lo)) {
      H = at;
      break;
    }
  if (!H) return 0;
  require(H % 4096 == 0, "hole page aligned");
  for (const auto& t : taken) require(!overlaps(t.start, t.end - t.start, H, layout->hole_len), "hole in a gap");
  const uint64_t min_addr = 65536;
  PlanInputs in{.snap = *snap,
                .layout = *layout,
                .hole = H,
                .own = own,
                .frame = *frame,
                .file_fd = [](const std::string& path) { return 100 + static_cast<int>(path.size() % 50); },
                .exe_fd = 99,
                .notify_fd = 98,
                .message = ready_message::encode(base, 1, 2, 3),
                .fd_moves = fd_moves,
                .fd_close = fd_close,
                .mmap_min_addr = min_addr,
                .thread_frames = thread_frames};
  if (auto plan = build_plan(in)) {
    check_plan(*plan, *snap, *layout, H, min_addr, own);
    if (std::getenv("FUZZ_REPORT_ACCEPTED")) std::fputs("accepted\n", stderr);  // see run_fuzzer.sh
  }
  return 0;
}
