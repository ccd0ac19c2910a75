#include "prewarmd/log.h"

#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <cstdlib>

namespace prewarm {

void log_event(int priority, const std::string& message, const LogFields& fields) {
  // JOURNAL_STREAM is set by systemd when stderr goes to the journal: write structured entries.
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  if (journal) {
    std::vector<std::string> lines{"MESSAGE=" + message, "PRIORITY=" + std::to_string(priority),
                                   "SYSLOG_IDENTIFIER=prewarmd"};
    for (const auto& [k, v] : fields) lines.push_back(k + "=" + v);
    std::vector<iovec> iov;
    iov.reserve(lines.size());
    for (auto& l : lines) iov.push_back({l.data(), l.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
  }
  std::string extra;
  for (const auto& [k, v] : fields) extra += " " + k + "=" + v;
  std::fprintf(stderr, "prewarmd: %s%s%s\n", message.c_str(), extra.empty() ? "" : " |", extra.c_str());
}

}  // namespace prewarm
