// The hole: where it goes and how it is laid out.
#include "restorer/hole.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "restorer/blob/plan_abi.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHugeAlign = 2ull << 20;
constexpr uint64_t kBlobStack = 64 * 1024;

uint64_t page_up(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

std::vector<MappingRuns> runs_per_mapping(const pb::Snapshot& snap) {
  std::vector<MappingRuns> out(static_cast<size_t>(snap.mappings_size()));
  int ri = 0;
  for (int mi = 0; mi < snap.mappings_size(); ++mi) {
    const auto& m = snap.mappings(mi);
    out[mi].first = ri;
    while (ri < snap.page_runs_size() && snap.page_runs(ri).addr() < m.end()) ++ri;
    out[mi].last = ri;
  }
  return out;
}

}  // namespace

bool is_special(const pb::Mapping& m) {
  return m.kind() == pb::Mapping::VDSO || m.kind() == pb::Mapping::VVAR || m.kind() == pb::Mapping::VVAR_VCLOCK;
}

std::vector<Special> specials_of(const SpecialMappings& own) {
  std::vector<Special> out;
  const Special all[] = {{pb::Mapping::VVAR, own.vvar_start, own.vvar_end},
                         {pb::Mapping::VVAR_VCLOCK, own.vvar_vclock_start, own.vvar_vclock_end},
                         {pb::Mapping::VDSO, own.vdso_start, own.vdso_end}};
  for (const auto& s : all)
    if (s.start) out.push_back(s);
  return out;
}

Result<HoleLayout> layout_hole(const pb::Snapshot& snap, const SpecialMappings& own, uint64_t blob_size,
                               uint64_t frame_size, uint64_t message_size, uint64_t fd_entries) {
  if (message_size > kMaxReadyMessageBytes) return data_error("invalid readiness message");
  if (fd_entries > (1u << 20)) return data_error("image has implausibly many open files");
  if (snap.threads_size() > kMaxRestoredThreads) return data_error("image has more threads than a restore carries");
  HoleLayout l;
  l.runs = runs_per_mapping(snap);
  uint64_t own_base = ~0ull, own_end = 0;
  for (const auto& s : specials_of(own)) own_base = std::min(own_base, s.start), own_end = std::max(own_end, s.end);
  l.vdso_span = own_end ? page_up(own_end - own_base) : 0;
  l.blob_len = page_up(blob_size);
  // The readiness message gets its phase fields (under 256 bytes) after this estimate.
  const uint64_t estimate = sizeof(PwPlan) + 64 * 8 + 16 * sizeof(PwMove) + 16 * sizeof(PwRange) +
                            static_cast<uint64_t>(snap.mappings_size()) * (sizeof(PwVmaOp) + sizeof(PwRange)) +
                            snap.mm().auxv().size() + message_size + 256 + frame_size +
                            fd_entries * std::max({sizeof(PwFdMove), sizeof(PwRange), sizeof(PwEpollAdd), sizeof(PwPosixLock)}) +
                            64 * 2;
  // Each thread: its PwThread, and its frame (as build_sigframe sizes it) with alignment.
  uint64_t threads_bytes = 64 + static_cast<uint64_t>(snap.tid_words_size()) * sizeof(PwTidWord);
  for (const auto& t : snap.threads()) {
    if (t.regs().xsave().size() > (1u << 20)) return data_error("image has an implausible XSAVE area");
    threads_bytes += sizeof(PwThread) + 512 + t.regs().xsave().size() + 64 * 2;
  }
  l.thread_stacks_off = page_up(estimate + threads_bytes);
  l.plan_len = l.thread_stacks_off + kBlobThreadStack * static_cast<uint64_t>(snap.threads_size()) + kBlobStack;
  l.hop_off = l.blob_len + l.plan_len;
  uint64_t cursor = l.hop_off + l.vdso_span;
  l.slot_off.assign(l.runs.size(), 0);
  for (size_t i = 0; i < l.runs.size(); ++i) {
    if (!l.runs[i].staged()) continue;
    const auto& m = snap.mappings(static_cast<int>(i));
    // Same offset within a 2 MiB page as the target, so huge pages survive the move.
    cursor = ((cursor + kHugeAlign - 1) & ~(kHugeAlign - 1)) + (m.start() & (kHugeAlign - 1));
    l.slot_off[i] = cursor;
    cursor += m.end() - m.start();
    if (cursor > kTaskSize) return data_error("the image's stored mappings do not fit in the address space twice");
  }
  l.hole_len = page_up(cursor);
  return l;
}

std::vector<uint64_t> hole_candidates(const std::vector<Interval>& taken, uint64_t size) {
  std::vector<Interval> gaps;
  uint64_t prev = kHoleLowest;
  for (const auto& t : taken) {
    const uint64_t start = std::min(t.start, kTaskSize);
    if (start > prev) gaps.push_back({prev, start});
    prev = std::max(prev, std::min(t.end, kTaskSize));
  }
  if (prev < kTaskSize) gaps.push_back({prev, kTaskSize});
  std::stable_sort(gaps.begin(), gaps.end(), [](const Interval& a, const Interval& b) {
    return a.end - a.start > b.end - b.start;
  });
  std::vector<uint64_t> out;
  for (const auto& g : gaps) {
    uint64_t lo = (g.start + kHugeAlign - 1) & ~(kHugeAlign - 1);
    if (lo > g.end || g.end - lo < size) continue;
    uint64_t span = g.end - size - lo;
    for (uint64_t at : {lo + span / 2, lo, lo + span / 4, lo + span / 4 * 3}) {
      at = std::max(at & ~(kHugeAlign - 1), lo);
      if (std::find(out.begin(), out.end(), at) == out.end()) out.push_back(at);
    }
  }
  return out;
}

Result<UniqueMapping> reserve_hole(const std::vector<Interval>& taken, uint64_t size) {
  // The launcher's own mappings may sit at a candidate: MAP_FIXED_NOREPLACE says so.
  for (uint64_t at : hole_candidates(taken, size)) {
    void* p = ::mmap(reinterpret_cast<void*>(at), size, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
      if (errno == EEXIST) continue;
      return errno_error("reserve " + std::to_string(size) + " bytes for the restorer");
    }
    if (reinterpret_cast<uint64_t>(p) != at) {  // old kernels ignore NOREPLACE
      ::munmap(p, size);
      continue;
    }
    return UniqueMapping(p, size);
  }
  return make_error(ENOMEM, "no address range is free in both the launcher and the snapshot");
}

}  // namespace prewarm
