// Reads the VMA list of a process from /proc.
#include "snapshot/proc_maps.h"

#include <sys/mman.h>

#include <charconv>
#include <sstream>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

std::string proc_path(pid_t pid, const char* file) {
  return pid == 0 ? std::string("/proc/self/") + file
                  : "/proc/" + std::to_string(pid) + "/" + file;
}

bool parse_hex(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_dec(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 10);
  return ec == std::errc() && p == s.data() + s.size();
}

// "start-end perms offset maj:min inode   name"
bool parse_header(const std::string& line, Vma& vma) {
  std::string_view rest(line);
  auto next = [&](std::string_view& field) {
    size_t b = rest.find_first_not_of(' ');
    if (b == std::string_view::npos) return false;
    rest.remove_prefix(b);
    size_t e = rest.find(' ');
    field = rest.substr(0, e);
    rest.remove_prefix(e == std::string_view::npos ? rest.size() : e);
    return true;
  };
  std::string_view range, perms, off, dev, ino;
  if (!next(range) || !next(perms) || !next(off) || !next(dev) || !next(ino)) return false;
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return false;
  if (!parse_hex(range.substr(0, dash), vma.start) || !parse_hex(range.substr(dash + 1), vma.end))
    return false;
  if (perms.size() != 4) return false;
  vma.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
  vma.shared = perms[3] == 's';
  if (!parse_hex(off, vma.offset)) return false;
  size_t colon = dev.find(':');
  uint64_t maj = 0, min = 0;
  if (colon == std::string_view::npos || !parse_hex(dev.substr(0, colon), maj) ||
      !parse_hex(dev.substr(colon + 1), min))
    return false;
  vma.dev_major = static_cast<uint32_t>(maj);
  vma.dev_minor = static_cast<uint32_t>(min);
  if (!parse_dec(ino, vma.inode)) return false;
  size_t b = rest.find_first_not_of(' ');
  vma.name = b == std::string_view::npos ? std::string() : std::string(rest.substr(b));
  return vma.start < vma.end;
}

bool is_header(const std::string& line) {
  // Header lines start with a hex range; smaps detail lines start with "Name:".
  size_t dash = line.find('-');
  size_t colon = line.find(':');
  return dash != std::string::npos && dash > 0 && (colon == std::string::npos || dash < colon) &&
         std::isxdigit(static_cast<unsigned char>(line[0]));
}

}  // namespace

bool Vma::is_deleted() const {
  static constexpr std::string_view kSuffix = " (deleted)";
  return name.size() > kSuffix.size() && name.ends_with(kSuffix);
}

Result<std::vector<Vma>> parse_smaps(const std::string& text) {
  std::vector<Vma> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.starts_with("VmFlags:")) {
      if (out.empty()) return data_error("smaps: VmFlags before any mapping");
      out.back().vm_flags = parse_vm_flags(std::string_view(line).substr(8));
      continue;
    }
    if (!is_header(line)) continue;
    Vma vma;
    if (!parse_header(line, vma)) return data_error("smaps: cannot parse line: " + line);
    if (!out.empty() && vma.start < out.back().end)
      return data_error("smaps: mappings out of order at " + line);
    out.push_back(std::move(vma));
  }
  return out;
}

Result<std::vector<Vma>> read_smaps(pid_t pid) {
  PW_ASSIGN(std::string text, read_file(proc_path(pid, "smaps")));
  return parse_smaps(text);
}

Result<std::vector<Vma>> read_maps(pid_t pid) {
  PW_ASSIGN(std::string text, read_file(proc_path(pid, "maps")));
  return parse_smaps(text);
}

}  // namespace prewarm
