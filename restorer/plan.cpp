// The restore plan, built and checked before the point of no return.
#include "restorer/plan.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHugeAlign = 2ull << 20;
constexpr uint64_t kBlobStack = 64 * 1024;
constexpr uint64_t kThreadStack = 16 * 1024;  // a thread's blob code needs a few hundred bytes
constexpr uint64_t kLowest = 1ull << 32;  // stay clear of non-PIE binaries and brk
constexpr size_t kMaxAuxvBytes = 1024;
constexpr size_t kMaxMessageBytes = 4096;

uint64_t page_up(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

bool is_special(const pb::Mapping& m) {
  return m.kind() == pb::Mapping::VDSO || m.kind() == pb::Mapping::VVAR ||
         m.kind() == pb::Mapping::VVAR_VCLOCK;
}

static_assert(PW_STAMP_DIGITS == ready_message::kStampDigits, "the blob stamps the message's slots");

struct Special {
  pb::Mapping::Kind kind;
  uint64_t start, end;
};

std::vector<Special> specials_of(const SpecialMappings& own) {
  std::vector<Special> out;
  const Special all[] = {{pb::Mapping::VVAR, own.vvar_start, own.vvar_end},
                         {pb::Mapping::VVAR_VCLOCK, own.vvar_vclock_start, own.vvar_vclock_end},
                         {pb::Mapping::VDSO, own.vdso_start, own.vdso_end}};
  for (const auto& s : all)
    if (s.start) out.push_back(s);
  return out;
}

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

// The plan block: a PwPlan header, then 64-byte aligned arrays.
struct PlanBuffer {
  std::vector<char> buf = std::vector<char>(sizeof(PwPlan), 0);
  template <typename T>
  uint64_t append(const T* items, size_t n) {
    size_t off = (buf.size() + 63) & ~size_t{63};
    buf.resize(off + n * sizeof(T));
    if (n) std::memcpy(buf.data() + off, items, n * sizeof(T));
    return off;
  }
};

}  // namespace

Result<HoleLayout> layout_hole(const pb::Snapshot& snap, const SpecialMappings& own, uint64_t blob_size,
                               uint64_t frame_size, uint64_t message_size, uint64_t fd_entries) {
  if (message_size > kMaxMessageBytes) return data_error("invalid readiness message");
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
  l.plan_len = l.thread_stacks_off + kThreadStack * static_cast<uint64_t>(snap.threads_size()) + kBlobStack;
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
  uint64_t prev = kLowest;
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

Result<void> check_mm_map(const PwMmMap& mm, uint64_t mmap_min_addr, uint64_t rlimit_data) {
  const uint64_t fields[] = {mm.start_code, mm.end_code, mm.start_data, mm.end_data,
                             mm.start_brk,  mm.brk,      mm.start_stack, mm.arg_start,
                             mm.arg_end,    mm.env_start, mm.env_end};
  for (uint64_t f : fields)
    if (f >= kTaskSize || f < mmap_min_addr) return data_error("image has an mm field outside user space");
  if (!(mm.start_code < mm.end_code && mm.start_data <= mm.end_data && mm.start_brk <= mm.brk &&
        mm.arg_start <= mm.arg_end && mm.env_start <= mm.env_end))
    return data_error("image has inconsistent mm fields");
  if (rlimit_data != RLIM_INFINITY && (mm.brk - mm.start_brk) + (mm.end_data - mm.start_data) > rlimit_data)
    return data_error("the image's data segment exceeds RLIMIT_DATA here");
  return ok();
}

Result<std::vector<char>> build_plan(const PlanInputs& in) {
  const pb::Snapshot& snap = in.snap;
  const HoleLayout& l = in.layout;
  const uint64_t H = in.hole;
  if (l.runs.size() != static_cast<size_t>(snap.mappings_size()) || H % kPage || H < kLowest || H > kTaskSize ||
      l.hole_len > kTaskSize - H)
    return data_error("internal: hole layout does not match the image");
  const uint64_t plan_addr = H + l.blob_len;
  const uint64_t hop = H + l.hop_off;
  const auto specials = specials_of(in.own);
  uint64_t own_base = ~0ull;
  for (const auto& s : specials) own_base = std::min(own_base, s.start);

  // Every mapping must land where the blob can put it, and clear of the hole it runs from.
  for (const auto& m : snap.mappings()) {
    if (m.start() < in.mmap_min_addr || m.end() > kTaskSize)
      return data_error("mapping " + m.name() + " at " + hex(m.start()) + " is outside the user address range here");
    if (m.start() < H + l.hole_len && H < m.end())
      return data_error("internal: the hole overlaps mapping " + hex(m.start()));
    if (m.kind() == pb::Mapping::FILE && m.file_offset() % kPage)
      return data_error("mapping " + m.name() + " has an unaligned file offset");
    // The file is opened writable only for "mw" mappings (open_mapped_files).
    if (m.kind() == pb::Mapping::FILE && m.shared() && (m.prot() & PROT_WRITE) && !m.may_write())
      return data_error("mapping " + m.name() + " is shared and writable but its file may not be written");
  }

  // The frame rt_sigreturn resumes a thread from must land in a writable mapping.
  auto frame_fits = [&](const SigframeLayout& f) {
    const uint64_t frame_end = f.dest + f.bytes.size();
    if (frame_end < f.dest) return false;
    bool fits = false;
    for (const auto& m : snap.mappings())
      if (m.start() <= frame_end && frame_end <= m.end())
        fits = (m.prot() & PROT_WRITE) && (f.dest >= m.start() || m.growsdown());
    return fits;
  };
  if (!frame_fits(in.frame)) return data_error("the app's stack pointer is not inside a writable stack mapping");
  // A tid the blob writes into the app's memory (glibc's cache at clear_child_tid).
  auto word_writable = [&](uint64_t addr) {
    if (addr % 4) return false;
    for (const auto& m : snap.mappings())
      if (m.start() <= addr && addr + 4 <= m.end()) return (m.prot() & PROT_WRITE) != 0 && !is_special(m);
    return false;
  };
  auto rseq_ok = [](uint64_t area, uint32_t size) {
    return !area || (area % 32 == 0 && size >= 32 && area < kTaskSize && size <= kTaskSize - area);
  };

  // What the blob's arch_prctl, rseq and set_robust_list would refuse.
  if (snap.regs().fs_base() >= kTaskSize || snap.regs().gs_base() >= kTaskSize)
    return data_error("image has an fs or gs base outside user space");
  const auto& t = snap.task();
  if (!rseq_ok(t.rseq_area(), t.rseq_size())) return data_error("image has an invalid rseq registration");
  if (t.robust_list() && t.robust_list_len() != 24)  // sizeof(struct robust_list_head)
    return data_error("image has an invalid robust futex list");

  // The vDSO pair moves through the hop slot, so its old and new places never overlap in one
  // mremap; the image's pair must be the same size as this process's.
  std::vector<PwMove> moves;
  moves.reserve(specials.size());
  std::vector<Interval> keep{{H, H + l.hole_len}};
  for (const auto& s : specials) moves.push_back({s.start, hop + (s.start - own_base), s.end - s.start});
  // Each of this kernel's special mappings exactly once: a second move from the hop slot, or
  // none, would leave the app without it.
  std::vector<pb::Mapping::Kind> seen;
  for (const auto& m : snap.mappings()) {
    if (!is_special(m)) continue;
    auto s = std::find_if(specials.begin(), specials.end(), [&](const Special& x) { return x.kind == m.kind(); });
    if (s == specials.end() || s->end - s->start != m.end() - m.start() ||
        std::find(seen.begin(), seen.end(), m.kind()) != seen.end())
      return data_error("the image's vDSO mapping " + m.name() + " does not match this kernel's");
    seen.push_back(m.kind());
    moves.push_back({hop + (s->start - own_base), m.start(), s->end - s->start});
    keep.push_back({m.start(), m.end()});
  }
  if (seen.size() != specials.size()) return data_error("the image lacks one of this kernel's vDSO mappings");
  // ---- lazy ---- the server's region survives the launcher's unmap; it and the ranges must be
  // where the blob can register them (mappings it maps empty) without touching anything else.
  if (in.lazy_uffd >= 0) {
    const uint64_t R = in.lazy_region, RL = in.lazy_region_len;
    if (R % kPage || RL % kPage || RL == 0 || R < H + l.hole_len || R > kTaskSize || RL > kTaskSize - R)
      return data_error("internal: lazy region outside the address space");
    for (const auto& m : snap.mappings())
      if (m.start() < R + RL && R < m.end()) return data_error("internal: the lazy region overlaps mapping " + hex(m.start()));
    for (const auto& r : in.lazy_ranges) {
      auto it = std::find_if(snap.mappings().begin(), snap.mappings().end(), [&](const pb::Mapping& m) {
        return m.start() == r.start && m.end() - m.start() == r.len;
      });
      if (it == snap.mappings().end() || it->kind() != pb::Mapping::ANON || it->shared() ||
          l.runs[static_cast<size_t>(it - snap.mappings().begin())].staged())
        return data_error("internal: lazy range " + hex(r.start) + " is not an empty private anonymous mapping");
    }
    keep.push_back({R, R + RL});
  }
  std::sort(keep.begin(), keep.end(), [](auto& a, auto& b) { return a.start < b.start; });
  std::vector<PwRange> unmap;
  uint64_t prev = 0;
  for (const auto& k : keep) {
    if (k.start > prev) unmap.push_back({prev, k.start - prev});
    prev = std::max(prev, k.end);
  }
  if (prev < kTaskSize) unmap.push_back({prev, kTaskSize - prev});

  std::vector<PwVmaOp> ops;
  for (size_t i = 0; i < l.runs.size(); ++i) {
    const auto& m = snap.mappings(static_cast<int>(i));
    if (is_special(m)) continue;
    PwVmaOp op{};
    op.start = m.start();
    op.len = m.end() - m.start();
    op.prot = m.prot();
    op.flags = static_cast<uint32_t>(mmap_flags_for(m));
    op.advice = advice_for(m, snap.task().attrs().thp_disable());  // no THP the app turned off
    op.fd = -1;
    if (l.runs[i].staged()) {
      op.kind = PW_OP_MOVE_STAGED;
      op.staged = H + l.slot_off[i];
    } else if (m.kind() == pb::Mapping::FILE) {
      op.kind = PW_OP_MAP_FILE;
      op.fd = in.file_fd(m.name());
      if (op.fd < 0) return data_error("internal: mapped file " + m.name() + " is not open");
      op.file_offset = m.file_offset();
    } else {
      op.kind = PW_OP_MAP_ANON;
    }
    ops.push_back(op);
  }

  const std::string& auxv = snap.mm().auxv();
  if (auxv.empty() || auxv.size() > kMaxAuxvBytes || auxv.size() % 16)
    return data_error("image has an invalid auxiliary vector");
  const std::string message = in.notify_fd >= 0 ? in.message : std::string();
  const auto slots = ready_message::find_slots(message);
  if (in.notify_fd >= 0 && (message.size() > kMaxMessageBytes + 256 || !slots))
    return data_error("invalid readiness message");

  // The other threads: each checked as the main thread is (its frame, TLS, registrations).
  if (in.thread_frames.size() != static_cast<size_t>(snap.threads_size()) || snap.threads_size() > kMaxRestoredThreads)
    return data_error("internal: thread frames do not match the image");
  std::vector<PwThread> threads;
  for (int i = 0; i < snap.threads_size(); ++i) {
    const auto& th = snap.threads(i);
    const auto& f = in.thread_frames[static_cast<size_t>(i)];
    const std::string who = "thread " + std::to_string(th.tid());
    if (!frame_fits(f)) return data_error(who + ": its stack pointer is not inside a writable stack mapping");
    if (th.regs().fs_base() >= kTaskSize || th.regs().gs_base() >= kTaskSize)
      return data_error(who + ": fs or gs base outside user space");
    if (!rseq_ok(th.rseq_area(), th.rseq_size())) return data_error(who + ": invalid rseq registration");
    if (th.robust_list() && th.robust_list_len() != 24) return data_error(who + ": invalid robust futex list");
    if (th.tid_cached() && !word_writable(th.clear_child_tid()))
      return data_error(who + ": its clear_child_tid is not in writable memory");
    PwThread t{};
    t.frame_len = f.bytes.size();
    t.frame_dest = f.dest;
    t.final_sp = f.final_sp;
    t.stack_top = plan_addr + l.thread_stacks_off + kThreadStack * static_cast<uint64_t>(i + 1);
    t.fs_base = th.regs().fs_base();
    t.gs_base = th.regs().gs_base();
    t.rseq_area = th.rseq_area();
    t.rseq_size = th.rseq_area() ? th.rseq_size() : 0;
    t.rseq_signature = th.rseq_signature();
    t.robust_list = th.robust_list();
    t.robust_list_len = th.robust_list_len();
    t.clear_child_tid = th.clear_child_tid();
    t.tid_cached = th.tid_cached() ? 1 : 0;
    std::strncpy(t.comm, th.comm().c_str(), sizeof t.comm - 1);
    threads.push_back(t);
  }
  if (snap.main_thread().tid_cached() && !word_writable(snap.task().clear_child_tid()))
    return data_error("the main thread's clear_child_tid is not in writable memory");
  std::vector<PwTidWord> tid_words;
  tid_words.reserve(static_cast<size_t>(snap.tid_words_size()));
  for (const auto& w : snap.tid_words()) {
    if (w.addr() % 4 != 0 || !word_writable(w.addr()) || w.mask() == 0 ||
        w.thread() > static_cast<uint32_t>(snap.threads_size()))
      return data_error("image has a tid word outside writable memory or of no thread");
    tid_words.push_back(PwTidWord{w.addr(), w.mask(), w.thread()});
  }

  PlanBuffer pb;
  const uint64_t moves_off = pb.append(moves.data(), moves.size());
  const uint64_t unmap_off = pb.append(unmap.data(), unmap.size());
  const uint64_t ops_off = pb.append(ops.data(), ops.size());
  const uint64_t auxv_off = pb.append(auxv.data(), auxv.size());
  const uint64_t frame_off = pb.append(in.frame.bytes.data(), in.frame.bytes.size());
  const uint64_t fd_moves_off = pb.append(in.fd_moves.data(), in.fd_moves.size());
  const uint64_t fd_close_off = pb.append(in.fd_close.data(), in.fd_close.size());
  const uint64_t notify_off = pb.append(message.data(), message.size());
  // An epoll registration the blob cannot make would fail past the point of no return.
  for (const auto& e : in.epoll_adds) {
    auto placed = [&](int fd) {
      return std::any_of(in.fd_moves.begin(), in.fd_moves.end(), [&](const PwFdMove& m) { return m.to == fd; });
    };
    if (!placed(e.epfd) || (!placed(e.fd) && (e.fd < 0 || e.fd > 2)))
      return data_error("image has an epoll registration of an fd it does not have");
  }
  for (const auto& l : in.posix_locks)
    if (std::none_of(in.fd_moves.begin(), in.fd_moves.end(), [&](const PwFdMove& m) { return m.to == l.fd; }))
      return data_error("image has a POSIX lock on an fd it does not have");
  const uint64_t epoll_off = pb.append(in.epoll_adds.data(), in.epoll_adds.size());
  const uint64_t posix_locks_off = pb.append(in.posix_locks.data(), in.posix_locks.size());
  const uint64_t lazy_ranges_off = pb.append(in.lazy_ranges.data(), in.lazy_ranges.size());
  const uint64_t threads_off = pb.append(threads.data(), threads.size());
  const uint64_t tid_words_off = pb.append(tid_words.data(), tid_words.size());
  for (size_t i = 0; i < threads.size(); ++i) {
    const uint64_t off = pb.append(in.thread_frames[i].bytes.data(), in.thread_frames[i].bytes.size());
    std::memcpy(pb.buf.data() + threads_off + i * sizeof(PwThread) + offsetof(PwThread, frame_off), &off, sizeof off);
  }
  if (pb.buf.size() > l.thread_stacks_off) return data_error("internal: plan larger than estimated");

  PwPlan p{};
  p.magic = PW_PLAN_MAGIC;
  p.version = PW_PLAN_VERSION;
  p.size = static_cast<uint32_t>(pb.buf.size());
  p.self_start = plan_addr;
  // Everything of the hole after the blob's code: plan, stack, the emptied hop slot and the
  // padding between staged mappings, so only the code page remains in the app.
  p.self_len = H + l.hole_len - plan_addr;
  p.moves_off = moves_off;
  p.moves_count = static_cast<uint32_t>(moves.size());
  p.unmap_off = unmap_off;
  p.unmap_count = static_cast<uint32_t>(unmap.size());
  p.ops_off = ops_off;
  p.ops_count = static_cast<uint32_t>(ops.size());
  p.fd_moves_off = fd_moves_off;
  p.fd_moves_count = static_cast<uint32_t>(in.fd_moves.size());
  p.fd_close_off = fd_close_off;
  p.fd_close_count = static_cast<uint32_t>(in.fd_close.size());
  const auto& task = snap.task();
  p.rseq_area = task.rseq_area();
  p.rseq_size = task.rseq_area() ? task.rseq_size() : 0;
  p.rseq_signature = task.rseq_signature();
  p.robust_list = task.robust_list();
  p.robust_list_len = task.robust_list_len();
  p.clear_child_tid = task.clear_child_tid();
  const auto& mm = snap.mm();
  p.mm = PwMmMap{mm.start_code(), mm.end_code(), mm.start_data(), mm.end_data(),
                 mm.start_brk(),  mm.brk(),      mm.start_stack(), mm.arg_start(),
                 mm.arg_end(),    mm.env_start(), mm.env_end(),   plan_addr + auxv_off,
                 static_cast<uint32_t>(auxv.size()), static_cast<uint32_t>(in.exe_fd)};
  PW_TRY(check_mm_map(p.mm, in.mmap_min_addr, RLIM_INFINITY));
  p.auxv_off = auxv_off;
  // Dispositions the kernel reports without injecting code: ignored signals; the rest default.
  p.sigaction_mask = ~0ull;
  for (int n = 0; n < PW_NSIG; ++n)
    p.sigactions[n] = PwKSigaction{(snap.signals().ignored() >> n) & 1 ? 1u : 0u, 0, 0, 0};
  for (const auto& a : snap.signals().actions()) {
    if (a.signo() < 1 || a.signo() > PW_NSIG) return data_error("image has an invalid signal number");
    p.sigactions[a.signo() - 1] = PwKSigaction{a.handler(), a.flags(), a.restorer(), a.mask()};
  }
  p.fs_base = snap.regs().fs_base();
  p.gs_base = snap.regs().gs_base();
  p.frame_off = frame_off;
  p.frame_len = in.frame.bytes.size();
  p.frame_dest = in.frame.dest;
  p.final_sp = in.frame.final_sp;
  p.notify_fd = in.notify_fd;
  p.notify_len = static_cast<uint32_t>(message.size());
  if (in.notify_fd >= 0) {
    p.notify_mapped_off = static_cast<uint32_t>(slots->mapped);
    p.notify_resumed_off = static_cast<uint32_t>(slots->resumed);
  }
  p.notify_off = notify_off;
  p.epoll_off = epoll_off;
  p.epoll_count = static_cast<uint32_t>(in.epoll_adds.size());
  p.posix_locks_off = posix_locks_off;
  p.posix_locks_count = static_cast<uint32_t>(in.posix_locks.size());
  p.threads_off = threads_off;
  p.threads_count = static_cast<uint32_t>(threads.size());
  p.main_tid_cached = snap.main_thread().tid_cached() ? 1 : 0;
  p.tid_words_off = tid_words_off;
  p.tid_words_count = static_cast<uint32_t>(tid_words.size());
  std::strncpy(p.main_comm, snap.process().comm().c_str(), sizeof p.main_comm - 1);
  p.lazy_uffd = in.lazy_uffd;
  p.lazy_ranges_off = lazy_ranges_off;
  p.lazy_ranges_count = in.lazy_uffd >= 0 ? static_cast<uint32_t>(in.lazy_ranges.size()) : 0;
  p.lazy_region = in.lazy_uffd >= 0 ? in.lazy_region : 0;
  std::memcpy(pb.buf.data(), &p, sizeof p);
  return std::move(pb.buf);
}

}  // namespace prewarm
