// Readers for the process attributes the policy classifies (see proc_attrs.h).
#include "snapshot/proc_attrs.h"

#include <asm/prctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <csignal>
#include <ctime>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <sstream>

#include "snapshot/inject_syscall.h"
#include "snapshot/proc_stat.h"
#include "snapshot/uapi_compat.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::string proc_file(pid_t pid, const std::string& f) { return "/proc/" + std::to_string(pid) + "/" + f; }

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t"));
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.pop_back();
  return s;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_status_fields(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    out.emplace_back(line.substr(0, colon), trim(line.substr(colon + 1)));
  }
  return out;
}

Result<std::vector<std::string>> parse_stat_fields(const std::string& text) {
  PW_ASSIGN(ProcStat s, parse_proc_stat(text, 52));  // the 52 fields the policy has a rule for
  return std::move(s.fields);
}

Result<std::vector<PosixTimerInfo>> parse_timers(const std::string& text) {
  // Blocks of "ID: n", "signal: s/ptr", "notify: kind/target", "ClockID: c".
  std::vector<PosixTimerInfo> out;
  for (const auto& [key, val] : parse_status_fields(text)) {
    if (key == "ID") {
      PosixTimerInfo t;
      auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), t.id);
      if (ec != std::errc() || p != val.data() + val.size()) return data_error("timers: bad ID " + val);
      out.push_back(t);
    } else if (out.empty()) {
      return data_error("timers: " + key + " before an ID");
    } else if (key == "signal") {
      out.back().signal = val;
    } else if (key == "notify") {
      out.back().notify = val;
    } else if (key == "ClockID") {
      out.back().clock = val;
    } else {
      return data_error("timers: unknown line " + key);
    }
  }
  return out;
}

FdLock parse_lock_line(int fd, const std::string& line) {
  FdLock l;
  l.fd = fd;
  l.line = line;
  std::istringstream in(line);
  std::string id, pid, start, end;
  if (!(in >> id >> l.kind >> l.mode >> l.access >> pid >> l.dev_ino >> start >> end)) return l;
  // "1: -> FLOCK ..." marks a waiter blocked on a lock: left unparsed, so it is refused.
  if (l.kind == "->") return l;
  auto num = [](const std::string& s, uint64_t& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size();
  };
  if (!num(start, l.start)) return l;
  if (end != "EOF" && !num(end, l.end)) return l;
  if (end != "EOF") ++l.end;  // inclusive in /proc
  l.parsed = true;
  return l;
}

void parse_fdinfo_attrs(int fd, const std::string& text, ProcAttrs& out) {
  for (const auto& [key, val] : parse_status_fields(text)) {
    if (key == "lock") out.locks.push_back(parse_lock_line(fd, val));
    out.fdinfo_keys.emplace_back(fd, key);
  }
}

std::string own_status_field(const std::string& key) {
  auto t = read_file("/proc/self/status");
  if (!t) return {};
  for (const auto& [k, v] : parse_status_fields(*t))
    if (k == key) return v;
  return {};
}

void classify_timer(PosixTimerInfo& t, int pid) {
  t.carried = false;
  const size_t slash = t.signal.find('/');
  if (slash == std::string::npos) return;
  auto num = [](std::string_view s, auto& v, int base = 10) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
  };
  if (!num(std::string_view(t.signal).substr(0, slash), t.signo) ||
      !num(std::string_view(t.signal).substr(slash + 1), t.sigval, 16) || !num(std::string_view(t.clock), t.clock_id))
    return;
  if (t.clock_id < 0) return;  // another process's or thread's CPU clock
  const std::string self = "pid." + std::to_string(pid), main_thread = "tid." + std::to_string(pid);
  if (t.notify == "signal/" + self) t.notify_kind = SIGEV_SIGNAL;
  else if (t.notify == "none/" + self) t.notify_kind = SIGEV_NONE;
  else if (t.notify == "signal/" + main_thread) t.notify_kind = SIGEV_SIGNAL | SIGEV_THREAD_ID;
  else return;  // SIGEV_THREAD (a helper thread) or another target
  t.carried = true;
}

namespace {

// The injected getters: prctl state, itimers, membarrier, and whether mlockall(MCL_FUTURE) is on
// (no getter exists: a fresh PROT_NONE page is mapped, its VmFlags read, and unmapped again).
Result<void> collect_injected(FrozenProcess& proc, int mem_fd, const std::vector<Vma>& vmas, ProcAttrs& a) {
  PW_ASSIGN(SyscallInjector inj, SyscallInjector::attach(proc, mem_fd, vmas));
  const uint64_t buf = inj.scratch();
  auto& p = a.prctl;
  auto int_out = [&](int op, long& v) -> Result<void> {
    PW_ASSIGN(long rc, inj.call(SYS_prctl, static_cast<uint64_t>(op), buf));
    if (rc != 0) return v = rc, ok();
    PW_ASSIGN(std::string raw, inj.read(buf, sizeof(int)));
    int i = 0;
    std::memcpy(&i, raw.data(), sizeof i);
    v = i;
    return ok();
  };
  auto ret = [&](long op, long& v) -> Result<void> {
    PW_ASSIGN(v, inj.call(SYS_prctl, static_cast<uint64_t>(op)));
    return ok();
  };
  PW_TRY(int_out(PR_GET_CHILD_SUBREAPER, p.child_subreaper));
  PW_TRY(int_out(PR_GET_PDEATHSIG, p.pdeathsig));
  PW_TRY(int_out(PR_GET_TSC, p.tsc));
  PW_TRY(ret(PR_GET_THP_DISABLE, p.thp_disable));
  PW_TRY(ret(PR_GET_TIMERSLACK, p.timerslack_ns));
  PW_TRY(ret(PR_GET_DUMPABLE, p.dumpable));
  PW_TRY(ret(PR_MCE_KILL_GET, p.mce_kill));
  PW_TRY(ret(PR_GET_MEMORY_MERGE, p.memory_merge));
  PW_TRY(ret(PR_GET_MDWE, p.mdwe));
  PW_ASSIGN(p.cpuid, inj.call(SYS_arch_prctl, ARCH_GET_CPUID));
  PW_ASSIGN(p.membarrier, inj.call(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0));

  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    PW_ASSIGN(long rc, inj.call(SYS_getitimer, static_cast<uint64_t>(which), buf));
    if (rc != 0) return make_error(static_cast<int>(-rc), "getitimer in the process");
    PW_ASSIGN(std::string raw, inj.read(buf, sizeof(itimerval)));
    itimerval v{};
    std::memcpy(&v, raw.data(), sizeof v);
    a.itimers.push_back({which, v.it_value.tv_sec * 1000000ll + v.it_value.tv_usec,
                         v.it_interval.tv_sec * 1000000ll + v.it_interval.tv_usec});
  }

  for (auto& t : a.timers) {
    PW_ASSIGN(long rc, inj.call(SYS_timer_gettime, static_cast<uint64_t>(t.id), buf));
    if (rc != 0) return make_error(static_cast<int>(-rc), "timer_gettime in the process");
    PW_ASSIGN(std::string raw, inj.read(buf, sizeof(itimerspec)));
    itimerspec v{};
    std::memcpy(&v, raw.data(), sizeof v);
    t.value_ns = v.it_value.tv_sec * 1000000000ll + v.it_value.tv_nsec;
    t.interval_ns = v.it_interval.tv_sec * 1000000000ll + v.it_interval.tv_nsec;
    classify_timer(t, proc.pid());
  }

  PW_ASSIGN(long addr, inj.call(SYS_mmap, 0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                                static_cast<uint64_t>(-1), 0));
  if (addr == -EAGAIN) {  // over RLIMIT_MEMLOCK: only a locked mapping is refused that way
    p.mlock_future = true;
    return ok();
  }
  if (addr < 0 && addr > -4096) return make_error(static_cast<int>(-addr), "probe mapping in the process");
  auto probed = read_smaps(proc.pid());
  PW_ASSIGN(long unmapped, inj.call(SYS_munmap, static_cast<uint64_t>(addr), 4096));
  if (unmapped != 0) return make_error(static_cast<int>(-unmapped), "unmap the probe mapping in the process");
  if (!probed) return probed.error();
  for (const auto& v : *probed) {
    if (v.start > static_cast<uint64_t>(addr) || v.end <= static_cast<uint64_t>(addr)) continue;
    p.mlock_future = v.vm_flags.has(VmFlag::kLocked);
    p.mlock_onfault = v.vm_flags.has(VmFlag::kLockOnFault);
  }
  return ok();
}

// Every thread's children file: a child belongs to the thread that forked it.
Result<std::vector<int>> read_children(pid_t pid, const std::vector<pid_t>& tids) {
  std::vector<int> out;
  for (pid_t tid : tids) {
    PW_ASSIGN(std::string text, read_file(proc_file(pid, "task/" + std::to_string(tid) + "/children")));
    std::istringstream in(text);
    for (int c; in >> c;) out.push_back(c);
  }
  return out;
}

}  // namespace

Result<ProcAttrs> collect_attrs(FrozenProcess& proc, int mem_fd, const std::vector<Vma>& vmas,
                                const std::vector<FdInfo>& fds) {
  const pid_t pid = proc.pid();
  ProcAttrs a;
  PW_ASSIGN(std::string status, read_file(proc_file(pid, "status")));
  a.status = parse_status_fields(status);
  PW_ASSIGN(ProcStat stat, read_proc_stat(pid, 52));
  // PR_GET_IO_FLUSHER needs CAP_SYS_RESOURCE; the flags it sets show in stat (field 9):
  // PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE.
  PW_ASSIGN(uint64_t task_flags, stat.number(9));
  a.prctl.io_flusher = (task_flags & 0x00180000ull) == 0x00180000ull ? 1 : 0;
  a.stat = std::move(stat.fields);
  PW_ASSIGN(std::string oom, read_file(proc_file(pid, "oom_score_adj")));
  a.oom_score_adj = std::stoi(oom);
  PW_ASSIGN(std::string timers, read_file(proc_file(pid, "timers")));
  PW_ASSIGN(a.timers, parse_timers(timers));
  for (const auto& f : fds) {
    PW_ASSIGN(std::string info, read_file(proc_file(pid, "fdinfo/" + std::to_string(f.fd))));
    parse_fdinfo_attrs(f.fd, info, a);
  }
  PW_ASSIGN(a.children, read_children(pid, proc.tids()));
  PW_TRY(collect_injected(proc, mem_fd, vmas, a));
  return a;
}

}  // namespace prewarm

#include "snapshot/snapshot.pb.h"

namespace prewarm {

void fill_attr_state(const ProcAttrs& a, const std::vector<std::string>& match_keys, pb::AttrState* out) {
  out->set_present(true);
  auto status = [&](const std::string& key) -> std::string {
    for (const auto& [k, v] : a.status)
      if (k == key) return v;
    return {};
  };
  out->set_comm(status("Name"));
  out->set_oom_score_adj(a.oom_score_adj);
  out->set_child_subreaper(a.prctl.child_subreaper > 0);
  out->set_thp_disable(a.prctl.thp_disable > 0);
  out->set_pdeathsig(static_cast<int32_t>(a.prctl.pdeathsig));
  out->set_timerslack_ns(static_cast<uint64_t>(a.prctl.timerslack_ns));
  out->set_no_new_privs(status("NoNewPrivs") == "1");
  if (a.stat.size() >= 19) out->set_nice(std::stoi(a.stat[18]));
  out->set_membarrier_registrations(a.prctl.membarrier > 0 ? static_cast<uint32_t>(a.prctl.membarrier) : 0);
  for (const auto& t : a.itimers) {
    if (t.value_us == 0) continue;  // disarmed
    auto* it = out->add_itimers();
    it->set_which(t.which);
    it->set_value_us(t.value_us);
    it->set_interval_us(t.interval_us);
  }
  for (const auto& t : a.timers) {
    if (!t.carried) continue;  // refused by the policy
    auto* p = out->add_posix_timers();
    p->set_id(t.id);
    p->set_clock(t.clock_id);
    p->set_notify(t.notify_kind);
    p->set_signo(t.signo);
    p->set_sigval(t.sigval);
    p->set_value_ns(t.value_ns);
    p->set_interval_ns(t.interval_ns);
  }
  std::set<std::string> posix_seen;  // the process's POSIX locks show in the fdinfo of every fd on the file
  for (const auto& l : a.locks) {
    if (!l.parsed || (l.kind != "FLOCK" && l.kind != "OFDLCK" && l.kind != "POSIX")) continue;  // refused by the policy
    if (l.kind == "POSIX" && !posix_seen.insert(l.dev_ino + " " + l.access + " " + std::to_string(l.start) + " " +
                                                std::to_string(l.end)).second)
      continue;
    auto* k = out->add_locks();
    k->set_fd(l.fd);
    k->set_ofd(l.kind == "OFDLCK");
    if (l.kind == "POSIX") k->set_posix(true);
    k->set_write(l.access == "WRITE");
    k->set_start(l.start);
    k->set_len(l.end == 0 ? 0 : l.end - l.start);
  }
  for (const auto& key : match_keys) {
    auto* m = out->add_match();
    m->set_key(key);
    if (key.starts_with("stat:")) {
      size_t n = std::stoul(key.substr(5));
      m->set_value(n >= 1 && n <= a.stat.size() ? a.stat[n - 1] : "");
    } else {
      m->set_value(status(key));
    }
  }
}

}  // namespace prewarm
