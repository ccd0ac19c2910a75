// The launcher: everything that can fail happens here, before the point of no return.
#include "restorer/restore.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
#include "restorer/fd_objects.h"
#include "restorer/compat_check.h"
#include "restorer/handoff.h"
#include "restorer/lazy.h"
#include "restorer/plan.h"
#include "restorer/sigframe.h"
#include "restorer/staging.h"
#include "restorer/task_state.h"
#include "snapshot/clock.h"
#include "snapshot/image.h"
#include "snapshot/proc_state.h"

extern char** environ;

namespace prewarm {
namespace {

bool has_capability(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return data[cap / 32].effective & (1u << (cap % 32));
}

// The app's mlocked mappings are locked again: staged copies here, under this launch's
// RLIMIT_MEMLOCK, the rest by the blob under the app's. Either limit too low (without
// CAP_IPC_LOCK) is refused now, before anything is locked. The vDSO pair is moved, not locked.
Result<void> check_memlock(const pb::Snapshot& snap) {
  uint64_t locked = 0;
  for (const auto& m : snap.mappings())
    if (!is_special(m) && vm_flags_of(m).has(VmFlag::kLocked)) locked += m.end() - m.start();
  if (locked == 0 || has_capability(CAP_IPC_LOCK)) return ok();
  rlimit launch{};
  ::getrlimit(RLIMIT_MEMLOCK, &launch);
  uint64_t limit = launch.rlim_cur;
  for (const auto& r : snap.task().rlimits())
    if (r.resource() == RLIMIT_MEMLOCK) limit = std::min<uint64_t>(limit, r.cur());
  if (limit != RLIM_INFINITY && locked > limit)
    return data_error("the image has " + std::to_string(locked >> 10) + " KiB of mlocked mappings, over RLIMIT_MEMLOCK (" +
                      std::to_string(limit >> 10) + " KiB, the app's or this launch's) without CAP_IPC_LOCK");
  return ok();
}

// Every kind of advice and lock the blob applies to a mapping it maps, tried here on a scratch
// page under the app's limits: a kernel without KSM, or a seccomp filter that refuses one of
// them, would otherwise end the process past the point of no return.
Result<void> try_blob_advice(const std::vector<char>& plan) {
  const PwPlan& p = *reinterpret_cast<const PwPlan*>(plan.data());
  uint32_t advice = 0;
  for (uint32_t i = 0; i < p.ops_count; ++i) {
    const auto* op = reinterpret_cast<const PwVmaOp*>(plan.data() + p.ops_off) + i;
    if (op->kind != PW_OP_MOVE_STAGED) advice |= op->advice;
  }
  if (advice == 0) return ok();
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return errno_error("map a scratch page");
  UniqueMapping scratch(page, 4096);
  if (auto r = apply_advice(scratch.get(), 4096, advice); !r)
    return make_error(r.error().code, "the app's mappings need " + r.error().message + ", which fails here");
  return ok();
}

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

// Everything after the image's files are open; `label` names the image in errors.
static Error restore_loaded(UniqueFd manifest, UniqueFd pages, std::string label, const RestoreOptions& options) {
  PhaseClock clock;
  // 1. Parse the image and check its structure (no page contents yet).
  auto img = load_image(std::move(manifest), std::move(pages), std::move(label));
  if (!img) return img.error();
  const pb::Snapshot& snap = img->snap;
  if (count_threads(::getpid()) != 1) return data_error("the launcher must be single-threaded");

  clock.mark("load image");
  // 2. Same kernel, CPU state layout and vDSO as at the snapshot.
  auto own = check_machine_compat(snap);
  if (!own) return own.error();
  // 2b. Attributes this launch must share, and the ones set at the last moment, checked now.
  if (auto m = check_attr_match(snap.task().attrs()); !m) return m.error();
  if (auto f = check_final_attrs(snap.task().attrs()); !f) return f.error();
  if (options.on_restore_signal != 0)
    if (auto r = prepare_on_restore_signal(img->snap, options.on_restore_signal); !r) return r.error();

  // 3. Every mapped file opened once and checked unchanged.
  auto files = open_mapped_files(snap);
  if (!files) return files.error();

  // The sockets this launch passed (systemd's LISTEN_FDS for this very process) take the places
  // of the ones the snapshot's launch passed.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  auto app_files = open_app_files(snap, parse_listen_env(env, ::getpid()));
  if (!app_files) return app_files.error();
  auto posix_locks = take_app_locks(snap.task().attrs(), app_files->moves);
  if (!posix_locks) return posix_locks.error();

  // The readiness socket sits above every fd the app uses, and the blob must not close it early.
  UniqueFd notify;
  if (options.notify_fd >= 0) {
    if (options.notify_message.empty()) return data_error("invalid readiness message");  // size: layout_hole
    int base = 3;
    for (const auto& mv : app_files->moves) base = std::max({base, mv.from + 1, mv.to + 1});
    int high = ::fcntl(options.notify_fd, F_DUPFD_CLOEXEC, base);
    if (high < 0) return errno_error("duplicate the readiness socket");
    notify = UniqueFd(high);
    app_files->close = punch_fd(app_files->close, high);
  }

  // 3b. Lazy restore: a userfaultfd that serves every kind of fault, and the mappings it serves
  //     (the plan and staging see the image without their runs); else eager, saying why.
  UniqueFd uffd, ws_fd(options.working_set_fd);
  LazySetup lazy;
  std::vector<uint32_t> working_set;
  if (options.lazy) {
    if (ws_fd.valid()) working_set = read_working_set(ws_fd.get(), snap);
    lazy = plan_lazy(snap, working_set);
    if (lazy.lazy_runs.empty()) {
      if (options.lazy_uffd >= 0) ::close(options.lazy_uffd);
      if (options.note) options.note("lazy restore: no private anonymous pages to serve; restoring eagerly");
    } else if (auto u = open_lazy_uffd(options.lazy_uffd); !u) {
      if (options.note) options.note("lazy restore unavailable (" + u.error().describe() + "); restoring eagerly");
      lazy = LazySetup{};
    } else {
      uffd = std::move(*u);
    }
  } else if (options.lazy_uffd >= 0) {
    ::close(options.lazy_uffd);
  }
  if (!uffd.valid()) ws_fd.reset();
  const pb::Snapshot& plan_snap = uffd.valid() ? lazy.eager_view : snap;

  clock.mark("check/open");
  // 4. The frame rt_sigreturn resumes the app from, and the size of the hole: blob, plan, blob
  //    stack, vDSO hop slot, staged mappings.
  auto frame = build_sigframe(snap);
  if (!frame) return frame.error();
  std::vector<SigframeLayout> thread_frames;
  for (int i = 0; i < snap.threads_size(); ++i) {
    auto f = build_thread_sigframe(snap, i);
    if (!f) return f.error();
    thread_frames.push_back(std::move(*f));
  }
  const std::string_view blob = restorer_blob();
  auto layout = layout_hole(plan_snap, *own, blob.size(), frame->bytes.size(), options.notify_message.size(),
                            app_files->moves.size() + app_files->close.size() + app_files->epoll.size() +
                                posix_locks->size());
  if (!layout) return layout.error();
  std::vector<Interval> taken;
  for (const auto& m : snap.mappings()) taken.push_back({m.start(), m.end()});
  auto hole = reserve_hole(taken, layout->hole_len + (uffd.valid() ? lazy.region_len : 0));
  if (!hole) return hole.error();
  const uint64_t H = reinterpret_cast<uint64_t>(hole->get());
  const auto& runs = layout->runs;
  uint64_t min_addr = 65536;
  if (auto t = read_file("/proc/sys/vm/mmap_min_addr")) min_addr = std::stoull(*t);
  PlanInputs in{.snap = plan_snap,
                .layout = *layout,
                .hole = H,
                .own = *own,
                .frame = *frame,
                .file_fd = [&](const std::string& path) {
                  auto it = files->by_path.find(path);
                  return it == files->by_path.end() ? -1 : it->second.get();
                },
                // Replacing /proc/PID/exe needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN); without
                // it the link keeps pointing at prewarm, which nothing in the app depends on.
                .exe_fd = has_capability(CAP_CHECKPOINT_RESTORE) || has_capability(CAP_SYS_ADMIN) ? files->exe.get() : -1,
                .notify_fd = notify.get(),
                .message = ready_message::encode(options.notify_message, 0, 0, 0),
                .fd_moves = app_files->moves,
                .fd_close = app_files->close,
                .epoll_adds = app_files->epoll,
                .posix_locks = *posix_locks,
                .mmap_min_addr = min_addr,
                .thread_frames = thread_frames};
  if (uffd.valid()) {
    in.lazy_uffd = uffd.get();
    in.lazy_region = H + layout->hole_len;
    in.lazy_region_len = lazy.region_len;
    in.lazy_ranges = lazy.ranges;
  }
  // Built once now so a hostile image is refused before any page is read; again once the
  // readiness message has its phase times.
  if (auto early = build_plan(in); !early) return early.error();

  clock.mark("plan/hole");
  PW_TRY(check_memlock(snap));
  // 5. Stage every mapping with stored pages: read from pages.img and verify checksums. The work
  //    is first-touch page faults and copying, so a second thread takes half of the bytes; it is
  //    joined before anything else happens, so the handoff still sees one thread.
  auto span_of = [&](size_t i) { return snap.mappings(static_cast<int>(i)).end() - snap.mappings(static_cast<int>(i)).start(); };
  std::vector<size_t> staged;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < runs.size(); ++i)
    if (runs[i].staged()) staged.push_back(i), total_bytes += span_of(i);
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
      PW_TRY(stage_mapping(plan_snap, m, runs[i].first, runs[i].last, H + layout->slot_off[i],
                           img->pages.get(), fd, stats));
    }
    return ok();
  };
  size_t split = 0;
  for (uint64_t acc = 0; split < staged.size() && acc < total_bytes / 2; ++split) acc += span_of(staged[split]);
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
  // 6. The plan.
  in.message = ready_message::encode(options.notify_message, validated_ns, read_ns, bytes_read.load());
  auto plan = build_plan(in);
  if (!plan) return plan.error();
  const PwPlan& p = *reinterpret_cast<const PwPlan*>(plan->data());
  const uint64_t plan_addr = H + layout->blob_len;

  // 7. cwd, umask, rlimits, personality: applied to this process now, undone on failure.
  auto task_guard = apply_task_state(snap.task());
  if (!task_guard) return task_guard.error();
  rlimit data{};
  ::getrlimit(RLIMIT_DATA, &data);
  if (auto c = check_mm_map(p.mm, min_addr, data.rlim_cur); !c) return c.error();  // the app's RLIMIT_DATA
  // The blob sets them with PR_SET_MM_MAP past the point of no return: a kernel that cannot (no
  // CONFIG_CHECKPOINT_RESTORE, another struct size) is found here, while a cold start still can be.
  unsigned mm_map_size = 0;
  if (::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mm_map_size, 0, 0) != 0)
    return errno_error("prctl(PR_SET_MM_MAP_SIZE): this kernel cannot set a restored process's mm fields "
                       "(it needs CONFIG_CHECKPOINT_RESTORE; `prewarm check` says so)");
  if (mm_map_size != sizeof(PwMmMap))
    return data_error("this kernel's struct prctl_mm_map has " + std::to_string(mm_map_size) + " bytes, this prewarm's " +
                      std::to_string(sizeof(PwMmMap)));
  PW_TRY(try_blob_advice(*plan));

  // 8. Blob and plan into the hole.
  const uint64_t blob_len = layout->blob_len, plan_len = layout->plan_len;
  if (::mmap(reinterpret_cast<void*>(H), blob_len + plan_len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    return errno_error("map the restorer");
  std::memcpy(reinterpret_cast<void*>(H), blob.data(), blob.size());
  std::memcpy(reinterpret_cast<void*>(plan_addr), plan->data(), plan->size());
  if (::mprotect(reinterpret_cast<void*>(H), blob_len, PROT_READ | PROT_EXEC) != 0)
    return errno_error("mprotect the restorer");

  // 8b. The lazy page server's region: its tables, buffer and stack (it outlives the plan).
  if (uffd.valid()) {
    const bool trace = std::getenv("PREWARM_TRACE") != nullptr;
    // The working set is an optimisation: a file that cannot be rewritten is just not kept.
    if (ws_fd.valid() && !restart_working_set(ws_fd.get(), snap, working_set)) ws_fd.reset();
    if (auto r = write_lazy_region(snap, lazy, in.lazy_region, uffd.get(), img->pages.get(), notify.get(),
                                   ws_fd.valid() ? ws_fd.get() : -1, trace);
        !r)
      return r.error();
    if (trace)
      std::fprintf(stderr,
                   "prewarm restore: lazy: %lu pages of %zu mappings left to the page server, %lu of them "
                   "its working set, first\n",
                   static_cast<unsigned long>(lazy.pages), lazy.ranges.size(),
                   static_cast<unsigned long>(lazy.prefetched_pages));
  }

  // 8c. Inotify watches get their masks only now: the restore's own file work above (files
  // reopened, sockets bound, ghost files made) is no event of the app's.
  PW_TRY(arm_inotify(snap, [&](int app_fd) { return launcher_fd(*app_files, app_fd); }, app_files->bound_paths));

  clock.mark("plan/blob");
  // 9. Last steps that change this process, then the point of no return.
  if (auto r = drop_own_rseq(); !r) return r.error();
  if (auto r = block_all_signals(); !r) return r.error();
  // With every signal blocked: no_new_privs and itimers (a SIGALRM now waits for the app's mask),
  // and the --on-restore signal, pending when the app resumes, so its handler runs first.
  apply_final_attrs(snap.task().attrs());
  for (const auto& [fd, nonblock] : app_files->passed_flags) {  // F_SETFL on a socket cannot fail
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0) (void)::fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | nonblock);
  }
  if (options.on_restore_signal != 0)
    ::syscall(SYS_tgkill, ::getpid(), ::gettid(), options.on_restore_signal);
  hole->release();
  for (auto& [path, fd] : files->by_path) (void)fd.release();
  for (auto& fd : app_files->fds) (void)fd.release();
  for (auto& p : app_files->bound_paths) p.release();
  (void)files->exe.release();
  (void)img->pages.release();
  (void)notify.release();
  (void)uffd.release();
  (void)ws_fd.release();
  jump_to_blob(H, plan_addr, plan_addr + plan_len);
}

Error restore_in_place(UniqueFd manifest, UniqueFd pages, const RestoreOptions& options) {
  return restore_loaded(std::move(manifest), std::move(pages), "the image", options);
}

Error restore_in_place(const std::string& dir, const RestoreOptions& options) {
  auto files = open_image_files(dir);
  if (!files) return files.error();
  return restore_loaded(std::move(files->manifest), std::move(files->pages), dir, options);
}

}  // namespace prewarm
