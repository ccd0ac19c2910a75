// The one parser of /proc/PID/stat (and /proc/PID/task/TID/stat) lines.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

struct ProcStat {
  // fields[i] is field i+1 of proc(5): [0] pid, [1] comm without its parentheses, [2] state...
  std::vector<std::string> fields;

  // Field n counting from 1 as in proc(5); nullopt past the end of the line.
  std::optional<std::string_view> field(size_t n) const;
  // Field n as an unsigned decimal; an error naming the field when absent or not a number.
  Result<uint64_t> number(size_t n) const;
  char state() const { return fields[2][0]; }  // the parser guarantees field 3
};

// "pid (comm) state ...": comm may hold spaces, parentheses and ')', so it ends at the LAST ')'.
// A line without "pid (", a ')' after it or a state after that is an error, as is fewer than
// `min_fields` fields (a truncated line).
Result<ProcStat> parse_proc_stat(std::string_view text, size_t min_fields = 3);

// /proc/PID/stat; pid 0 is this process.
Result<ProcStat> read_proc_stat(pid_t pid, size_t min_fields = 3);

}  // namespace prewarm
