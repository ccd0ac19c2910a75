// Each check probes the kernel feature itself (a syscall, an ioctl, a file), never the version.
#include "prewarmd/cmd_check.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "prewarmd/protocol.h"
#include "restorer/lazy.h"
#include "snapshot/cpu_compat.h"
#include "snapshot/pagemap_fallback.h"
#include "snapshot/present_pages.h"
#include "snapshot/uapi_compat.h"
#include "snapshot/unique_fd.h"

namespace prewarm::cli {
namespace {

using nlohmann::json;

struct Check {
  std::string name;
  std::string status;  // "ok", "fallback" (works, another way) or "missing"
  bool needed = false;  // by `prewarm dump` and `prewarm restore`
  std::string detail;
  std::string fix;      // what to do, when not ok
  json value;           // the facts probed, for scripts
};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "[madvise]" out of "always [madvise] never".
std::string bracketed(const std::string& s) {
  const auto a = s.find('['), b = s.find(']');
  return a != std::string::npos && b != std::string::npos && b > a ? s.substr(a + 1, b - a - 1) : trim(s);
}

bool has_effective_cap(int cap) {
  auto status = read_file("/proc/self/status");
  if (!status) return false;
  const auto at = status->find("CapEff:\t");
  if (at == std::string::npos) return false;
  const uint64_t eff = std::strtoull(status->c_str() + at + 8, nullptr, 16);
  return (eff >> cap) & 1;
}


Check check_pages() {
  Check c{.name = "page_scan", .needed = true};
  auto pm = open_fd("/proc/self/pagemap", O_RDONLY);
  if (!pm) {
    c.status = "missing";
    c.detail = "/proc/self/pagemap cannot be opened: " + pm.error().describe();
    c.fix = "mount /proc (without hidepid restrictions for the dumping user)";
    return c;
  }
  const bool scan = pagemap_scan_supported(pm->get());
  const PageFinder used = page_finder(pm->get());
  const bool frames = zero_frames().zero_pfn != 0;
  c.value = {{"pagemap_scan", scan}, {"used", page_finder_name(used)}, {"zero_page_known", frames}};
  if (used == PageFinder::kPagemapScan) {
    c.status = "ok";
    c.detail = "PAGEMAP_SCAN ioctl (Linux 6.7+): only present pages are walked";
    return c;
  }
  c.status = "fallback";
  c.detail = scan ? "PREWARM_FORCE_PAGEMAP_FALLBACK=1: pages found by reading /proc/PID/pagemap"
                  : "no PAGEMAP_SCAN ioctl (before Linux 6.7): pages found by reading /proc/PID/pagemap (slower)";
  c.detail += frames ? "; zero pages recognised by frame"
                     : "; frame numbers hidden (no CAP_SYS_ADMIN): zero pages are read and stored as zero by content";
  c.fix = scan ? "unset PREWARM_FORCE_PAGEMAP_FALLBACK" : "a Linux 6.7+ kernel makes dumps faster";
  return c;
}

struct TraceProbe {
  int seize_errno = 0;
  int rseq_errno = -1;  // of PTRACE_GET_RSEQ_CONFIGURATION; -1: not tried (no stop)
};

// A real PTRACE_SEIZE of a child of ours, which yama's mode 1 allows: what it refuses here, it
// refuses for every process. Stopped, the child is asked for its rseq registration as a dump asks.
TraceProbe probe_trace() {
  TraceProbe t;
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  if (child < 0) {
    t.seize_errno = errno;
    return t;
  }
  if (::ptrace(PTRACE_SEIZE, child, nullptr, nullptr) != 0) {
    t.seize_errno = errno;
  } else if (::ptrace(PTRACE_INTERRUPT, child, nullptr, nullptr) == 0 &&
             ::waitpid(child, nullptr, __WALL) == child) {
    __ptrace_rseq_configuration rseq{};
    t.rseq_errno = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, child, sizeof rseq, &rseq) == sizeof rseq ? 0 : errno;
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, __WALL);
  return t;
}

Check check_rseq(const TraceProbe& t) {
  Check c{.name = "rseq", .needed = true};
  c.value = {{"get_rseq_configuration", t.rseq_errno == 0}};
  if (t.rseq_errno == 0) {
    c.status = "ok";
    c.detail = "PTRACE_GET_RSEQ_CONFIGURATION: the app's rseq registration is carried";
  } else if (t.rseq_errno == -1) {
    c.status = "missing";
    c.detail = "not probed: no traced child stopped (see ptrace)";
    c.fix = "allow ptrace";
  } else {
    c.status = "missing";
    c.detail = std::string("PTRACE_GET_RSEQ_CONFIGURATION failed: ") + std::strerror(t.rseq_errno) +
               " (before Linux 5.13): glibc's rseq registration cannot be read";
    c.fix = "a Linux 5.13+ kernel";
  }
  return c;
}

Check check_ptrace(const TraceProbe& t) {
  Check c{.name = "ptrace", .needed = true};
  int scope = -1;  // no yama
  if (auto f = read_file("/proc/sys/kernel/yama/ptrace_scope")) scope = std::atoi(f->c_str());
  const bool cap = has_effective_cap(CAP_SYS_PTRACE);
  const int seize_errno = t.seize_errno;
  c.value = {{"yama_ptrace_scope", scope}, {"cap_sys_ptrace", cap}, {"seize_child", seize_errno == 0}};
  if (seize_errno != 0) {
    c.status = "missing";
    c.detail = std::string("PTRACE_SEIZE of a child failed: ") + std::strerror(seize_errno);
    c.fix = scope == 3 ? "kernel.yama.ptrace_scope is 3 (no ptrace until reboot): boot with a lower value"
                       : "allow ptrace (seccomp or a container profile forbids it)";
    return c;
  }
  if (cap) {
    c.status = "ok";
    c.detail = "CAP_SYS_PTRACE: any process can be dumped";
  } else if (scope >= 2) {
    c.status = "missing";
    c.detail = "yama ptrace_scope " + std::to_string(scope) + ": only CAP_SYS_PTRACE may attach";
    c.fix = "run as root (prewarmd does), or sysctl kernel.yama.ptrace_scope=1";
  } else {
    c.status = "ok";
    c.detail = scope == 1 ? "yama ptrace_scope 1: this user's own descendants only (prewarmd, as root, dumps any)"
                          : "this user's own processes (no CAP_SYS_PTRACE)";
  }
  return c;
}

Check check_mm_map() {
  Check c{.name = "pr_set_mm_map", .needed = true};
  unsigned size = 0;
  const bool ok = ::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) == 0;
  const bool exe = has_effective_cap(CAP_CHECKPOINT_RESTORE) || has_effective_cap(CAP_SYS_ADMIN);
  c.value = {{"supported", ok}, {"exe_link", exe}};
  if (!ok) {
    c.status = "missing";
    c.detail = std::string("prctl(PR_SET_MM_MAP) refused: ") + std::strerror(errno) +
               " (kernel without CONFIG_CHECKPOINT_RESTORE)";
    c.fix = "a kernel built with CONFIG_CHECKPOINT_RESTORE=y (Debian's is)";
    return c;
  }
  c.status = "ok";
  c.detail = exe ? "brk, arg/env, auxv and the exe link are restored"
                 : "brk, arg/env and auxv are restored; the exe link stays prewarm's (no CAP_CHECKPOINT_RESTORE)";
  return c;
}

Check check_userfaultfd() {
  Check c{.name = "userfaultfd"};
  int sysctl = -1;
  if (auto t = read_file("/proc/sys/vm/unprivileged_userfaultfd")) sysctl = std::atoi(t->c_str());
  UniqueFd full(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  const int full_errno = full.valid() ? 0 : errno;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  UniqueFd user_only(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  c.value = {{"unprivileged_sysctl", sysctl}, {"syscall", full.valid()}, {"dev_userfaultfd", dev.valid()},
             {"user_mode_only", user_only.valid()}};
  if (full.valid() || dev.valid()) {
    c.status = "ok";
    c.detail = full.valid() ? "userfaultfd(2) serves kernel-mode faults too" : "/dev/userfaultfd (USERFAULTFD_IOC_NEW)";
    // What `restore --lazy` needs on top: the mm events and filling anonymous memory.
    auto lazy = open_lazy_uffd();
    c.value["lazy_restore"] = static_cast<bool>(lazy);
    c.detail += lazy ? "; restore --lazy works" : "; restore --lazy is eager here: " + lazy.error().describe();
    return c;
  }
  c.status = "missing";
  if (full_errno == ENOSYS) {
    c.detail = "kernel without CONFIG_USERFAULTFD";
    c.fix = "a kernel with CONFIG_USERFAULTFD=y";
  } else {
    c.detail = user_only.valid()
                   ? "only UFFD_USER_MODE_ONLY (vm.unprivileged_userfaultfd=" + std::to_string(sysctl) +
                         ", /dev/userfaultfd not accessible): a syscall into a lazy page would fail with EFAULT"
                   : std::string("userfaultfd refused: ") + std::strerror(full_errno);
    c.fix = "run as root, or sysctl vm.unprivileged_userfaultfd=1, or give this user /dev/userfaultfd";
  }
  c.detail += "; not needed: restores copy every page";
  return c;
}

Check check_pidfd() {
  Check c{.name = "pidfd"};
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  bool peer = false;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
    UniqueFd a(sv[0]), b(sv[1]);
    int fd = -1;
    socklen_t len = sizeof fd;
    peer = ::getsockopt(a.get(), SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0;
    if (peer) ::close(fd);
  }
  c.value = {{"pidfd_open", pidfd.valid()}, {"so_peerpidfd", peer}};
  if (!pidfd.valid()) {
    c.status = "missing";
    c.detail = "no pidfd_open (before Linux 5.3): prewarmd cannot bind a launch to its process";
    c.fix = "a Linux 5.3+ kernel";
  } else if (!peer) {
    c.status = "fallback";
    c.detail = "no SO_PEERPIDFD (before Linux 6.5): prewarmd uses pidfd_open of the peer's pid, checked by uid";
    c.fix = "a Linux 6.5+ kernel closes the pid-reuse window";
  } else {
    c.status = "ok";
    c.detail = "pidfd_open and SO_PEERPIDFD";
  }
  return c;
}

Check check_thp() {
  Check c{.name = "thp"};
  auto t = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
  const std::string mode = t ? bracketed(*t) : "unavailable";
  c.value = mode;
  if (mode == "always" || mode == "madvise") {
    c.status = "ok";
    c.detail = "transparent huge pages: " + mode + " (large anonymous mappings are restored with them)";
  } else {
    c.status = "missing";
    c.detail = "transparent huge pages: " + mode + ": restores copy into 4 KiB pages (slower)";
    c.fix = "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled";
  }
  return c;
}

Check check_populate_write() {
  Check c{.name = "madv_populate_write"};
  auto m = map_anonymous(4096, PROT_READ | PROT_WRITE);
  const bool ok = m && ::madvise(m->get(), 4096, MADV_POPULATE_WRITE) == 0;
  c.value = ok;
  c.status = ok ? "ok" : "missing";
  c.detail = ok ? "staging memory is faulted in before the copy" : "no MADV_POPULATE_WRITE (before Linux 5.14): restores fault while copying (slower)";
  if (!ok) c.fix = "a Linux 5.14+ kernel";
  return c;
}

Check check_xsave() {
  Check c{.name = "xsave", .needed = true};
  const MachineCompat mc = machine_compat();
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(mc.xfeatures));
  c.value = {{"xfeatures", hex}, {"size", mc.xsave_size}};
  c.status = mc.xsave_size ? "ok" : "missing";
  c.detail = mc.xsave_size ? std::string("XCR0 ") + hex + ", XSAVE area " + std::to_string(mc.xsave_size) +
                                 " bytes (images restore only where these match)"
                           : "no XSAVE: the FPU state cannot be carried";
  if (!mc.xsave_size) c.fix = "an x86-64 CPU with XSAVE";
  return c;
}

Check check_vdso() {
  Check c{.name = "vdso", .needed = true};
  auto s = own_special_mappings();
  if (!s) {
    c.status = "missing";
    c.detail = s.error().describe();
    c.fix = "boot without vdso=0";
    return c;
  }
  auto kib = [](uint64_t a, uint64_t b) { return std::to_string((b - a) / 1024) + " KiB"; };
  c.value = {{"vvar", s->vvar_end - s->vvar_start},
             {"vvar_vclock", s->vvar_vclock_end - s->vvar_vclock_start},
             {"vdso", s->vdso_end - s->vdso_start}};
  c.status = "ok";
  c.detail = "[vdso] " + kib(s->vdso_start, s->vdso_end) +
             (s->vvar_start ? ", [vvar] " + kib(s->vvar_start, s->vvar_end) : ", no [vvar]") +
             (s->vvar_vclock_start ? ", [vvar_vclock] " + kib(s->vvar_vclock_start, s->vvar_vclock_end)
                                   : ", no [vvar_vclock] (before Linux 6.13)") +
             ": moved to the snapshot's addresses";
  return c;
}

Check check_freezer() {
  Check c{.name = "cgroup_freezer"};
  struct stat st {};
  const bool v2 = ::stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0;
  const bool v1 = ::stat("/sys/fs/cgroup/freezer", &st) == 0 && S_ISDIR(st.st_mode);
  c.value = {{"cgroup2", v2}, {"v1_freezer", v1}};
  c.status = v2 || v1 ? "ok" : "missing";
  c.detail = v2 ? "cgroup2 (cgroup.freeze)" : v1 ? "cgroup v1 freezer" : "no cgroup freezer";
  c.detail += "; not needed: dumps freeze each thread with ptrace";
  if (!v2 && !v1) c.fix = "mount cgroup2 on /sys/fs/cgroup";
  return c;
}

Check check_daemon() {
  Check c{.name = "prewarmd"};
  const std::string rt = proto::runtime_dir();
  const std::string sock = proto::control_socket_path(rt);
  auto r = proto::call(rt, json{{"op", "ping"}}, {}, 1000);
  const bool ok = r && r->msg.value("ok", false);
  c.value = {{"socket", sock}, {"reachable", ok}};
  if (ok) {
    c.status = "ok";
    c.detail = "answers at " + sock + " (pid " + std::to_string(r->msg.value("pid", 0)) + ")";
  } else {
    c.status = "missing";
    c.detail = "not reachable: " + (r ? "no answer at " + sock : r.error().describe()) +
               "; `prewarm run` starts apps cold";
    c.fix = "systemctl enable --now prewarmd.socket, or prewarmd --runtime-dir DIR --state-dir DIR with "
            "PREWARM_RUNTIME_DIR=DIR for clients";
  }
  return c;
}

Check check_state_dir() {
  Check c{.name = "state_dir"};
  const char* env = std::getenv("PREWARM_STATE_DIR");
  const std::string dir = env && *env ? env : "/var/lib/prewarm";
  struct stat st {};
  const bool exists = ::lstat(dir.c_str(), &st) == 0;
  char mode[8] = "";
  if (exists) std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
  c.value = {{"path", dir}, {"exists", exists}};
  if (exists) c.value["mode"] = mode, c.value["uid"] = st.st_uid;
  if (!exists) {
    c.status = "missing";
    c.detail = dir + " does not exist";
    c.fix = "prewarmd creates it when it starts";
  } else if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)) {
    c.status = "missing";
    c.detail = dir + " is not a root-owned directory writable only by root (mode " + mode + ")";
    c.fix = "remove it and let prewarmd create it";
  } else {
    c.status = "ok";
    c.detail = dir + " (mode " + mode + ", root's)";
  }
  return c;
}

}  // namespace

int run_check(bool as_json) {
  const TraceProbe trace = probe_trace();
  std::vector<Check> checks = {check_pages(),      check_ptrace(trace), check_rseq(trace), check_mm_map(), check_xsave(),
                               check_vdso(),       check_userfaultfd(), check_populate_write(), check_thp(),
                               check_pidfd(),      check_freezer(), check_daemon(), check_state_dir()};
  std::vector<std::string> blocking;
  for (const auto& c : checks)
    if (c.needed && c.status == "missing") blocking.push_back(c.name);
  const bool can = blocking.empty();
  utsname u{};
  ::uname(&u);
  if (as_json) {
    json out = {{"kernel", u.release}, {"uid", ::getuid()}, {"dump_and_restore", can}, {"checks", json::array()}};
    for (const auto& c : checks)
      out["checks"].push_back({{"name", c.name}, {"status", c.status}, {"needed", c.needed},
                               {"detail", c.detail}, {"fix", c.fix}, {"value", c.value}});
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("prewarm check: Linux %s, uid %u\n", u.release, ::getuid());
    for (const auto& c : checks) {
      std::printf("%-8s %-20s %s\n", c.status.c_str(), c.name.c_str(), c.detail.c_str());
      if (!c.fix.empty() && c.status != "ok") std::printf("%-29s -> %s\n", "", c.fix.c_str());
    }
    if (can) {
      std::printf("dump and restore can work here\n");
    } else {
      std::string names;
      for (const auto& b : blocking) names += (names.empty() ? "" : ", ") + b;
      std::printf("dump and restore cannot work here: %s\n", names.c_str());
    }
  }
  return can ? 0 : 1;
}

}  // namespace prewarm::cli
