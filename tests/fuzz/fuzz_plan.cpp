// libFuzzer target: the plan builder. Any manifest the parser accepts goes through the same
// steps as `prewarm restore` up to the point of no return (sigframe, hole layout, hole
// placement, plan); a plan that build_plan accepts must be one the blob can carry out without
// touching the hole it runs from or anything outside user space.
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

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

void check_plan(const std::vector<char>& buf, const pb::Snapshot& snap, const HoleLayout& l, uint64_t H,
                uint64_t min_addr) {
  require(buf.size() >= sizeof(PwPlan), "plan has a header");
  PwPlan p;
  std::memcpy(&p, buf.data(), sizeof p);
  require(p.magic == PW_PLAN_MAGIC && p.version == PW_PLAN_VERSION && p.size == buf.size(), "header");
  require(p.self_start == H + l.blob_len && p.self_start + p.self_len == H + l.hole_len, "self range");
  require(buf.size() + 64 * 1024 <= l.plan_len, "plan and blob stack fit their slot");

  const auto* ops = array_at<PwVmaOp>(buf, p.ops_off, p.ops_count);
  uint64_t prev_end = 0;
  for (uint32_t i = 0; i < p.ops_count; ++i) {
    const PwVmaOp& op = ops[i];
    require(op.start % 4096 == 0 && op.len % 4096 == 0 && op.len > 0, "op page aligned");
    require(op.start >= min_addr && op.start < kTaskSize && op.len <= kTaskSize - op.start, "op in user space");
    require(op.start >= prev_end, "ops sorted and disjoint");
    prev_end = op.start + op.len;
    require(!overlaps(op.start, op.len, H, l.hole_len), "op clear of the hole");
    if (op.kind == PW_OP_MOVE_STAGED)
      require(op.staged >= H + l.hop_off && op.staged + op.len <= H + l.hole_len, "staged copy inside the hole");
    else if (op.kind == PW_OP_MAP_FILE)
      require(op.fd >= 0, "file op has an fd");
    else
      require(op.kind == PW_OP_MAP_ANON, "op kind");
  }
  const auto* moves = array_at<PwMove>(buf, p.moves_off, p.moves_count);
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
  (void)array_at<char>(buf, p.notify_off, p.notify_len);
  require(p.notify_mapped_off + PW_STAMP_DIGITS <= p.notify_len && p.notify_resumed_off + PW_STAMP_DIGITS <= p.notify_len,
          "stamp slots inside the message");
  require(p.mm.auxv == H + l.blob_len + p.auxv_off && p.mm.auxv_size % 16 == 0 && p.mm.auxv_size <= 1024, "auxv");
  (void)array_at<char>(buf, p.auxv_off, p.mm.auxv_size);
  bool frame_ok = false;
  for (const auto& m : snap.mappings())
    frame_ok |= (m.prot() & PROT_WRITE) && m.start() <= p.frame_dest + p.frame_len &&
                p.frame_dest + p.frame_len <= m.end() && p.frame_dest + p.frame_len >= p.frame_dest;
  require(frame_ok, "frame on a writable mapping");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const SpecialMappings own = [] {
    auto s = own_special_mappings();
    if (!s) std::abort();
    return *s;
  }();
  pb::Snapshot claimed;
  if (!claimed.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto snap = parse_manifest(std::string_view(reinterpret_cast<const char*>(data), size), claimed.pages_img_size());
  if (!snap) return 0;
  auto frame = build_sigframe(*snap);
  if (!frame) return 0;
  const std::string base = "READY=1\n";
  auto layout = layout_hole(*snap, own, 3 * 4096, frame->bytes.size(), base.size());
  if (!layout) return 0;
  std::vector<Interval> taken;
  for (const auto& m : snap->mappings()) taken.push_back({m.start(), m.end()});
  auto spots = hole_candidates(taken, layout->hole_len);
  if (spots.empty()) return 0;
  const uint64_t H = spots.front();
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
                .message = readiness_message(base, 1, 2, 3),
                .fd_moves = {{100, 7, 0, 0}},
                .fd_close = {{3, 95}, {99, 1000}},
                .mmap_min_addr = min_addr};
  if (auto plan = build_plan(in)) check_plan(*plan, *snap, *layout, H, min_addr);
  return 0;
}
