// The dump driver: each step named, the process frozen for as short as possible.
#include "prewarmd/dump_flow.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <optional>

#include "policy/attrs.h"
#include "policy/capture_check.h"
#include "policy/support.h"
#include "snapshot/fd_objects.h"
#include "snapshot/go_runtime.h"
#include "snapshot/proc_identity.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::optional<pb::Mapping::Kind> kind_for(policy::MappingClass c) {
  switch (c) {
    case policy::MappingClass::kAnon: return pb::Mapping::ANON;
    case policy::MappingClass::kFile: return pb::Mapping::FILE;
    case policy::MappingClass::kSharedAnon: return pb::Mapping::SHARED_ANON;
    case policy::MappingClass::kVdso: return pb::Mapping::VDSO;
    case policy::MappingClass::kVvar: return pb::Mapping::VVAR;
    case policy::MappingClass::kVvarVclock: return pb::Mapping::VVAR_VCLOCK;
    case policy::MappingClass::kSkip:
    case policy::MappingClass::kRefuse: break;
  }
  return std::nullopt;
}

std::optional<pb::FdKind> object_kind_for(policy::FdClass c) {
  switch (c) {
    case policy::FdClass::kEventfd: return pb::FD_EVENTFD;
    case policy::FdClass::kEpoll: return pb::FD_EPOLL;
    case policy::FdClass::kTimerfd: return pb::FD_TIMERFD;
    case policy::FdClass::kSignalfd: return pb::FD_SIGNALFD;
    case policy::FdClass::kInotify: return pb::FD_INOTIFY;
    case policy::FdClass::kPipe: return pb::FD_PIPE;
    case policy::FdClass::kSocket: return pb::FD_SOCKPAIR;
    case policy::FdClass::kMemfd: return pb::FD_MEMFD;
    case policy::FdClass::kDeleted: return pb::FD_DELETED;
    default: return std::nullopt;
  }
}

// Each Go thread's cached id (m.procid), read from the frozen process's memory.
Result<std::vector<TidWord>> go_thread_ids(pid_t pid, const ProcessState& state) {
  PW_ASSIGN(GoRuntimeSymbols sym, go_runtime_symbols(pid, state.auxv));
  PW_ASSIGN(UniqueFd mem, open_mm_handle(pid));
  std::vector<pid_t> tids;
  for (const auto& t : state.thread_infos) tids.push_back(t.tid);
  auto read = [&](uint64_t addr, void* out, size_t len) {
    return static_cast<bool>(pread_all(mem.get(), out, len, static_cast<off_t>(addr)));
  };
  return go_tid_words(read, sym, tids);
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

namespace {

DumpOutcome dump_once(pid_t pid, const std::string& dir, const DumpOptions& opts) {
  const FrozenVerifier& verify_frozen = opts.verify_frozen;
  const std::vector<uint64_t>& launch_sockets = opts.launch_sockets;
  DumpOutcome out;
  const auto t0 = std::chrono::steady_clock::now();
  // 1. Freeze: from here until detach the process runs no instruction.
  auto frozen = FrozenProcess::seize(pid);
  if (!frozen) {
    // A thread that would not stop is its own explanation; the others are mostly ptrace's.
    const bool stuck = frozen.error().code == ETIMEDOUT;
    out.message = "cannot freeze pid " + std::to_string(pid) + ": " +
                  (stuck ? frozen.error().message + "; try again once it has left that sleep"
                         : frozen.error().describe() + " (is it running, and may this user ptrace it?)");
    return out;
  }
  const auto frozen_at = std::chrono::steady_clock::now();
  // 1b. Is it still the process we mean to dump? Asked while it can no longer change.
  if (verify_frozen) {
    if (std::string why = verify_frozen(); !why.empty()) {
      out.status = DumpOutcome::kRefused;
      out.message = why;
      out.freeze_ms = ms_since(frozen_at);
      out.total_ms = ms_since(t0);
      return out;  // FrozenProcess detaches on destruction
    }
  }
  // 2. /proc and register state.
  auto state = collect_state(*frozen);
  if (!state) {
    out.message = "pid " + std::to_string(pid) + ": " + state.error().describe();
    return out;
  }
  // 3. Policy: every offender is reported at once, and the process is left running.
  std::vector<policy::Offender> offenders = policy::check_threads(state->thread_infos, state->status.shd_pending);
  if (opts.launched_in) {
    auto now = read_placement(pid);
    if (!now) {
      out.message = "pid " + std::to_string(pid) + ": " + now.error().describe();
      return out;
    }
    auto moved = policy::placement_offenders(*opts.launched_in, *now);
    offenders.insert(offenders.end(), moved.begin(), moved.end());
  }
  std::vector<std::optional<pb::Mapping::Kind>> kinds;
  for (size_t i = 0; i < state->vmas.size(); ++i) {
    const Vma& v = state->vmas[i];
    const auto& f = state->vma_files[i];
    auto d = policy::classify_mapping(v, f.exists && S_ISREG(f.st.st_mode));
    if (d.cls == policy::MappingClass::kRefuse)
      offenders.push_back({v.start, v.end, v.name, v.vm_flags_text(), d.reason});
    else if (std::string why = policy::vm_flags_refusal(v); !why.empty())
      offenders.push_back({v.start, v.end, v.name, v.vm_flags_text(), why});
    kinds.push_back(kind_for(d.cls));
  }
  std::vector<pb::OpenFile> files;
  std::vector<FdObjectCandidate> objects;
  std::vector<int> plain_fds;  // fds whose fdinfo the attribute policy reads (not kernel objects')
  // The sockets the launch passed (LISTEN_FDS), and any dup of them, by socket inode: the next
  // launch's own take their places at restore. Known by inode when the launcher said which it
  // got, else the ones still at fds 3 onwards.
  std::map<std::string, uint32_t> passed;
  const uint32_t passed_count = state->listen.count;
  if (!launch_sockets.empty()) {
    for (uint32_t i = 0; i < passed_count && i < launch_sockets.size(); ++i)
      if (launch_sockets[i] != 0) passed.emplace("socket:[" + std::to_string(launch_sockets[i]) + "]", i);
  } else {
    for (const auto& fd : state->fds)
      if (fd.fd >= 3 && static_cast<uint64_t>(fd.fd) < 3ull + passed_count && fd.target.starts_with("socket:["))
        passed.emplace(fd.target, static_cast<uint32_t>(fd.fd - 3));
  }
  for (const auto& fd : state->fds) {
    auto d = policy::classify_fd(fd.fd, fd.target, fd.stat_ok ? fd.st.st_mode : 0);
    if (auto p = passed.find(fd.target); p != passed.end() && d.cls == policy::FdClass::kSocket) {
      const auto& names = state->listen.names;
      objects.push_back({&fd, pb::FD_PASSED, p->second, p->second < names.size() ? names[p->second] : std::string()});
      continue;
    }
    // An fd on the process's own /proc entry is reopened for the restored process.
    auto self = d.cls == policy::FdClass::kRefuse ? std::nullopt : policy::proc_self_path(fd.target, pid);
    if (self && self->empty())
      d = {policy::FdClass::kRefuse, "another process's /proc entry"};
    if (d.cls == policy::FdClass::kRefuse)
      offenders.push_back({0, 0, "fd " + std::to_string(fd.fd) + " -> " + fd.target, {}, d.reason});
    if (d.cls == policy::FdClass::kRefuse || d.cls == policy::FdClass::kStdio) continue;  // stdio: the launch's own
    if (auto kind = object_kind_for(d.cls)) {
      objects.push_back({&fd, *kind});
      continue;
    }
    plain_fds.push_back(fd.fd);
    auto record = fd;
    if (self) record.target = *self;
    files.push_back(open_file_record(record, d.cls == policy::FdClass::kDirectory,
                                     d.cls == policy::FdClass::kCharDevice));
  }
  // 3b. Kernel objects: their state, and whatever of them cannot be carried (an end outside).
  auto scan = collect_fd_objects(pid, objects, state->fds);
  if (!scan) {
    out.message = "pid " + std::to_string(pid) + ": " + scan.error().describe();
    return out;
  }
  for (const auto& [fd, why] : scan->refused) {
    std::string target;
    for (const auto& f : state->fds)
      if (f.fd == fd) target = f.target;
    offenders.push_back({0, 0, "fd " + std::to_string(fd) + " -> " + target, {}, why});
  }
  for (auto& r : scan->records) files.push_back(std::move(r));
  // Only after the kernel objects: these read the app's files, and an inotify instance of the
  // app's must be read before anything the dump does could queue an event in it.
  auto go = exe_is_go(pid);
  if (!go)
    offenders.push_back({0, 0, state->exe_path, {}, "cannot tell whether it is a Go program: " + go.error().describe()});
  if (auto lib = mapped_go_library(state->vmas, state->vma_files, state->exe_st); !lib || !lib->empty())
    offenders.push_back({0, 0, lib ? *lib : state->exe_path, {},
                         lib ? "a Go runtime in a library (a c-shared or c-archive build): its threads' ids are not "
                               "looked for there, and restored with the old ones its goroutine preemption signals "
                               "would reach no thread"
                             : lib.error().describe()});
  if (go && *go) {
    auto words = go_thread_ids(pid, *state);
    if (words)
      state->runtime_tid_words = std::move(*words);
    else
      offenders.push_back({0, 0, state->exe_path, {},
                           "a Go program whose threads' ids cannot be found in its runtime (" + words.error().describe() +
                               "): restored, its goroutine preemption signals would reach no thread"});
  }
  // Attributes: each carried, the launch's own, or refused here by name (policy/attrs.h).
  auto attrs = policy::check_attrs(state->attrs, plain_fds);
  offenders.insert(offenders.end(), attrs.offenders.begin(), attrs.offenders.end());
  // A restore enters the app's cwd by path: a removed one is not there (zdtm cwd01, unhashed_proc
  // failed to restore instead).
  if (const std::string& cwd = state->task.cwd(); cwd.ends_with(" (deleted)"))
    offenders.push_back({0, 0, "cwd " + cwd, {}, "the working directory was removed; a restore enters it by path"});
  fill_attr_state(state->attrs, attrs.match_keys, state->task.mutable_attrs());
  if (!offenders.empty()) {
    out.status = DumpOutcome::kUnsupported;
    for (const auto& o : offenders) out.offenders.push_back(policy::format_offender(o));
    out.freeze_ms = ms_since(frozen_at);
    out.total_ms = ms_since(t0);
    return out;  // FrozenProcess detaches on destruction
  }
  // 4. Pages and manifest, published atomically.
  // Asked again at the end: a stop can be left (a thread's exec replaces the leader) and what
  // was read must still be that process.
  std::string refusal;
  auto before_publish = [&]() -> Result<void> {
    PW_TRY(frozen->still_held());
    if (verify_frozen) refusal = verify_frozen();
    if (!refusal.empty()) return data_error(refusal);
    return ok();
  };
  auto stats = write_image(*state, kinds, files, dir, before_publish, opts.max_bytes);
  if (!stats) {
    out.status = !refusal.empty()                ? DumpOutcome::kRefused
                 : stats.error().code == EFBIG   ? DumpOutcome::kOverBudget
                                                 : DumpOutcome::kFailed;
    out.message = !refusal.empty() ? refusal : "pid " + std::to_string(pid) + ": " + stats.error().describe();
    return out;
  }
  out.stats = *stats;
  // 5. Let the process go on, or end it.
  if (opts.kill) {
    frozen->kill();
  } else if (auto d = frozen->detach(); !d) {
    out.message = "warning: " + d.error().describe();
  }
  out.status = DumpOutcome::kOk;
  out.freeze_ms = ms_since(frozen_at);
  out.total_ms = ms_since(t0);
  return out;
}

// Whether a look-alike read while frozen is no longer as it was, now or a moment later, with
// the process running: a mutex held only for a while (V8 holds one of its heap's during a
// safepoint), which the image caught held under a tid the restore does not rewrite.
bool lookalike_released(pid_t pid, const std::vector<HeldLookalike>& seen) {
  auto mem = open_fd("/proc/" + std::to_string(pid) + "/mem", O_RDONLY | O_CLOEXEC);
  if (!mem) return false;
  for (int look = 0; look < 2; ++look) {
    if (look) ::usleep(20'000);
    for (const auto& h : seen) {
      decltype(h.bytes) now{};
      if (::pread(mem->get(), now.data(), now.size(), static_cast<off_t>(h.addr)) != static_cast<ssize_t>(now.size()))
        return false;  // gone, or no longer this process: the next dump's own checks say so
      if (now != h.bytes) return true;
    }
  }
  return false;
}

}  // namespace

DumpOutcome dump_process(pid_t pid, const std::string& dir, const DumpOptions& opts) {
  // A look-alike still held as it was is kept as it is (the JVM keeps such records for good);
  // one released since is dumped again, up to kAttempts dumps in all. A later dump that fails
  // leaves the earlier image in place (it was published whole), and that one is the outcome.
  constexpr int kAttempts = 3;
  // Each dump must be of the process the first one was: without a caller's check (prewarmd has
  // its own), a pidfd taken first holds it, and a dump that finds it ended (its pid free to be
  // another process's) publishes nothing. A live process keeps its pid, so the frozen one is it.
  DumpOptions each = opts;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!each.verify_frozen && pidfd.valid())
    each.verify_frozen = [&]() -> std::string {
      if (::syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) == 0) return {};
      return "pid " + std::to_string(pid) + " ended during the dump: the number may be another process's now";
    };
  DumpOutcome out = dump_once(pid, dir, each);
  for (int attempt = 2; attempt <= kAttempts; ++attempt) {
    if (out.status != DumpOutcome::kOk || opts.kill || out.stats.held_lookalikes.empty() ||
        !lookalike_released(pid, out.stats.held_lookalikes))
      break;
    DumpOutcome again = dump_once(pid, dir, each);
    if (again.status != DumpOutcome::kOk) break;
    again.total_ms += out.total_ms;
    again.attempts = attempt;
    out = std::move(again);
  }
  return out;
}

}  // namespace prewarm
