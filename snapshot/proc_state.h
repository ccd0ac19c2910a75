// Per-process facts from /proc/PID/{stat,status,auxv,exe}: mm layout, signal masks, threads.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

struct MmLayout {
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0;
  uint64_t start_brk = 0, start_stack = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};

struct ProcStatus {
  std::string name;
  int threads = 0;
  uint64_t sig_blocked = 0, sig_ignored = 0, sig_caught = 0, sig_pending = 0, shd_pending = 0;
  uid_t uid = 0;
  uint32_t umask = 022;
};

// Parses /proc/PID/stat text; the fields after the command name are counted from field 3.
Result<MmLayout> parse_stat_mm(const std::string& stat_text);
Result<ProcStatus> parse_status(const std::string& status_text);

Result<MmLayout> read_mm_layout(pid_t pid);
Result<ProcStatus> read_status(pid_t pid);
Result<std::string> read_auxv(pid_t pid);
Result<std::string> read_exe_path(pid_t pid);
Result<std::string> read_cwd(pid_t pid);
Result<uint32_t> read_personality(pid_t pid);
int count_threads(pid_t pid);

// /proc/PID/limits: soft and hard limit of every resource, in RLIMIT_* order.
Result<std::vector<rlimit>> parse_limits(const std::string& text);
Result<std::vector<rlimit>> read_limits(pid_t pid);  // -errno on failure

}  // namespace prewarm
