// Applying the app's cwd, umask, rlimits and personality to the launcher, reversibly.
#include "restorer/task_state.h"

#include <fcntl.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <unistd.h>

namespace prewarm {
namespace {

const char* rlimit_name(int r) {
  static const char* names[] = {"CPU",   "FSIZE",   "DATA",   "STACK",   "CORE",       "RSS",
                                "NPROC", "NOFILE",  "MEMLOCK", "AS",     "LOCKS",      "SIGPENDING",
                                "MSGQUEUE", "NICE", "RTPRIO",  "RTTIME"};
  return r >= 0 && r < 16 ? names[r] : "?";
}

}  // namespace

TaskStateGuard::~TaskStateGuard() {
  if (!active_) return;
  for (auto it = old_limits_.rbegin(); it != old_limits_.rend(); ++it)
    ::setrlimit(static_cast<__rlimit_resource>(it->first), &it->second);
  ::personality(old_personality_);
  ::umask(old_umask_);
  if (old_cwd_.valid()) (void)::fchdir(old_cwd_.get());
}

Result<TaskStateGuard> apply_task_state(const pb::TaskState& t) {
  TaskStateGuard g;
  PW_ASSIGN(g.old_cwd_, open_fd(".", O_PATH | O_DIRECTORY));
  g.active_ = true;
  g.old_umask_ = ::umask(static_cast<mode_t>(t.umask() & 0777));
  int old_pers = ::personality(0xffffffff);
  if (old_pers < 0) return errno_error("read personality");
  g.old_personality_ = static_cast<uint32_t>(old_pers);
  if (t.personality() != g.old_personality_ && ::personality(t.personality()) < 0)
    return errno_error("set personality");
  if (::chdir(t.cwd().c_str()) != 0) return errno_error("change to the app's directory " + t.cwd());
  for (const auto& r : t.rlimits()) {
    int res = static_cast<int>(r.resource());
    rlimit old{};
    if (::getrlimit(static_cast<__rlimit_resource>(res), &old) != 0) return errno_error("getrlimit");
    rlimit want{r.cur(), r.max()};
    if (old.rlim_cur == want.rlim_cur && old.rlim_max == want.rlim_max) continue;
    if (::setrlimit(static_cast<__rlimit_resource>(res), &want) != 0)
      return errno_error(std::string("set RLIMIT_") + rlimit_name(res) +
                         " as the app had it (raising a hard limit needs CAP_SYS_RESOURCE)");
    g.old_limits_.emplace_back(res, old);
  }
  return g;
}

}  // namespace prewarm
