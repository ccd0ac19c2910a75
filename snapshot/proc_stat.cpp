// Parsing /proc/PID/stat.
#include "snapshot/proc_stat.h"

#include <charconv>

#include "snapshot/unique_fd.h"

namespace prewarm {

std::optional<std::string_view> ProcStat::field(size_t n) const {
  if (n < 1 || n > fields.size()) return std::nullopt;
  return fields[n - 1];
}

Result<uint64_t> ProcStat::number(size_t n) const {
  auto f = field(n);
  if (!f) return data_error("stat: no field " + std::to_string(n) + " (the line has " +
                            std::to_string(fields.size()) + ")");
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(f->data(), f->data() + f->size(), v);
  if (f->empty() || ec != std::errc() || p != f->data() + f->size())
    return data_error("stat: field " + std::to_string(n) + " is not a number: " + std::string(*f));
  return v;
}

Result<ProcStat> parse_proc_stat(std::string_view text, size_t min_fields) {
  const size_t open = text.find(" (");
  const size_t close = text.rfind(')');
  if (open == std::string_view::npos || open == 0 || close == std::string_view::npos || close < open + 2)
    return data_error("stat: no (command name)");
  ProcStat s;
  const std::string_view pid = text.substr(0, open);
  if (pid.find_first_not_of("0123456789") != std::string_view::npos) return data_error("stat: no pid");
  s.fields.emplace_back(pid);
  s.fields.emplace_back(text.substr(open + 2, close - open - 2));
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == ' ')) rest.remove_suffix(1);
  // Fields past comm are single-space separated and hold no blanks of their own.
  while (!rest.empty()) {
    if (rest.front() != ' ') return data_error("stat: no space between fields after the command name");
    rest.remove_prefix(1);
    const size_t e = std::min(rest.find(' '), rest.size());
    if (e == 0) return data_error("stat: an empty field");
    s.fields.emplace_back(rest.substr(0, e));
    rest.remove_prefix(e);
  }
  if (s.fields.size() < 3 || s.fields[2].size() != 1) return data_error("stat: no process state");
  if (s.fields.size() < min_fields)
    return data_error("stat: only " + std::to_string(s.fields.size()) + " fields (truncated?)");
  return s;
}

Result<ProcStat> read_proc_stat(pid_t pid, size_t min_fields) {
  const std::string path = pid == 0 ? std::string("/proc/self/stat") : "/proc/" + std::to_string(pid) + "/stat";
  PW_ASSIGN(std::string text, read_file(path));
  return parse_proc_stat(text, min_fields);
}

}  // namespace prewarm
