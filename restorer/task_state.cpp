// Applying the app's cwd, umask, rlimits and personality to the launcher, reversibly.
#include "restorer/task_state.h"

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sys/file.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "snapshot/proc_attrs.h"
#include "snapshot/proc_stat.h"
#include "snapshot/uapi_compat.h"

namespace prewarm {
namespace {

const char* rlimit_name(int r) {
  static const char* names[] = {"CPU",   "FSIZE",   "DATA",   "STACK",   "CORE",       "RSS",
                                "NPROC", "NOFILE",  "MEMLOCK", "AS",     "LOCKS",      "SIGPENDING",
                                "MSGQUEUE", "NICE", "RTPRIO",  "RTTIME"};
  return r >= 0 && r < 16 ? names[r] : "?";
}

Result<std::string> read_oom_score_adj() {
  PW_ASSIGN(std::string v, read_file("/proc/self/oom_score_adj"));
  while (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

Result<void> write_oom_score_adj(const std::string& v) {
  PW_ASSIGN(UniqueFd f, open_fd("/proc/self/oom_score_adj", O_WRONLY));
  if (::write(f.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size()))
    return errno_error("write oom_score_adj " + v);
  return ok();
}

// The carried attributes (AttrState) that can be set now and taken back on failure.
Result<void> apply_attrs(const pb::AttrState& a, std::vector<std::function<void()>>& undo) {
  char old_name[17] = {};
  if (::prctl(PR_GET_NAME, old_name) != 0) return errno_error("prctl(PR_GET_NAME)");
  char name[16] = {};
  std::strncpy(name, a.comm().c_str(), sizeof name - 1);
  if (::prctl(PR_SET_NAME, name) != 0) return errno_error("prctl(PR_SET_NAME)");
  undo.push_back([n = std::string(old_name)] { ::prctl(PR_SET_NAME, n.c_str()); });

  int old_reaper = 0;
  if (::prctl(PR_GET_CHILD_SUBREAPER, &old_reaper) != 0) return errno_error("prctl(PR_GET_CHILD_SUBREAPER)");
  if (::prctl(PR_SET_CHILD_SUBREAPER, a.child_subreaper() ? 1 : 0) != 0)
    return errno_error("prctl(PR_SET_CHILD_SUBREAPER) as the app had it");
  undo.push_back([old_reaper] { ::prctl(PR_SET_CHILD_SUBREAPER, old_reaper); });

  // After staging (THP makes the staged copy fast), as the app had it.
  const int old_thp = ::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  if (old_thp < 0) return errno_error("prctl(PR_GET_THP_DISABLE)");
  if (::prctl(PR_SET_THP_DISABLE, a.thp_disable() ? 1 : 0, 0, 0, 0) != 0)
    return errno_error("prctl(PR_SET_THP_DISABLE) as the app had it");
  undo.push_back([old_thp] { ::prctl(PR_SET_THP_DISABLE, old_thp, 0, 0, 0); });

  int old_pdeath = 0;
  if (::prctl(PR_GET_PDEATHSIG, &old_pdeath) != 0) return errno_error("prctl(PR_GET_PDEATHSIG)");
  if (a.pdeathsig() < 0 || a.pdeathsig() > 64 || ::prctl(PR_SET_PDEATHSIG, a.pdeathsig()) != 0)
    return make_error(EINVAL, "prctl(PR_SET_PDEATHSIG, " + std::to_string(a.pdeathsig()) + ") as the app had it");
  undo.push_back([old_pdeath] { ::prctl(PR_SET_PDEATHSIG, old_pdeath); });

  const long old_slack = ::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  if (a.timerslack_ns() != static_cast<uint64_t>(old_slack)) {
    if (a.timerslack_ns() == 0 || ::prctl(PR_SET_TIMERSLACK, a.timerslack_ns(), 0, 0, 0) != 0)
      return make_error(EINVAL, "prctl(PR_SET_TIMERSLACK, " + std::to_string(a.timerslack_ns()) + ") as the app had it");
    undo.push_back([old_slack] { ::prctl(PR_SET_TIMERSLACK, old_slack, 0, 0, 0); });
  }

  errno = 0;
  const int old_nice = ::getpriority(PRIO_PROCESS, 0);
  if (errno != 0) return errno_error("getpriority");
  if (old_nice != a.nice()) {
    if (::setpriority(PRIO_PROCESS, 0, a.nice()) != 0)
      return errno_error("set nice " + std::to_string(a.nice()) + " as the app had it (lowering it needs CAP_SYS_NICE)");
    undo.push_back([old_nice] { ::setpriority(PRIO_PROCESS, 0, old_nice); });
  }

  // Raising oom_score_adj is always allowed, lowering it below what the launch was given needs
  // CAP_SYS_RESOURCE: then the launch cannot carry it and is not restored.
  PW_ASSIGN(std::string old_oom, read_oom_score_adj());
  const std::string want = std::to_string(a.oom_score_adj());
  if (old_oom != want) {
    if (auto w = write_oom_score_adj(want); !w)
      return make_error(w.error().code, "set oom_score_adj " + want + " as the app had it (this launch has " +
                                            old_oom + "; lowering it needs CAP_SYS_RESOURCE)");
    undo.push_back([old_oom] { (void)write_oom_score_adj(old_oom); });
  }

  // POSIX timers with their ids (the app holds them as timer_t): created disarmed now, armed once
  // every signal is blocked (apply_final_attrs). A cold start's exec deletes them.
  if (a.posix_timers_size() > 0) {
    if (::prctl(PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0) != 0)
      return errno_error("recreate the app's POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS needs Linux 6.17)");
    for (const auto& t : a.posix_timers()) {
      sigevent ev{};
      ev.sigev_notify = t.notify();
      ev.sigev_signo = t.signo();
      ev.sigev_value.sival_ptr = reinterpret_cast<void*>(t.sigval());
      if (t.notify() & SIGEV_THREAD_ID) ev._sigev_un._tid = ::gettid();  // the main thread, as at the dump
      int id = t.id();
      if (::syscall(SYS_timer_create, t.clock(), &ev, &id) != 0 || id != t.id()) {
        const int e = errno;
        ::prctl(PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
        return make_error(e, "recreate the app's POSIX timer " + std::to_string(t.id()));
      }
      undo.push_back([id] { ::syscall(SYS_timer_delete, id); });
    }
    ::prctl(PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
  }

  // Registrations belong to the mm, which the restore keeps; a cold start's exec drops them.
  for (uint32_t bit = 1; bit != 0 && bit <= a.membarrier_registrations(); bit <<= 1) {
    if (!(a.membarrier_registrations() & bit)) continue;
    if (::syscall(SYS_membarrier, bit, 0, 0) != 0)
      return errno_error("membarrier registration " + std::to_string(bit) + " as the app had it");
  }
  return ok();
}

}  // namespace

Result<void> check_attr_match(const pb::AttrState& a) {
  std::vector<std::string> own_stat;
  for (const auto& m : a.match()) {
    std::string own;
    if (m.key().starts_with("stat:")) {
      if (own_stat.empty()) {
        PW_ASSIGN(ProcStat s, read_proc_stat(0, 52));
        own_stat = std::move(s.fields);
      }
      size_t n = std::stoul(m.key().substr(5));
      own = n >= 1 && n <= own_stat.size() ? own_stat[n - 1] : "";
    } else {
      own = own_status_field(m.key());
    }
    if (own != m.value())
      return data_error("the snapshot had " + m.key() + " " + m.value() + " and this launch has " + own +
                        "; that is not carried, so the app is not restored here");
  }
  return ok();
}

Result<std::vector<PwPosixLock>> take_app_locks(const pb::AttrState& a, const std::vector<PwFdMove>& moves) {
  std::vector<PwPosixLock> posix;
  for (const auto& l : a.locks()) {
    int fd = -1;
    for (const auto& m : moves)
      if (m.to == l.fd()) fd = m.from;
    if (fd < 0) return data_error("the image has a lock on fd " + std::to_string(l.fd()) + ", which it does not reopen");
    const std::string what = std::string(l.posix() ? "POSIX" : l.ofd() ? "OFD" : "flock") +
                             (l.write() ? " write" : " read") + " lock on the app's fd " + std::to_string(l.fd());
    if (l.start() > static_cast<uint64_t>(INT64_MAX) || l.len() > static_cast<uint64_t>(INT64_MAX))
      return data_error("the image has an invalid range for its " + what);
    struct flock f {};  // the range of a POSIX or OFD lock
    f.l_type = l.write() ? F_WRLCK : F_RDLCK;
    f.l_whence = SEEK_SET;
    f.l_start = static_cast<off_t>(l.start());
    f.l_len = static_cast<off_t>(l.len());
    int rc;
    if (l.posix()) {
      if (::fcntl(fd, F_GETLK, &f) != 0) return errno_error("test the " + what);
      if (f.l_type != F_UNLCK)
        return make_error(EAGAIN, "take the " + what + " again (another process holds a conflicting lock now: pid " +
                                      std::to_string(f.l_pid) + ")");
      posix.push_back({l.fd(), l.write() ? 1 : 0, static_cast<int64_t>(l.start()), static_cast<int64_t>(l.len())});
      continue;
    }
    if (l.ofd()) {
      rc = ::fcntl(fd, F_OFD_SETLK, &f);
    } else {
      rc = ::flock(fd, (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB);
    }
    if (rc != 0)
      return errno_error("take the " + what + " again" +
                         (errno == EAGAIN || errno == EACCES ? " (another process holds a conflicting lock now)" : ""));
  }
  return posix;
}

Result<void> check_final_attrs(const pb::AttrState& a) {
  for (const auto& t : a.itimers()) {
    if (t.which() < ITIMER_REAL || t.which() > ITIMER_PROF || t.value_us() <= 0 || t.interval_us() < 0)
      return data_error("the image has an invalid itimer");
  }
  for (const auto& t : a.posix_timers())
    if (t.value_ns() < 0 || t.interval_ns() < 0) return data_error("the image has an invalid POSIX timer");
  return ok();
}

void apply_final_attrs(const pb::AttrState& a) {
  if (a.no_new_privs()) ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  for (const auto& t : a.itimers()) {
    itimerval v{};
    v.it_value = {t.value_us() / 1000000, t.value_us() % 1000000};
    v.it_interval = {t.interval_us() / 1000000, t.interval_us() % 1000000};
    ::setitimer(static_cast<__itimer_which>(t.which()), &v, nullptr);
  }
  for (const auto& t : a.posix_timers()) {
    if (t.value_ns() == 0) continue;  // created disarmed
    itimerspec v{};
    v.it_value = {t.value_ns() / 1000000000, t.value_ns() % 1000000000};
    v.it_interval = {t.interval_ns() / 1000000000, t.interval_ns() % 1000000000};
    ::syscall(SYS_timer_settime, t.id(), 0, &v, nullptr);
  }
}

Result<void> prepare_on_restore_signal(pb::Snapshot& snap, int sig) {
  if (sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP)
    return make_error(EINVAL, "--on-restore: " + std::to_string(sig) + " is not a signal that can be caught");
  const uint64_t bit = 1ull << (sig - 1);
  const pb::SigAction* act = nullptr;
  for (const auto& a : snap.signals().actions())
    if (a.signo() == static_cast<uint32_t>(sig)) act = &a;
  if (!(snap.signals().caught() & bit) || act == nullptr)
    return data_error("--on-restore: the app has no handler for signal " + std::to_string(sig) + " (" +
                      strsignal(sig) + "); delivering it would run its default action");
  if (snap.signals().blocked() & bit) return ok();  // stays pending until the app unblocks it
  auto* sc = snap.mutable_regs()->mutable_syscall();
  if (sc->action() != pb::SyscallState::RESTART) return ok();
  constexpr int64_t kErestartsys = -512, kErestartnohand = -514;
  const bool restart = (act->flags() & SA_RESTART) && sc->kernel_rc() == kErestartsys;
  if (restart || (sc->kernel_rc() != kErestartsys && sc->kernel_rc() != kErestartnohand)) return ok();
  auto* r = snap.mutable_regs();
  r->set_rip(r->rip() + 2);  // past `syscall`, which the dump had rewound to
  r->set_rax(static_cast<uint64_t>(-static_cast<int64_t>(EINTR)));
  sc->set_action(pb::SyscallState::RETURN_EINTR);
  return ok();
}

TaskStateGuard::~TaskStateGuard() {
  if (!active_) return;
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
  for (auto it = old_limits_.rbegin(); it != old_limits_.rend(); ++it)
    ::setrlimit(static_cast<__rlimit_resource>(it->first), &it->second);
  ::personality(old_personality_);
  ::umask(old_umask_);
  if (old_cwd_.valid()) (void)::fchdir(old_cwd_.get());
}

Result<TaskStateGuard> apply_task_state(const pb::TaskState& t) {
  TaskStateGuard g;
  PW_ASSIGN(g.old_cwd_, open_fd(".", O_PATH | O_DIRECTORY));
  g.active_ = true;
  g.old_umask_ = ::umask(static_cast<mode_t>(t.umask() & 0777));
  int old_pers = ::personality(0xffffffff);
  if (old_pers < 0) return errno_error("read personality");
  g.old_personality_ = static_cast<uint32_t>(old_pers);
  if (t.personality() != g.old_personality_ && ::personality(t.personality()) < 0)
    return errno_error("set personality");
  if (::chdir(t.cwd().c_str()) != 0) return errno_error("change to the app's directory " + t.cwd());
  for (const auto& r : t.rlimits()) {
    int res = static_cast<int>(r.resource());
    rlimit old{};
    if (::getrlimit(static_cast<__rlimit_resource>(res), &old) != 0) return errno_error("getrlimit");
    rlimit want{r.cur(), r.max()};
    if (old.rlim_cur == want.rlim_cur && old.rlim_max == want.rlim_max) continue;
    if (::setrlimit(static_cast<__rlimit_resource>(res), &want) != 0)
      return errno_error(std::string("set RLIMIT_") + rlimit_name(res) +
                         " as the app had it (raising a hard limit needs CAP_SYS_RESOURCE)");
    g.old_limits_.emplace_back(res, old);
  }
  if (t.attrs().present()) PW_TRY(apply_attrs(t.attrs(), g.undo_));
  return g;
}

}  // namespace prewarm
