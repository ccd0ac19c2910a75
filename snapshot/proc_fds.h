// The open file descriptors of a process, from /proc/PID/fd and /proc/PID/fdinfo.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

struct FdInfo {
  int fd = -1;
  std::string target;  // readlink: a path, or socket:[N], pipe:[N], anon_inode:[eventfd], ...
  uint64_t pos = 0;
  uint32_t flags = 0;  // as fdinfo prints them (octal), O_CLOEXEC included
  bool stat_ok = false;
  struct stat st {};
};

// Parses the "pos:" and "flags:" lines of an fdinfo file.
Result<void> parse_fdinfo(const std::string& text, FdInfo& info);
Result<std::vector<FdInfo>> read_fds(pid_t pid);

}  // namespace prewarm
