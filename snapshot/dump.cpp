// Collecting process state and writing the image. Memory is read without code in the target:
// PAGEMAP_SCAN finds the pages that hold data, process_vm_readv copies them in large batches.
#include "snapshot/dump.h"

#include <fcntl.h>
#include <sys/ptrace.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "snapshot/cpu_compat.h"
#include "snapshot/file_identity.h"
#include "snapshot/image.h"
#include "snapshot/inject_syscall.h"
#include "snapshot/present_pages.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kMaxRun = 1ull << 20;       // checksum granularity: verify while in cache
constexpr uint64_t kBatchBytes = 8ull << 20;    // one process_vm_readv moves up to this much
constexpr size_t kMaxIov = 1024;                // IOV_MAX

void fill_regs(pb::Registers* r, const user_regs_struct& g) {
  r->set_r15(g.r15); r->set_r14(g.r14); r->set_r13(g.r13); r->set_r12(g.r12);
  r->set_rbp(g.rbp); r->set_rbx(g.rbx); r->set_r11(g.r11); r->set_r10(g.r10);
  r->set_r9(g.r9); r->set_r8(g.r8); r->set_rax(g.rax); r->set_rcx(g.rcx);
  r->set_rdx(g.rdx); r->set_rsi(g.rsi); r->set_rdi(g.rdi); r->set_orig_rax(g.orig_rax);
  r->set_rip(g.rip); r->set_cs(g.cs); r->set_eflags(g.eflags); r->set_rsp(g.rsp);
  r->set_ss(g.ss); r->set_fs_base(g.fs_base); r->set_gs_base(g.gs_base);
}

// A range of the target to copy; `zero_skip` drops all-zero pages (anonymous memory reads back
// as zero where nothing is stored; a private file page must be kept even when zero).
struct Chunk {
  uint64_t addr, len;
  bool zero_skip;
  uint64_t zero_fill_end;  // up to here, what follows a stored run unstored reads as zero (0: not so)
};

bool page_is_zero(const char* p) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPageSize / 8; ++i)
    if (w[i] != 0) return false;
  return true;
}

// Reads [addr, addr+len) of the target into buf; falls back to /proc/PID/mem (which can read
// PROT_NONE pages) for whatever process_vm_readv could not.
Result<void> read_remote(pid_t pid, int mem_fd, const std::vector<Chunk>& chunks, char* buf) {
  std::vector<iovec> local, remote;
  size_t total = 0;
  for (const auto& c : chunks) {
    local.push_back({buf + total, c.len});
    remote.push_back({reinterpret_cast<void*>(c.addr), c.len});
    total += c.len;
  }
  ssize_t n = ::process_vm_readv(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
  size_t done = n < 0 ? 0 : static_cast<size_t>(n);
  if (done == total) return ok();
  // Slow path from the first byte not read.
  size_t off = 0;
  for (const auto& c : chunks) {
    if (off + c.len <= done) {
      off += c.len;
      continue;
    }
    size_t skip = done > off ? done - off : 0;
    auto r = pread_all(mem_fd, buf + off + skip, c.len - skip, static_cast<off_t>(c.addr + skip));
    if (!r) return make_error(r.error().code, "read target memory at " + std::to_string(c.addr));
    off += c.len;
  }
  return ok();
}

class PageCollector {
 public:
  PageCollector(pid_t pid, int mem_fd, ImageWriter& w, pb::Snapshot& snap, DumpStats& stats, TidWordFinder& tids)
      : pid_(pid), mem_fd_(mem_fd), writer_(w), snap_(snap), stats_(stats), tids_(tids), buf_(kBatchBytes) {}

  pid_t pid() const { return pid_; }

  Result<void> add(Chunk c) {
    if (pending_bytes_ + c.len > kBatchBytes || pending_.size() == kMaxIov) PW_TRY(flush());
    pending_.push_back(c);
    pending_bytes_ += c.len;
    return ok();
  }

  Result<void> flush() {
    if (pending_.empty()) return ok();
    PW_TRY(read_remote(pid_, mem_fd_, pending_, buf_.data()));
    size_t off = 0;
    for (const auto& c : pending_) {
      PW_TRY(emit(c, buf_.data() + off));
      off += c.len;
    }
    pending_.clear();
    pending_bytes_ = 0;
    return ok();
  }

 private:
  Result<void> emit(const Chunk& c, const char* data) {
    if (!c.zero_skip) return store(c.addr, data, c.len, c.zero_fill_end);
    uint64_t run_start = 0;
    bool in_run = false;
    for (uint64_t o = 0; o < c.len; o += kPageSize) {
      bool zero = page_is_zero(data + o);
      if (zero) ++stats_.zero_pages_skipped;
      if (!zero && !in_run) run_start = o, in_run = true;
      if (zero && in_run) {
        PW_TRY(store(c.addr + run_start, data + run_start, o - run_start, c.zero_fill_end));
        in_run = false;
      }
    }
    if (in_run) PW_TRY(store(c.addr + run_start, data + run_start, c.len - run_start, c.zero_fill_end));
    return ok();
  }

  Result<void> store(uint64_t addr, const char* data, uint64_t len, uint64_t zeros_until) {
    stats_.pages_stored += len / kPageSize;
    stats_.bytes_stored += len;
    // A held lock is written memory, so it starts in a stored page; it may end in a zero one.
    tids_.scan(addr, data, len, zeros_until);
    return writer_.append_run(snap_, addr, data, len);
  }

  pid_t pid_;
  int mem_fd_;
  ImageWriter& writer_;
  pb::Snapshot& snap_;
  DumpStats& stats_;
  TidWordFinder& tids_;
  std::vector<char> buf_;
  std::vector<Chunk> pending_;
  size_t pending_bytes_ = 0;
};

// Which pages of a mapping hold data the file (or zero-fill) cannot give back.
bool region_is_stored(pb::Mapping::Kind kind, const PageRegion& r) {
  if (r.categories & kPagePfnZero) return false;  // the shared zero page
  if (kind == pb::Mapping::FILE) return !(r.categories & kPageFile);  // written (CoW) pages only
  return true;
}

// Kernel state of the task that ptrace, prlimit and injected syscalls report.
Result<void> collect_task_state(FrozenProcess& proc, int mem_fd, ProcessState& s) {
  const pid_t pid = proc.pid();
  auto& t = s.task;
  PW_ASSIGN(std::string cwd, read_cwd(pid));
  t.set_cwd(cwd);
  t.set_umask(s.status.umask);
  PW_ASSIGN(uint32_t pers, read_personality(pid));
  t.set_personality(pers);
  std::vector<rlimit> from_proc;  // read only if prlimit is refused
  for (int res = 0; res < RLIM_NLIMITS; ++res) {
    rlimit lim{};
    if (::prlimit(pid, static_cast<__rlimit_resource>(res), nullptr, &lim) != 0) {
      // Another user's process without CAP_SYS_RESOURCE: /proc/PID/limits says the same.
      if (errno != EPERM) return errno_error("prlimit");
      if (from_proc.empty()) {
        PW_ASSIGN(from_proc, read_limits(pid));
      }
      lim = from_proc.at(static_cast<size_t>(res));
    }
    auto* r = t.add_rlimits();
    r->set_resource(static_cast<uint32_t>(res));
    r->set_cur(lim.rlim_cur);
    r->set_max(lim.rlim_max);
  }
  // The main thread's registrations (collect_thread read them).
  const ThreadInfo& main = s.thread_infos.at(0);
  if (main.rseq_area != 0) {
    t.set_rseq_area(main.rseq_area);
    t.set_rseq_size(main.rseq_size);
    t.set_rseq_signature(main.rseq_signature);
  }
  t.set_robust_list(main.robust_list);
  t.set_robust_list_len(main.robust_list_len);
  t.set_clear_child_tid(main.clear_child_tid);
  s.altstack_sp = main.altstack_sp;
  s.altstack_size = main.altstack_size;
  s.altstack_flags = main.altstack_flags;

  // Only the task can report these: run the syscalls inside it.
  PW_ASSIGN(SyscallInjector inj, SyscallInjector::attach(proc, mem_fd, s.vmas));
  const uint64_t buf = inj.scratch();
  for (int sig = 1; sig <= 64; ++sig) {
    if (!((s.status.sig_caught >> (sig - 1)) & 1)) continue;
    PW_ASSIGN(long rc, inj.call(SYS_rt_sigaction, static_cast<uint64_t>(sig), 0, buf, 8));
    if (rc != 0) return make_error(static_cast<int>(-rc), "rt_sigaction in the process");
    PW_ASSIGN(std::string raw, inj.read(buf, 32));
    uint64_t a[4];
    std::memcpy(a, raw.data(), sizeof a);
    pb::SigAction act;
    act.set_signo(static_cast<uint32_t>(sig));
    act.set_handler(a[0]);
    act.set_flags(a[1]);
    act.set_restorer(a[2]);
    act.set_mask(a[3]);
    s.sigactions.push_back(act);
  }
  return ok();
}

void fill_thread(pb::ThreadState* out, const ThreadInfo& t) {
  out->set_tid(t.tid);
  out->set_comm(t.comm);
  user_regs_struct regs = t.cpu.regs;
  SyscallRestart restart = classify_syscall_restart(regs);
  apply_syscall_restart(regs, restart);
  auto* r = out->mutable_regs();
  fill_regs(r, regs);
  r->set_xsave(t.cpu.xsave);
  auto* sc = r->mutable_syscall();
  sc->set_action(static_cast<pb::SyscallState::Action>(restart.action));
  sc->set_nr(restart.nr);
  sc->set_kernel_rc(restart.kernel_rc);
  out->set_blocked(t.blocked);
  out->set_altstack_sp(t.altstack_sp);
  out->set_altstack_size(t.altstack_size);
  out->set_altstack_flags(t.altstack_flags);
  out->set_rseq_area(t.rseq_area);
  out->set_rseq_size(t.rseq_area ? t.rseq_size : 0);
  out->set_rseq_signature(t.rseq_signature);
  out->set_robust_list(t.robust_list);
  out->set_robust_list_len(t.robust_list_len);
  out->set_clear_child_tid(t.clear_child_tid);
  out->set_tid_cached(t.tid_cached);
}
}  // namespace

pb::OpenFile open_file_record(const FdInfo& fd, bool directory, bool char_device) {
  pb::OpenFile f;
  f.set_fd(fd.fd);
  f.set_path(fd.target);
  f.set_flags(fd.flags & ~static_cast<uint32_t>(O_CLOEXEC));
  f.set_cloexec(fd.flags & O_CLOEXEC);
  f.set_pos(fd.pos);
  to_proto(FileIdentity::of(fd.st), f.mutable_file());
  f.set_directory(directory);
  f.set_char_device(char_device);
  return f;
}

Result<ProcessState> collect_state(FrozenProcess& proc) {
  ProcessState s;
  s.pid = proc.pid();
  PW_ASSIGN(s.status, read_status(s.pid));
  s.threads = static_cast<int>(proc.tids().size());
  PW_ASSIGN(s.mm, read_mm_layout(s.pid));
  PW_ASSIGN(s.vmas, read_smaps(s.pid));
  for (const auto& v : s.vmas) {
    MappedFile f;
    if (!v.name.empty() && v.name[0] == '/' && !v.is_deleted())
      f.exists = ::stat(v.name.c_str(), &f.st) == 0;
    s.vma_files.push_back(f);
  }
  PW_ASSIGN(s.auxv, read_auxv(s.pid));
  PW_ASSIGN(s.exe_path, read_exe_path(s.pid));
  if (::stat(s.exe_path.c_str(), &s.exe_st) != 0) return errno_error("stat " + s.exe_path);
  PW_ASSIGN(s.fds, read_fds(s.pid));
  PW_ASSIGN(s.listen, read_listen_env(s.pid));
  PW_ASSIGN(UniqueFd mem, open_fd("/proc/" + std::to_string(s.pid) + "/mem", O_RDWR));
  for (pid_t tid : proc.tids()) {
    PW_ASSIGN(ThreadInfo t, collect_thread(proc, tid, mem.get(), s.vmas));
    s.thread_infos.push_back(std::move(t));
  }
  s.cpu = s.thread_infos.at(0).cpu;
  PW_TRY(collect_task_state(proc, mem.get(), s));
  PW_ASSIGN(s.attrs, collect_attrs(proc, mem.get(), s.vmas, s.fds));
  return s;
}

namespace {

// The manifest's process-wide part, from what collect_state read: identity, registers, mm,
// signals, task state, files, threads and the machine. Reads nothing of the target.
pb::Snapshot describe_process(const ProcessState& state, const std::vector<pb::OpenFile>& files) {
  pb::Snapshot snap;
  auto* p = snap.mutable_process();
  p->set_pid(state.pid);
  p->set_comm(state.status.name);
  p->set_exe_path(state.exe_path);
  to_proto(FileIdentity::of(state.exe_st), p->mutable_exe());
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  p->set_dump_time_ns(now.tv_sec * 1000000000ll + now.tv_nsec);

  user_regs_struct regs = state.cpu.regs;
  SyscallRestart restart = classify_syscall_restart(regs);
  apply_syscall_restart(regs, restart);
  auto* r = snap.mutable_regs();
  fill_regs(r, regs);
  r->set_xsave(state.cpu.xsave);
  auto* sc = r->mutable_syscall();
  sc->set_action(static_cast<pb::SyscallState::Action>(restart.action));
  sc->set_nr(restart.nr);
  sc->set_kernel_rc(restart.kernel_rc);

  auto* mm = snap.mutable_mm();
  mm->set_start_code(state.mm.start_code);
  mm->set_end_code(state.mm.end_code);
  mm->set_start_data(state.mm.start_data);
  mm->set_end_data(state.mm.end_data);
  mm->set_start_brk(state.mm.start_brk);
  mm->set_brk(state.mm.start_brk);  // the heap's end, if there is one, comes with its mapping
  mm->set_start_stack(state.mm.start_stack);
  mm->set_arg_start(state.mm.arg_start);
  mm->set_arg_end(state.mm.arg_end);
  mm->set_env_start(state.mm.env_start);
  mm->set_env_end(state.mm.env_end);
  mm->set_auxv(state.auxv);

  auto* sig = snap.mutable_signals();
  sig->set_blocked(state.status.sig_blocked);
  sig->set_ignored(state.status.sig_ignored);
  sig->set_caught(state.status.sig_caught);
  for (const auto& a : state.sigactions) *sig->add_actions() = a;
  sig->set_altstack_sp(state.altstack_sp);
  sig->set_altstack_size(state.altstack_size);
  sig->set_altstack_flags(state.altstack_flags);
  *snap.mutable_task() = state.task;
  for (const auto& f : files) *snap.add_files() = f;
  if (state.listen.count != 0) {
    snap.mutable_launch_sockets()->set_count(state.listen.count);
    for (const auto& n : state.listen.names) snap.mutable_launch_sockets()->add_names(n);
  }
  if (!state.thread_infos.empty()) snap.mutable_main_thread()->set_tid_cached(state.thread_infos[0].tid_cached);
  for (size_t i = 1; i < state.thread_infos.size(); ++i) fill_thread(snap.add_threads(), state.thread_infos[i]);

  MachineCompat mc = machine_compat();
  auto* compat = snap.mutable_compat();
  compat->set_kernel_release(mc.kernel_release);
  compat->set_xfeatures(mc.xfeatures);
  compat->set_xsave_size(mc.xsave_size);
  return snap;
}

// Mapping i's entry in the manifest. Returns whether its pages go into pages.img: a shared file
// mapping's data is its file, and of the vDSO pair only the hash and sizes are kept (the restore
// checks them against the running kernel's).
Result<bool> add_mapping(pb::Snapshot& snap, const ProcessState& state, size_t i, pb::Mapping::Kind kind,
                         int mem_fd) {
  const Vma& v = state.vmas[i];
  auto* m = snap.add_mappings();
  m->set_start(v.start);
  m->set_end(v.end);
  m->set_prot(static_cast<uint32_t>(v.prot));
  m->set_shared(v.shared);
  m->set_kind(kind);
  m->set_name(v.name);
  m->set_file_offset(v.offset);
  // The text too: what inspect shows, and all a reader built before vm_flag_bits can use.
  m->set_vm_flags(v.vm_flags_text());
  m->set_vm_flag_bits(v.vm_flags.known.bits());
  m->set_growsdown(v.vm_flags.has(VmFlag::kGrowsDown));
  m->set_may_write(v.vm_flags.has(VmFlag::kMayWrite));
  if (v.name == "[heap]") snap.mutable_mm()->set_brk(v.end);

  auto* compat = snap.mutable_compat();
  switch (kind) {
    case pb::Mapping::FILE:
      to_proto(FileIdentity::of(state.vma_files[i].st), m->mutable_file());
      return !v.shared;
    case pb::Mapping::VDSO: {
      std::string text(v.size(), '\0');
      PW_TRY(read_remote(state.pid, mem_fd, {Chunk{v.start, v.size(), false}}, text.data()));
      compat->set_vdso_hash(hash128(text.data(), text.size()));
      compat->set_vdso_size(v.size());
      return false;
    }
    case pb::Mapping::VVAR:
      compat->set_vvar_size(v.size());
      return false;
    case pb::Mapping::VVAR_VCLOCK:
      compat->set_vvar_vclock_size(v.size());
      return false;
    default:
      return true;
  }
}

// The mapping's pages that hold data, queued in chunks of at most kMaxRun (the checksum unit).
// Stops with EFBIG as soon as the stored bytes pass `max_bytes` (0: no limit).
Result<void> store_pages(PageCollector& collector, int pagemap_fd, const Vma& v, pb::Mapping::Kind kind,
                         const DumpStats& stats, uint64_t max_bytes) {
  PW_ASSIGN(auto regions, kind == pb::Mapping::SHARED_ANON ? shared_anon_pages(collector.pid(), v.start, v.end, v.offset)
                                                           : find_present_pages(pagemap_fd, v.start, v.end));
  // What a private anonymous mapping does not store reads as zero (a shared one's pages may be in
  // the shmem object without being mapped here, a file mapping's are the file's).
  const uint64_t zero_fill_end = kind == pb::Mapping::ANON ? v.end : 0;
  for (const auto& reg : regions) {
    if (!region_is_stored(kind, reg)) continue;
    for (uint64_t a = reg.start; a < reg.end; a += kMaxRun) {
      PW_TRY(collector.add(Chunk{a, std::min(kMaxRun, reg.end - a), kind != pb::Mapping::FILE, zero_fill_end}));
      if (max_bytes && stats.bytes_stored > max_bytes)
        return make_error(EFBIG, "the image is larger than " + std::to_string(max_bytes >> 20) + " MiB");
    }
  }
  return ok();
}

// The words of held locks that name a thread, for the restore to rewrite with the new tids.
// Only where the restored app can write (a lock the app made read-only is not released) and
// the memory is the restore's own: private, or shared anonymous (restored as a new object).
void add_tid_words(pb::Snapshot& snap, const std::vector<TidWord>& words, const std::vector<Vma>& vmas,
                   const std::vector<std::optional<pb::Mapping::Kind>>& kinds) {
  for (const TidWord& w : words) {
    auto v = std::find_if(vmas.begin(), vmas.end(), [&](const Vma& m) { return m.start <= w.addr && w.addr < m.end; });
    if (v == vmas.end() || !(v->prot & PROT_WRITE)) continue;
    if (v->shared && kinds[static_cast<size_t>(v - vmas.begin())] != pb::Mapping::SHARED_ANON) continue;
    auto* out = snap.add_tid_words();
    out->set_addr(w.addr);
    out->set_mask(w.mask);
    out->set_thread(w.thread);
  }
}

}  // namespace

Result<DumpStats> write_image(const ProcessState& state,
                              const std::vector<std::optional<pb::Mapping::Kind>>& kinds,
                              const std::vector<pb::OpenFile>& files, const std::string& dir,
                              const std::function<Result<void>()>& before_publish, uint64_t max_bytes) {
  DumpStats stats;
  // 1. Everything but the mappings, from the state already collected.
  pb::Snapshot snap = describe_process(state, files);

  // 2. The target's page tables and memory, and the image under a temporary name (nothing is
  //    visible at `dir` before step 5).
  const std::string proc = "/proc/" + std::to_string(state.pid);
  PW_ASSIGN(UniqueFd pagemap, open_fd(proc + "/pagemap", O_RDONLY));
  stats.page_finder = page_finder_name(page_finder(pagemap.get()));
  PW_ASSIGN(UniqueFd mem, open_fd(proc + "/mem", O_RDONLY));
  PW_ASSIGN(ImageWriter writer, ImageWriter::create(dir));
  TidWordFinder tids(state.thread_infos, state.vmas);
  PageCollector collector(state.pid, mem.get(), writer, snap, stats, tids);

  // 3. Each mapping: its entry, then its pages, read in large batches, checksummed per run and
  //    appended to pages.img in address order.
  for (size_t i = 0; i < state.vmas.size(); ++i) {
    if (!kinds[i]) continue;
    ++stats.mappings;
    PW_ASSIGN(bool has_pages, add_mapping(snap, state, i, *kinds[i], mem.get()));
    if (has_pages) PW_TRY(store_pages(collector, pagemap.get(), state.vmas[i], *kinds[i], stats, max_bytes));
  }
  PW_TRY(collector.flush());
  tids.finish();

  // 4. The held locks' tid words: found while the pages went by.
  add_tid_words(snap, tids.words(), state.vmas, kinds);
  add_tid_words(snap, state.runtime_tid_words, state.vmas, kinds);
  stats.held_lookalikes = tids.lookalikes();

  // 5. The caller's last veto, then the atomic publish (fsync, then rename or RENAME_EXCHANGE).
  if (before_publish) PW_TRY(before_publish());
  PW_TRY(writer.commit(snap));
  return stats;
}

}  // namespace prewarm
