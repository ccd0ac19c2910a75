// Readers for the small per-process /proc files.
#include "snapshot/proc_state.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <sstream>
#include <vector>

#include "snapshot/dir_entries.h"
#include "snapshot/proc_stat.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::string proc_file(pid_t pid, const char* f) { return "/proc/" + std::to_string(pid) + "/" + f; }

bool hex64(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

// The whole of `s` (after leading blanks, up to a trailing newline) as a number in `base`.
template <typename T>
bool number(std::string_view s, T& out, int base = 10) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

}  // namespace

Result<MmLayout> parse_stat_mm(const std::string& text) {
  PW_ASSIGN(ProcStat s, parse_proc_stat(text, 51));
  MmLayout m;
  PW_ASSIGN(m.start_code, s.number(26));
  PW_ASSIGN(m.end_code, s.number(27));
  PW_ASSIGN(m.start_stack, s.number(28));
  PW_ASSIGN(m.start_data, s.number(45));
  PW_ASSIGN(m.end_data, s.number(46));
  PW_ASSIGN(m.start_brk, s.number(47));
  PW_ASSIGN(m.arg_start, s.number(48));
  PW_ASSIGN(m.arg_end, s.number(49));
  PW_ASSIGN(m.env_start, s.number(50));
  PW_ASSIGN(m.env_end, s.number(51));
  return m;
}

Result<ProcStatus> parse_status(const std::string& text) {
  ProcStatus s;
  std::istringstream in(text);
  std::string line;
  bool ok_mask = true;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string val = line.substr(colon + 1);
    val.erase(0, val.find_first_not_of(" \t"));
    if (key == "Name") s.name = val;
    else if (key == "Threads") ok_mask &= number(val, s.threads);
    else if (key == "Uid") ok_mask &= number(std::string_view(val).substr(0, val.find_first_of(" \t")), s.uid);
    else if (key == "Umask") ok_mask &= number(val, s.umask, 8);
    else if (key == "SigBlk") ok_mask &= hex64(val, s.sig_blocked);
    else if (key == "SigIgn") ok_mask &= hex64(val, s.sig_ignored);
    else if (key == "SigCgt") ok_mask &= hex64(val, s.sig_caught);
    else if (key == "SigPnd") ok_mask &= hex64(val, s.sig_pending);
    else if (key == "ShdPnd") ok_mask &= hex64(val, s.shd_pending);
  }
  if (!ok_mask || s.threads == 0) return data_error("status: unexpected format");
  return s;
}

Result<MmLayout> read_mm_layout(pid_t pid) {
  PW_ASSIGN(std::string t, read_file(proc_file(pid, "stat")));
  return parse_stat_mm(t);
}

Result<ProcStatus> read_status(pid_t pid) {
  PW_ASSIGN(std::string t, read_file(proc_file(pid, "status")));
  return parse_status(t);
}

Result<std::string> read_auxv(pid_t pid) { return read_file(proc_file(pid, "auxv")); }

namespace {
Result<std::string> read_link(const std::string& link) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) return errno_error("readlink " + link);
  return std::string(buf, static_cast<size_t>(n));
}
}  // namespace

Result<std::string> read_exe_path(pid_t pid) { return read_link(proc_file(pid, "exe")); }
Result<std::string> read_cwd(pid_t pid) { return read_link(proc_file(pid, "cwd")); }

Result<uint32_t> read_personality(pid_t pid) {
  PW_ASSIGN(std::string t, read_file(proc_file(pid, "personality")));
  uint32_t v = 0;
  if (!number(t, v, 16)) return data_error("personality: not a hex number");
  return v;
}

int count_threads(pid_t pid) {
  auto tids = dir_names(proc_file(pid, "task"));
  if (!tids) return -tids.error().code;
  return static_cast<int>(tids->size());
}

}  // namespace prewarm

namespace prewarm {

Result<std::vector<rlimit>> parse_limits(const std::string& text) {
  // printf("%-25s %-20s %-20s %-10s\n") per line, resources in RLIMIT_* order after a header.
  std::vector<rlimit> out;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  auto value = [](std::string_view v, rlim_t& out) {
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (v == "unlimited") return out = RLIM_INFINITY, true;
    return number(v, out);
  };
  while (std::getline(in, line) && out.size() < RLIM_NLIMITS) {
    if (line.size() < 67) return data_error("limits: short line");
    rlimit r{};
    if (!value(std::string_view(line).substr(26, 20), r.rlim_cur) ||
        !value(std::string_view(line).substr(47, 20), r.rlim_max))
      return data_error("limits: unexpected value in: " + line);
    out.push_back(r);
  }
  if (out.size() != RLIM_NLIMITS) return data_error("limits: " + std::to_string(out.size()) + " resources");
  return out;
}

Result<std::vector<rlimit>> read_limits(pid_t pid) {
  PW_ASSIGN(std::string t, read_file(proc_file(pid, "limits")));
  return parse_limits(t);
}

}  // namespace prewarm
