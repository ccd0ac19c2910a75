// The restore plan, built and checked before the point of no return.
#include "restorer/plan.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "restorer/staging.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kMaxAuxvBytes = 1024;


static_assert(PW_STAMP_DIGITS == ready_message::kStampDigits, "the blob stamps the message's slots");

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

namespace {

// Every mapping must land where the blob can put it, and clear of the hole it runs from.
Result<void> check_mappings(const PlanInputs& in) {
  const uint64_t H = in.hole, end = in.hole + in.layout.hole_len;
  for (const auto& m : in.snap.mappings()) {
    if (m.start() < in.mmap_min_addr || m.end() > kTaskSize)
      return data_error("mapping " + m.name() + " at " + hex(m.start()) + " is outside the user address range here");
    if (m.start() < end && H < m.end()) return data_error("internal: the hole overlaps mapping " + hex(m.start()));
    if (m.kind() == pb::Mapping::FILE && m.file_offset() % kPage)
      return data_error("mapping " + m.name() + " has an unaligned file offset");
    // The file is opened writable only for "mw" mappings (open_mapped_files).
    if (m.kind() == pb::Mapping::FILE && m.shared() && (m.prot() & PROT_WRITE) && !m.may_write())
      return data_error("mapping " + m.name() + " is shared and writable but its file may not be written");
  }
  return ok();
}

// The frame rt_sigreturn resumes a thread from must land in a writable mapping.
bool frame_fits(const pb::Snapshot& snap, const SigframeLayout& f) {
  const uint64_t frame_end = f.dest + f.bytes.size();
  if (frame_end < f.dest) return false;
  bool fits = false;
  for (const auto& m : snap.mappings())
    if (m.start() <= frame_end && frame_end <= m.end())
      fits = (m.prot() & PROT_WRITE) && (f.dest >= m.start() || m.growsdown());
  return fits;
}

// A tid the blob writes into the app's memory (glibc's cache at clear_child_tid, a lock word).
bool word_writable(const pb::Snapshot& snap, uint64_t addr) {
  if (addr % 4) return false;
  for (const auto& m : snap.mappings())
    if (m.start() <= addr && addr + 4 <= m.end()) return (m.prot() & PROT_WRITE) != 0 && !is_special(m);
  return false;
}

// What the blob's arch_prctl, rseq and set_robust_list would refuse, for one thread.
Result<void> check_thread_registers(const std::string& who, const pb::Registers& regs, uint64_t rseq_area,
                                    uint32_t rseq_size, uint64_t robust_list, uint64_t robust_list_len) {
  if (regs.fs_base() >= kTaskSize || regs.gs_base() >= kTaskSize)
    return data_error(who + " has an fs or gs base outside user space");
  if (rseq_area && !(rseq_area % 32 == 0 && rseq_size >= 32 && rseq_area < kTaskSize && rseq_size <= kTaskSize - rseq_area))
    return data_error(who + " has an invalid rseq registration");
  if (robust_list && robust_list_len != 24)  // sizeof(struct robust_list_head)
    return data_error(who + " has an invalid robust futex list");
  return ok();
}

Result<void> check_main_thread(const PlanInputs& in) {
  const auto& snap = in.snap;
  if (!frame_fits(snap, in.frame)) return data_error("the app's stack pointer is not inside a writable stack mapping");
  const auto& t = snap.task();
  PW_TRY(check_thread_registers("image", snap.regs(), t.rseq_area(), t.rseq_size(), t.robust_list(), t.robust_list_len()));
  if (snap.main_thread().tid_cached() && !word_writable(snap, t.clear_child_tid()))
    return data_error("the main thread's clear_child_tid is not in writable memory");
  return ok();
}

// The vDSO pair moves through the hop slot, so its old and new places never overlap in one
// mremap; the image's pair must be the same size as this process's. Adds what the blob must
// not unmap to `keep`.
Result<std::vector<PwMove>> vdso_moves(const PlanInputs& in, std::vector<Interval>& keep) {
  const auto specials = specials_of(in.own);
  const uint64_t hop = in.hole + in.layout.hop_off;
  uint64_t own_base = ~0ull;
  for (const auto& s : specials) own_base = std::min(own_base, s.start);
  std::vector<PwMove> moves;
  moves.reserve(2 * specials.size());
  for (const auto& s : specials) moves.push_back({s.start, hop + (s.start - own_base), s.end - s.start});
  // Each of this kernel's special mappings exactly once: a second move from the hop slot, or
  // none, would leave the app without it.
  std::vector<pb::Mapping::Kind> seen;
  for (const auto& m : in.snap.mappings()) {
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
  return moves;
}

// The lazy server's region survives the launcher's unmap; it and the ranges must be where the
// blob can register them (mappings it maps empty) without touching anything else.
Result<void> check_lazy(const PlanInputs& in, std::vector<Interval>& keep) {
  if (in.lazy_uffd < 0) return ok();
  const auto& snap = in.snap;
  const uint64_t R = in.lazy_region, RL = in.lazy_region_len;
  if (R % kPage || RL % kPage || RL == 0 || R < in.hole + in.layout.hole_len || R > kTaskSize || RL > kTaskSize - R)
    return data_error("internal: lazy region outside the address space");
  for (const auto& m : snap.mappings())
    if (m.start() < R + RL && R < m.end()) return data_error("internal: the lazy region overlaps mapping " + hex(m.start()));
  for (const auto& r : in.lazy_ranges) {
    auto it = std::find_if(snap.mappings().begin(), snap.mappings().end(), [&](const pb::Mapping& m) {
      return m.start() == r.start && m.end() - m.start() == r.len;
    });
    if (it == snap.mappings().end() || it->kind() != pb::Mapping::ANON || it->shared() ||
        in.layout.runs[static_cast<size_t>(it - snap.mappings().begin())].staged())
      return data_error("internal: lazy range " + hex(r.start) + " is not an empty private anonymous mapping");
  }
  keep.push_back({R, R + RL});
  return ok();
}

// Everything of the user address space outside `keep`: the launcher's mappings.
std::vector<PwRange> unmap_outside(std::vector<Interval> keep) {
  std::sort(keep.begin(), keep.end(), [](auto& a, auto& b) { return a.start < b.start; });
  std::vector<PwRange> unmap;
  uint64_t prev = 0;
  for (const auto& k : keep) {
    if (k.start > prev) unmap.push_back({prev, k.start - prev});
    prev = std::max(prev, k.end);
  }
  if (prev < kTaskSize) unmap.push_back({prev, kTaskSize - prev});
  return unmap;
}

// One op per mapping but the vDSO pair: move its staged copy, map its file, or map it empty.
Result<std::vector<PwVmaOp>> vma_ops(const PlanInputs& in) {
  const auto& snap = in.snap;
  const auto& l = in.layout;
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
      op.staged = in.hole + l.slot_off[i];
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
  return ops;
}

// The other threads, each checked as the main thread is (its frame, TLS, registrations).
Result<std::vector<PwThread>> thread_entries(const PlanInputs& in, uint64_t plan_addr) {
  const auto& snap = in.snap;
  if (in.thread_frames.size() != static_cast<size_t>(snap.threads_size()) || snap.threads_size() > kMaxRestoredThreads)
    return data_error("internal: thread frames do not match the image");
  std::vector<PwThread> threads;
  for (int i = 0; i < snap.threads_size(); ++i) {
    const auto& th = snap.threads(i);
    const auto& f = in.thread_frames[static_cast<size_t>(i)];
    const std::string who = "thread " + std::to_string(th.tid());
    if (!frame_fits(snap, f)) return data_error(who + ": its stack pointer is not inside a writable stack mapping");
    PW_TRY(check_thread_registers(who, th.regs(), th.rseq_area(), th.rseq_size(), th.robust_list(), th.robust_list_len()));
    if (th.tid_cached() && !word_writable(snap, th.clear_child_tid()))
      return data_error(who + ": its clear_child_tid is not in writable memory");
    PwThread t{};
    t.frame_len = f.bytes.size();
    t.frame_dest = f.dest;
    t.final_sp = f.final_sp;
    t.stack_top = plan_addr + in.layout.thread_stacks_off + kBlobThreadStack * static_cast<uint64_t>(i + 1);
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
  return threads;
}

Result<std::vector<PwTidWord>> tid_words_of(const pb::Snapshot& snap) {
  std::vector<PwTidWord> words;
  words.reserve(static_cast<size_t>(snap.tid_words_size()));
  for (const auto& w : snap.tid_words()) {
    if (w.addr() % 4 != 0 || !word_writable(snap, w.addr()) || w.mask() == 0 ||
        w.thread() > static_cast<uint32_t>(snap.threads_size()))
      return data_error("image has a tid word outside writable memory or of no thread");
    words.push_back(PwTidWord{w.addr(), w.mask(), w.thread()});
  }
  return words;
}

// An epoll registration or a lock the blob cannot make would fail past the point of no return.
Result<void> check_fd_entries(const PlanInputs& in) {
  auto placed = [&](int fd) {
    return std::any_of(in.fd_moves.begin(), in.fd_moves.end(), [&](const PwFdMove& m) { return m.to == fd; });
  };
  for (const auto& e : in.epoll_adds)
    if (!placed(e.epfd) || (!placed(e.fd) && (e.fd < 0 || e.fd > 2)))
      return data_error("image has an epoll registration of an fd it does not have");
  for (const auto& lock : in.posix_locks)
    if (!placed(lock.fd)) return data_error("image has a POSIX lock on an fd it does not have");
  return ok();
}

// Dispositions the kernel reports without injecting code: ignored signals; the rest default.
Result<void> set_sigactions(const pb::Snapshot& snap, PwPlan& p) {
  p.sigaction_mask = ~0ull;
  for (int n = 0; n < PW_NSIG; ++n)
    p.sigactions[n] = PwKSigaction{(snap.signals().ignored() >> n) & 1 ? 1u : 0u, 0, 0, 0};
  for (const auto& a : snap.signals().actions()) {
    if (a.signo() < 1 || a.signo() > PW_NSIG) return data_error("image has an invalid signal number");
    p.sigactions[a.signo() - 1] = PwKSigaction{a.handler(), a.flags(), a.restorer(), a.mask()};
  }
  return ok();
}

}  // namespace

Result<std::vector<char>> build_plan(const PlanInputs& in) {
  const pb::Snapshot& snap = in.snap;
  const HoleLayout& l = in.layout;
  const uint64_t H = in.hole;
  if (l.runs.size() != static_cast<size_t>(snap.mappings_size()) || H % kPage || H < kHoleLowest || H > kTaskSize ||
      l.hole_len > kTaskSize - H)
    return data_error("internal: hole layout does not match the image");
  const uint64_t plan_addr = H + l.blob_len;

  PW_TRY(check_mappings(in));
  PW_TRY(check_main_thread(in));
  std::vector<Interval> keep{{H, H + l.hole_len}};
  PW_ASSIGN(auto moves, vdso_moves(in, keep));
  PW_TRY(check_lazy(in, keep));
  const std::vector<PwRange> unmap = unmap_outside(std::move(keep));
  PW_ASSIGN(auto ops, vma_ops(in));
  const std::string& auxv = snap.mm().auxv();
  if (auxv.empty() || auxv.size() > kMaxAuxvBytes || auxv.size() % 16)
    return data_error("image has an invalid auxiliary vector");
  const std::string message = in.notify_fd >= 0 ? in.message : std::string();
  const auto slots = ready_message::find_slots(message);
  if (in.notify_fd >= 0 && (message.size() > kMaxReadyMessageBytes + 256 || !slots))
    return data_error("invalid readiness message");
  PW_ASSIGN(auto threads, thread_entries(in, plan_addr));
  PW_ASSIGN(auto tid_words, tid_words_of(snap));
  PW_TRY(check_fd_entries(in));

  PlanBuffer pb;
  PwPlan p{};
  p.moves_off = pb.append(moves.data(), moves.size());
  p.unmap_off = pb.append(unmap.data(), unmap.size());
  p.ops_off = pb.append(ops.data(), ops.size());
  p.auxv_off = pb.append(auxv.data(), auxv.size());
  p.frame_off = pb.append(in.frame.bytes.data(), in.frame.bytes.size());
  p.fd_moves_off = pb.append(in.fd_moves.data(), in.fd_moves.size());
  p.fd_close_off = pb.append(in.fd_close.data(), in.fd_close.size());
  p.notify_off = pb.append(message.data(), message.size());
  p.epoll_off = pb.append(in.epoll_adds.data(), in.epoll_adds.size());
  p.posix_locks_off = pb.append(in.posix_locks.data(), in.posix_locks.size());
  p.lazy_ranges_off = pb.append(in.lazy_ranges.data(), in.lazy_ranges.size());
  p.threads_off = pb.append(threads.data(), threads.size());
  p.tid_words_off = pb.append(tid_words.data(), tid_words.size());
  for (size_t i = 0; i < threads.size(); ++i) {
    const uint64_t off = pb.append(in.thread_frames[i].bytes.data(), in.thread_frames[i].bytes.size());
    std::memcpy(pb.buf.data() + p.threads_off + i * sizeof(PwThread) + offsetof(PwThread, frame_off), &off, sizeof off);
  }
  if (pb.buf.size() > l.thread_stacks_off) return data_error("internal: plan larger than estimated");

  p.magic = PW_PLAN_MAGIC;
  p.version = PW_PLAN_VERSION;
  p.size = static_cast<uint32_t>(pb.buf.size());
  p.self_start = plan_addr;
  // Everything of the hole after the blob's code: plan, stack, the emptied hop slot and the
  // padding between staged mappings, so only the code page remains in the app.
  p.self_len = H + l.hole_len - plan_addr;
  p.moves_count = static_cast<uint32_t>(moves.size());
  p.unmap_count = static_cast<uint32_t>(unmap.size());
  p.ops_count = static_cast<uint32_t>(ops.size());
  p.fd_moves_count = static_cast<uint32_t>(in.fd_moves.size());
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
                 mm.arg_end(),    mm.env_start(), mm.env_end(),   plan_addr + p.auxv_off,
                 static_cast<uint32_t>(auxv.size()), static_cast<uint32_t>(in.exe_fd)};
  PW_TRY(check_mm_map(p.mm, in.mmap_min_addr, RLIM_INFINITY));
  PW_TRY(set_sigactions(snap, p));
  p.fs_base = snap.regs().fs_base();
  p.gs_base = snap.regs().gs_base();
  p.frame_len = in.frame.bytes.size();
  p.frame_dest = in.frame.dest;
  p.final_sp = in.frame.final_sp;
  p.notify_fd = in.notify_fd;
  p.notify_len = static_cast<uint32_t>(message.size());
  if (in.notify_fd >= 0) {
    p.notify_mapped_off = static_cast<uint32_t>(slots->mapped);
    p.notify_resumed_off = static_cast<uint32_t>(slots->resumed);
  }
  p.epoll_count = static_cast<uint32_t>(in.epoll_adds.size());
  p.posix_locks_count = static_cast<uint32_t>(in.posix_locks.size());
  p.threads_count = static_cast<uint32_t>(threads.size());
  p.main_tid_cached = snap.main_thread().tid_cached() ? 1 : 0;
  p.tid_words_count = static_cast<uint32_t>(tid_words.size());
  std::strncpy(p.main_comm, snap.process().comm().c_str(), sizeof p.main_comm - 1);
  p.lazy_uffd = in.lazy_uffd;
  p.lazy_ranges_count = in.lazy_uffd >= 0 ? static_cast<uint32_t>(in.lazy_ranges.size()) : 0;
  p.lazy_region = in.lazy_uffd >= 0 ? in.lazy_region : 0;
  std::memcpy(pb.buf.data(), &p, sizeof p);
  return std::move(pb.buf);
}

}  // namespace prewarm
