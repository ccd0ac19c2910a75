// Reading open descriptors of another process.
#include "snapshot/proc_fds.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <sstream>

#include "snapshot/dir_entries.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

Result<void> parse_fdinfo(const std::string& text, FdInfo& info) {
  std::istringstream in(text);
  std::string key;
  bool have_pos = false, have_flags = false;
  while (in >> key) {
    if (key == "pos:") {
      in >> info.pos;
      have_pos = !in.fail();
    } else if (key == "flags:") {
      in >> std::oct >> info.flags >> std::dec;
      have_flags = !in.fail();
    } else {
      std::string rest;
      std::getline(in, rest);
    }
  }
  if (!have_pos || !have_flags) return data_error("fdinfo: no pos/flags");
  return ok();
}

Result<std::vector<FdInfo>> read_fds(pid_t pid) {
  const std::string base = "/proc/" + std::to_string(pid);
  PW_ASSIGN(std::vector<int> fds, dir_numbers(base + "/fd"));
  std::vector<FdInfo> out;
  for (int fd : fds) {
    FdInfo info;
    info.fd = fd;
    std::string link = base + "/fd/" + std::to_string(fd);
    char buf[PATH_MAX];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    if (n < 0) continue;  // closed meanwhile (cannot happen while frozen, except by a race)
    info.target.assign(buf, static_cast<size_t>(n));
    info.stat_ok = ::stat(link.c_str(), &info.st) == 0;
    PW_ASSIGN(std::string fdinfo, read_file(base + "/fdinfo/" + std::to_string(fd)));
    PW_TRY(parse_fdinfo(fdinfo, info));
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace prewarm
