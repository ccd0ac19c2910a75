// Reading a process's identity from /proc, all through one /proc/PID directory fd.
#include "snapshot/proc_identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "snapshot/proc_stat.h"

namespace prewarm {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits on blanks; empty tokens are dropped.
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

template <typename T>
bool number(std::string_view s, T& out, int base = 10) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

// "a b c d" -> four ids; anything else is malformed.
template <typename T>
bool four_ids(std::string_view val, T& r, T& e, T& s, T& fs) {
  auto w = words(val);
  return w.size() == 4 && number(w[0], r) && number(w[1], e) && number(w[2], s) && number(w[3], fs);
}

// A small /proc file below `dir`, errors naming the full path.
Result<std::string> read_below(int dir, const std::string& where, const char* name) {
  auto fd = open_at(dir, name, O_RDONLY);
  if (!fd) return make_error(fd.error().code, "open " + where + "/" + name);
  auto text = read_fd(fd->get());
  if (!text) return make_error(text.error().code, "read " + where + "/" + name);
  return text;
}

// Whether this kernel has namespaces of that type at all: asked of this process, which has a link
// for each (of its own, never the "none" a target's pid_for_children can be).
bool kernel_has_namespace(const char* name) {
  struct stat st {};
  return ::stat((std::string("/proc/self/ns/") + name).c_str(), &st) == 0 || errno != ENOENT;
}

Result<Placement> read_placement_below(int dir, const std::string& where) {
  Placement p;
  for (size_t i = 0; i < Placement::kNamespaces.size(); ++i) {
    const std::string name = std::string("ns/") + Placement::kNamespaces[i];
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, 0) == 0)
      p.ns[i] = st.st_ino;
    else if (errno != ENOENT)
      return errno_error("stat " + where + "/" + name);
    else if (kernel_has_namespace(Placement::kNamespaces[i]))
      p.ns[i] = Placement::kUnavailable;
  }
  PW_ASSIGN(p.cgroups, read_below(dir, where, "cgroup"));
  // EINVAL: no LSM with a per-task label (neither AppArmor nor SELinux is active).
  auto label = read_below(dir, where, "attr/current");
  if (!label && label.error().code != EINVAL && label.error().code != ENOENT) return label.error();
  if (label) {
    while (!label->empty() && label->back() == '\0') label->pop_back();  // SELinux ends in NUL
    p.lsm_label = std::string(trim(*label));
  }
  return p;
}

Result<Placement> read_placement_of(const std::string& where) {
  PW_ASSIGN(auto dir, open_fd(where, O_RDONLY | O_DIRECTORY));
  return read_placement_below(dir.get(), where);
}

}  // namespace

Result<void> parse_identity_status(std::string_view text, ProcessIdentity& id) {
  bool uid = false, gid = false, groups = false, prm = false, eff = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon), val = trim(line.substr(colon + 1));
    if (key == "Uid") {
      if (!four_ids(val, id.ruid, id.euid, id.suid, id.fsuid)) return data_error("status: bad Uid line");
      uid = true;
    } else if (key == "Gid") {
      if (!four_ids(val, id.rgid, id.egid, id.sgid, id.fsgid)) return data_error("status: bad Gid line");
      gid = true;
    } else if (key == "Groups") {
      id.groups.clear();
      for (auto w : words(val)) {
        gid_t g = 0;
        if (!number(w, g)) return data_error("status: bad Groups line");
        id.groups.push_back(g);
      }
      std::sort(id.groups.begin(), id.groups.end());
      groups = true;
    } else if (key == "CapPrm") {
      if (!number(val, id.cap_prm, 16)) return data_error("status: bad CapPrm line");
      prm = true;
    } else if (key == "CapEff") {
      if (!number(val, id.cap_eff, 16)) return data_error("status: bad CapEff line");
      eff = true;
    } else if (key == "NoNewPrivs") {
      int v = 0;
      if (!number(val, v)) return data_error("status: bad NoNewPrivs line");
      id.no_new_privs = v != 0;
    }
  }
  if (!uid || !gid || !groups || !prm || !eff) return data_error("status: Uid, Gid, Groups, CapPrm or CapEff missing");
  return ok();
}

Result<uint64_t> parse_stat_start_time(std::string_view text) {
  PW_ASSIGN(ProcStat s, parse_proc_stat(text, 22));
  return s.number(22);  // starttime
}

Result<ProcessIdentity> read_identity(pid_t pid, int pidfd) {
  if (pid <= 0 || pidfd < 0) return make_error(EINVAL, "read_identity: no pid or pidfd");
  const std::string where = "/proc/" + std::to_string(pid);
  // One directory fd: every file below is this process's, even if the pid is reused meanwhile
  // (reads through a dead process's directory fail with ESRCH).
  PW_ASSIGN(auto dir, open_fd(where, O_RDONLY | O_DIRECTORY));
  ProcessIdentity id;
  id.pid = pid;
  {
    PW_ASSIGN(std::string text, read_below(dir.get(), where, "status"));
    if (auto r = parse_identity_status(text, id); !r) return data_error(where + "/" + r.error().message);
  }
  {
    PW_ASSIGN(std::string text, read_below(dir.get(), where, "stat"));
    auto st = parse_stat_start_time(text);
    if (!st) return data_error(where + "/" + st.error().message);
    id.start_time = *st;
    auto mm = parse_stat_mm(text);
    if (!mm) return data_error(where + "/" + mm.error().message);
    id.mm = *mm;
  }
  struct stat st {};
  if (::fstatat(dir.get(), "exe", &st, 0) != 0) return errno_error("stat " + where + "/exe");
  id.exe_dev = st.st_dev;
  id.exe_ino = st.st_ino;
  // A lookup (not fstat of an open fd) so the kernel recomputes the owner from the task's
  // dumpable flag and credentials now.
  if (::fstatat(dir.get(), "status", &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_error("stat " + where + "/status");
  id.proc_uid = st.st_uid;
  id.proc_gid = st.st_gid;
  PW_ASSIGN(id.placement, read_placement_below(dir.get(), where));
  // Last: the process the pidfd names was alive after every read above, so no other process
  // can have held this pid while we read.
  if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0)
    return errno_error("pid " + std::to_string(pid) + " is no longer the process it was");
  return id;
}

std::string lsm_policy_revision() {
  std::string out;
  if (auto aa = read_file("/sys/kernel/security/apparmor/revision")) out += "apparmor:" + std::string(trim(*aa));
  // struct selinux_kernel_status: version, sequence, enforcing, policyload, deny_unknown (u32 each).
  if (UniqueFd fd(::open("/sys/fs/selinux/status", O_RDONLY | O_CLOEXEC)); fd.valid()) {
    uint32_t status[5] = {};
    if (::pread(fd.get(), status, sizeof status, 0) == static_cast<ssize_t>(sizeof status))
      out += (out.empty() ? "" : " ") + std::string("selinux:") + std::to_string(status[3]);
  }
  return out;
}

Result<Placement> read_placement(pid_t pid) { return read_placement_of("/proc/" + std::to_string(pid)); }

Result<Placement> read_thread_placement(pid_t pid, pid_t tid) {
  return read_placement_of("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid));
}

Result<UniqueFd> open_mm_handle(pid_t pid) { return open_fd("/proc/" + std::to_string(pid) + "/mem", O_RDONLY); }

Result<bool> mm_unchanged(int mem_fd, uint64_t addr) {
  char byte = 0;
  for (;;) {
    ssize_t n = ::pread(mem_fd, &byte, 1, static_cast<off_t>(addr));
    if (n == 1) return true;
    if (n == 0) return false;  // the mm the handle was opened on has been released
    if (errno == EINTR) continue;
    return errno_error("read the process's memory at " + std::to_string(addr));
  }
}

}  // namespace prewarm
