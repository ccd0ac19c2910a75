// prewarmd's log: structured journal entries under systemd, plain lines on stderr otherwise.
#pragma once

#include <syslog.h>

#include <string>
#include <utility>
#include <vector>

namespace prewarm {

using LogFields = std::vector<std::pair<std::string, std::string>>;  // e.g. {"PREWARM_APP", "calc"}

void log_event(int priority, const std::string& message, const LogFields& fields = {});

}  // namespace prewarm
