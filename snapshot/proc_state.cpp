// Readers for the small per-process /proc files.
#include "snapshot/proc_state.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <sstream>
#include <vector>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::string proc_file(pid_t pid, const char* f) { return "/proc/" + std::to_string(pid) + "/" + f; }

bool hex64(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<MmLayout> parse_stat_mm(const std::string& text) {
  // comm may contain spaces and ')': the fields start after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return data_error("stat: no command name");
  std::istringstream in(text.substr(close + 1));
  std::vector<std::string> f{"pid", "comm"};  // index i holds field i+1
  std::string tok;
  while (in >> tok) f.push_back(tok);
  if (f.size() < 51) return data_error("stat: only " + std::to_string(f.size()) + " fields");
  auto field = [&](int n) { return std::stoull(f[n - 1]); };
  MmLayout m;
  m.start_code = field(26);
  m.end_code = field(27);
  m.start_stack = field(28);
  m.start_data = field(45);
  m.end_data = field(46);
  m.start_brk = field(47);
  m.arg_start = field(48);
  m.arg_end = field(49);
  m.env_start = field(50);
  m.env_end = field(51);
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
    else if (key == "Threads") s.threads = std::stoi(val);
    else if (key == "Uid") s.uid = static_cast<uid_t>(std::stoul(val));
    else if (key == "Umask") s.umask = static_cast<uint32_t>(std::stoul(val, nullptr, 8));
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
  return static_cast<uint32_t>(std::stoul(t, nullptr, 16));
}

int count_threads(pid_t pid) {
  std::string dir = proc_file(pid, "task");
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -errno;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

}  // namespace prewarm
