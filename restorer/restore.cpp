// The launcher: everything that can fail happens here, before the point of no return.
#include "restorer/restore.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <thread>
#include <vector>

#include "restorer/blob/plan_abi.h"
#include "restorer/app_files.h"
#include "restorer/compat_check.h"
#include "restorer/handoff.h"
#include "restorer/sigframe.h"
#include "restorer/staging.h"
#include "restorer/task_state.h"
#include "snapshot/clock.h"
#include "snapshot/image.h"
#include "snapshot/proc_state.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kHugeAlign = 2ull << 20;
constexpr uint64_t kBlobStack = 64 * 1024;
constexpr uint64_t kTaskSize = 0x7ffffffff000ull;
constexpr size_t kMaxAuxvBytes = 1024;
constexpr int kCapSysAdmin = 21, kCapCheckpointRestore = 40;

uint64_t page_up(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

bool has_capability(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return data[cap / 32].effective & (1u << (cap % 32));
}

bool is_special(const pb::Mapping& m) {
  return m.kind() == pb::Mapping::VDSO || m.kind() == pb::Mapping::VVAR ||
         m.kind() == pb::Mapping::VVAR_VCLOCK;
}

// The mapping's stored runs are page_runs[first, last).
struct MappingRuns {
  int first = 0, last = 0;
  bool staged() const { return last > first; }
};

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

// The kernel's own checks of PR_SET_MM_MAP (kernel/sys.c), repeated here so the blob's prctl
// cannot fail after the point of no return.
Result<void> check_mm_map(const PwMmMap& mm) {
  const uint64_t fields[] = {mm.start_code, mm.end_code, mm.start_data, mm.end_data,
                             mm.start_brk,  mm.brk,      mm.start_stack, mm.arg_start,
                             mm.arg_end,    mm.env_start, mm.env_end};
  uint64_t min_addr = 65536;
  if (auto t = read_file("/proc/sys/vm/mmap_min_addr")) min_addr = std::stoull(*t);
  for (uint64_t f : fields)
    if (f >= kTaskSize || f < min_addr) return data_error("image has an mm field outside user space");
  if (!(mm.start_code < mm.end_code && mm.start_data <= mm.end_data && mm.start_brk <= mm.brk &&
        mm.arg_start <= mm.arg_end && mm.env_start <= mm.env_end))
    return data_error("image has inconsistent mm fields");
  rlimit data{};
  ::getrlimit(RLIMIT_DATA, &data);
  if (data.rlim_cur != RLIM_INFINITY &&
      (mm.brk - mm.start_brk) + (mm.end_data - mm.start_data) > data.rlim_cur)
    return data_error("the image's data segment exceeds RLIMIT_DATA here");
  return ok();
}

// Builds the plan in `buf`, whose final address is `plan_addr`.
struct PlanBuilder {
  std::vector<char> buf;
  explicit PlanBuilder(size_t header) : buf(header, 0) {}
  template <typename T>
  uint64_t append(const T* items, size_t n) {
    size_t off = (buf.size() + 63) & ~size_t{63};
    buf.resize(off + n * sizeof(T));
    if (n) std::memcpy(buf.data() + off, items, n * sizeof(T));
    return off;
  }
  PwPlan& plan() { return *reinterpret_cast<PwPlan*>(buf.data()); }
};

// Launcher phase timings, printed to stderr when PREWARM_TRACE is set (for benchmarks).
class PhaseClock {
 public:
  PhaseClock() : enabled_(std::getenv("PREWARM_TRACE") != nullptr), last_(mono_ns()) {}
  void mark(const char* phase) {
    if (!enabled_) return;
    int64_t t = mono_ns();
    std::fprintf(stderr, "prewarm restore: %-14s %7.2f ms\n", phase, static_cast<double>(t - last_) / 1e6);
    last_ = t;
  }

 private:
  bool enabled_;
  int64_t last_;
};

constexpr const char* kMappedField = "PREWARM_MAPPED_NS=";
constexpr const char* kResumedField = "PREWARM_RESUMED_NS=";

// Fields appended to the readiness message: CLOCK_MONOTONIC ns at the end of validation and of
// reading, and two fixed-width slots the blob overwrites with its own clock readings.
std::string phase_fields(int64_t validated_ns, int64_t read_ns, uint64_t bytes) {
  const std::string slot(PW_STAMP_DIGITS, '0');
  return "PREWARM_VALIDATED_NS=" + std::to_string(validated_ns) + "\nPREWARM_READ_NS=" + std::to_string(read_ns) +
         "\nPREWARM_BYTES_READ=" + std::to_string(bytes) + "\n" + kMappedField + slot + "\n" + kResumedField + slot + "\n";
}

// The close ranges with one fd number taken out.
std::vector<PwRange> punch_fd(const std::vector<PwRange>& ranges, int fd) {
  const uint64_t f = static_cast<uint64_t>(fd);
  std::vector<PwRange> out;
  for (const auto& r : ranges) {
    if (f < r.start || f >= r.start + r.len) {
      out.push_back(r);
      continue;
    }
    if (f > r.start) out.push_back({r.start, f - r.start});
    if (f + 1 < r.start + r.len) out.push_back({f + 1, r.start + r.len - f - 1});
  }
  return out;
}

}  // namespace

Error restore_in_place(const std::string& dir, const RestoreOptions& options) {
  PhaseClock clock;
  // 1. Parse the image and check its structure (no page contents yet).
  auto img = load_image(dir);
  if (!img) return img.error();
  const pb::Snapshot& snap = img->snap;
  if (count_threads(::getpid()) != 1) return data_error("the launcher must be single-threaded");

  clock.mark("load image");
  // 2. Same kernel, CPU state layout and vDSO as at the snapshot.
  auto own = check_machine_compat(snap);
  if (!own) return own.error();

  // 3. Every mapped file opened once and checked unchanged.
  auto files = open_mapped_files(snap);
  if (!files) return files.error();

  auto app_files = open_app_files(snap);
  if (!app_files) return app_files.error();

  // The readiness socket sits above every fd the app uses, and the blob must not close it early.
  UniqueFd notify;
  if (options.notify_fd >= 0) {
    if (options.notify_message.empty() || options.notify_message.size() > 4096)
      return data_error("invalid readiness message");
    int base = 3;
    for (const auto& mv : app_files->moves) base = std::max({base, mv.from + 1, mv.to + 1});
    int high = ::fcntl(options.notify_fd, F_DUPFD_CLOEXEC, base);
    if (high < 0) return errno_error("duplicate the readiness socket");
    notify = UniqueFd(high);
    app_files->close = punch_fd(app_files->close, high);
  }

  clock.mark("check/open");
  // 4. The frame rt_sigreturn will resume the app from; it must land in a writable mapping.
  auto frame = build_sigframe(snap);
  if (!frame) return frame.error();
  bool frame_ok = false;
  for (const auto& m : snap.mappings())
    if (m.start() <= frame->dest + frame->bytes.size() && frame->dest + frame->bytes.size() <= m.end())
      frame_ok = (m.prot() & PROT_WRITE) && (frame->dest >= m.start() || m.growsdown());
  if (!frame_ok) return data_error("the app's stack pointer is not inside a writable stack mapping");

  // 5. Size the hole: blob, plan, blob stack, vDSO hop slot, staged mappings.
  const std::string_view blob = restorer_blob();
  const auto runs = runs_per_mapping(snap);
  struct Special {
    pb::Mapping::Kind kind;
    uint64_t start, end;
  };
  const Special specials[] = {{pb::Mapping::VVAR, own->vvar_start, own->vvar_end},
                              {pb::Mapping::VVAR_VCLOCK, own->vvar_vclock_start, own->vvar_vclock_end},
                              {pb::Mapping::VDSO, own->vdso_start, own->vdso_end}};
  uint64_t own_base = ~0ull, own_end = 0;
  for (const auto& s : specials)
    if (s.start) own_base = std::min(own_base, s.start), own_end = std::max(own_end, s.end);
  const uint64_t vdso_span = page_up(own_end - own_base);
  const uint64_t blob_len = page_up(blob.size());
  uint64_t plan_estimate = sizeof(PwPlan) + 64 * 8 + 16 * sizeof(PwMove) + 16 * sizeof(PwRange) +
                           snap.mappings_size() * sizeof(PwVmaOp) + snap.mm().auxv().size() +
                           options.notify_message.size() + 256 +
                           frame->bytes.size();
  const uint64_t plan_len = page_up(plan_estimate) + kBlobStack;
  uint64_t cursor = blob_len + plan_len + vdso_span;
  std::vector<uint64_t> slot_off(runs.size(), 0);
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!runs[i].staged()) continue;
    const auto& m = snap.mappings(static_cast<int>(i));
    // Same offset within a 2 MiB page as the target, so huge pages survive the move.
    cursor = ((cursor + kHugeAlign - 1) & ~(kHugeAlign - 1)) + (m.start() & (kHugeAlign - 1));
    slot_off[i] = cursor;
    cursor += m.end() - m.start();
  }
  const uint64_t hole_len = page_up(cursor);
  std::vector<Interval> taken;
  for (const auto& m : snap.mappings()) taken.push_back({m.start(), m.end()});
  auto hole = reserve_hole(taken, hole_len);
  if (!hole) return hole.error();
  const uint64_t H = reinterpret_cast<uint64_t>(hole->get());
  const uint64_t plan_addr = H + blob_len;
  const uint64_t hop = H + blob_len + plan_len;

  clock.mark("plan/hole");
  // 6. Stage every mapping with stored pages: read from pages.img and verify checksums. The work
  //    is first-touch page faults and copying, so a second thread takes half of the bytes; it is
  //    joined before anything else happens, so the handoff still sees one thread.
  std::vector<size_t> staged;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < runs.size(); ++i)
    if (runs[i].staged()) staged.push_back(i), total_bytes += snap.mappings(static_cast<int>(i)).end() - snap.mappings(static_cast<int>(i)).start();
  const int64_t validated_ns = mono_ns();
  std::atomic<uint64_t> bytes_read{0};
  auto stage_range = [&](size_t from, size_t to) -> Result<void> {
    StagedRead stats;
    struct Count {
      StagedRead& s;
      std::atomic<uint64_t>& total;
      ~Count() { total += s.bytes; }
    } count{stats, bytes_read};
    for (size_t k = from; k < to; ++k) {
      size_t i = staged[k];
      const auto& m = snap.mappings(static_cast<int>(i));
      int fd = m.kind() == pb::Mapping::FILE ? files->by_path.at(m.name()).get() : -1;
      PW_TRY(stage_mapping(snap, m, runs[i].first, runs[i].last, H + slot_off[i],
                           img->pages.get(), fd, stats));
    }
    return ok();
  };
  size_t split = 0;
  for (uint64_t acc = 0; split < staged.size() && acc < total_bytes / 2; ++split)
    acc += snap.mappings(static_cast<int>(staged[split])).end() - snap.mappings(static_cast<int>(staged[split])).start();
  Result<void> second = ok();
  {
    std::thread helper([&] { second = stage_range(split, staged.size()); });
    auto first = stage_range(0, split);
    helper.join();
    if (!first) return first.error();
  }
  if (!second) return second.error();

  clock.mark("read pages");
  const int64_t read_ns = mono_ns();
  // 7. The plan.
  PlanBuilder pb(sizeof(PwPlan));
  std::vector<PwMove> moves;
  std::vector<Interval> keep{{H, H + hole_len}};
  // Through the hop slot, so old and new places of the vDSO pair never overlap in one mremap.
  for (const auto& s : specials)
    if (s.start) moves.push_back({s.start, hop + (s.start - own_base), s.end - s.start});
  for (const auto& s : specials) {
    if (!s.start) continue;
    for (const auto& m : snap.mappings())
      if (m.kind() == s.kind) {
        moves.push_back({hop + (s.start - own_base), m.start(), s.end - s.start});
        keep.push_back({m.start(), m.end()});
      }
  }
  std::sort(keep.begin(), keep.end(), [](auto& a, auto& b) { return a.start < b.start; });
  std::vector<PwRange> unmap;
  uint64_t prev = 0;
  for (const auto& k : keep) {
    if (k.start > prev) unmap.push_back({prev, k.start - prev});
    prev = k.end;
  }
  if (prev < kTaskSize) unmap.push_back({prev, kTaskSize - prev});

  std::vector<PwVmaOp> ops;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& m = snap.mappings(static_cast<int>(i));
    if (is_special(m)) continue;
    PwVmaOp op{};
    op.start = m.start();
    op.len = m.end() - m.start();
    op.prot = m.prot();
    op.flags = static_cast<uint32_t>(mmap_flags_for(m));
    op.advice = advice_for(m);
    op.fd = -1;
    if (runs[i].staged()) {
      op.kind = PW_OP_MOVE_STAGED;
      op.staged = H + slot_off[i];
    } else if (m.kind() == pb::Mapping::FILE) {
      op.kind = PW_OP_MAP_FILE;
      op.fd = files->by_path.at(m.name()).get();
      op.file_offset = m.file_offset();
    } else {
      op.kind = PW_OP_MAP_ANON;
    }
    ops.push_back(op);
  }

  const std::string& auxv = snap.mm().auxv();
  if (auxv.empty() || auxv.size() > kMaxAuxvBytes || auxv.size() % 16)
    return data_error("image has an invalid auxiliary vector");

  uint64_t moves_off = pb.append(moves.data(), moves.size());
  uint64_t unmap_off = pb.append(unmap.data(), unmap.size());
  uint64_t ops_off = pb.append(ops.data(), ops.size());
  uint64_t auxv_off = pb.append(auxv.data(), auxv.size());
  uint64_t frame_off = pb.append(frame->bytes.data(), frame->bytes.size());
  uint64_t fd_moves_off = pb.append(app_files->moves.data(), app_files->moves.size());
  uint64_t fd_close_off = pb.append(app_files->close.data(), app_files->close.size());
  // The readiness message carries the launcher's phase times; the blob fills in its own two.
  const std::string message = options.notify_message + phase_fields(validated_ns, read_ns, bytes_read.load());
  uint64_t notify_off = pb.append(message.data(), message.size());
  if (pb.buf.size() > plan_len - kBlobStack) return data_error("internal: plan larger than estimated");

  PwPlan& p = pb.plan();
  p.magic = PW_PLAN_MAGIC;
  p.version = PW_PLAN_VERSION;
  p.size = static_cast<uint32_t>(pb.buf.size());
  p.self_start = plan_addr;
  // Everything of the hole after the blob's code: plan, stack, the emptied hop slot and the
  // padding between staged mappings, so only the code page remains in the app.
  p.self_len = H + hole_len - plan_addr;
  p.moves_off = moves_off;
  p.moves_count = static_cast<uint32_t>(moves.size());
  p.unmap_off = unmap_off;
  p.unmap_count = static_cast<uint32_t>(unmap.size());
  p.ops_off = ops_off;
  p.ops_count = static_cast<uint32_t>(ops.size());
  p.fd_moves_off = fd_moves_off;
  p.fd_moves_count = static_cast<uint32_t>(app_files->moves.size());
  p.fd_close_off = fd_close_off;
  p.fd_close_count = static_cast<uint32_t>(app_files->close.size());
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
                 static_cast<uint32_t>(auxv.size()), static_cast<uint32_t>(-1)};
  // Replacing /proc/PID/exe needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN); without it the
  // link keeps pointing at prewarm, which nothing in the app depends on.
  if (has_capability(kCapCheckpointRestore) || has_capability(kCapSysAdmin))
    p.mm.exe_fd = static_cast<uint32_t>(files->exe.get());
  p.auxv_off = auxv_off;
  // Dispositions the kernel reports without injecting code: ignored signals; the rest default.
  p.sigaction_mask = ~0ull;
  for (int n = 0; n < PW_NSIG; ++n) {
    p.sigactions[n] = PwKSigaction{(snap.signals().ignored() >> n) & 1 ? 1u : 0u, 0, 0, 0};
  }
  for (const auto& a : snap.signals().actions()) {
    if (a.signo() < 1 || a.signo() > PW_NSIG) return data_error("image has an invalid signal number");
    p.sigactions[a.signo() - 1] = PwKSigaction{a.handler(), a.flags(), a.restorer(), a.mask()};
  }
  p.fs_base = snap.regs().fs_base();
  p.gs_base = snap.regs().gs_base();
  p.frame_off = frame_off;
  p.frame_len = frame->bytes.size();
  p.frame_dest = frame->dest;
  p.final_sp = frame->final_sp;
  p.notify_fd = notify.get();
  p.notify_len = static_cast<uint32_t>(message.size());
  p.notify_mapped_off = static_cast<uint32_t>(message.find(kMappedField) + std::strlen(kMappedField));
  p.notify_resumed_off = static_cast<uint32_t>(message.find(kResumedField) + std::strlen(kResumedField));
  p.notify_off = notify_off;

  // 8. cwd, umask, rlimits, personality: applied to this process now, undone on failure.
  auto task_guard = apply_task_state(snap.task());
  if (!task_guard) return task_guard.error();
  if (auto c = check_mm_map(p.mm); !c) return c.error();  // against the app's RLIMIT_DATA

  // 9. Blob and plan into the hole.
  if (::mmap(reinterpret_cast<void*>(H), blob_len + plan_len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    return errno_error("map the restorer");
  std::memcpy(reinterpret_cast<void*>(H), blob.data(), blob.size());
  std::memcpy(reinterpret_cast<void*>(plan_addr), pb.buf.data(), pb.buf.size());
  if (::mprotect(reinterpret_cast<void*>(H), blob_len, PROT_READ | PROT_EXEC) != 0)
    return errno_error("mprotect the restorer");

  clock.mark("plan/blob");
  // 10. Last steps that change this process, then the point of no return.
  if (auto r = drop_own_rseq(); !r) return r.error();
  if (auto r = block_all_signals(); !r) return r.error();
  hole->release();
  for (auto& [path, fd] : files->by_path) (void)fd.release();
  for (auto& fd : app_files->fds) (void)fd.release();
  (void)files->exe.release();
  (void)img->pages.release();
  (void)notify.release();
  jump_to_blob(H, plan_addr, plan_addr + plan_len);
}

}  // namespace prewarm
