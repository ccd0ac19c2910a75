#include "prewarmd/idle_thread.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "prewarmd/log.h"

namespace prewarm {

void IdleThread::start_here(const char* name) {
  ::pthread_setname_np(::pthread_self(), name);
  tid_ = ::gettid();
  sched_param none{};
  if (::sched_setscheduler(tid_, SCHED_IDLE, &none) == 0) {
    idle_class_ = true;
    return;
  }
  const auto self = static_cast<id_t>(tid_.load());
  errno = 0;
  const int base = ::getpriority(PRIO_PROCESS, self);  // the daemon's own (-1 is a valid value)
  if (errno == 0) ::setpriority(PRIO_PROCESS, self, std::min(base + 10, 19));
}

bool IdleThread::busy(int64_t since_ns) {
  int64_t none = 0;
  return since_.compare_exchange_strong(none, since_ns);
}

bool IdleThread::pending(int64_t since_ns, int64_t now_ns) {
  const bool was_idle = since_.exchange(since_ns) == 0;
  sched_param none{};
  if ((since_ns == 0 || now_ns - since_ns < kLateNs) && hurried_.exchange(false))
    ::sched_setscheduler(tid_, SCHED_IDLE, &none);
  return was_idle;
}

int64_t IdleThread::hurry_if_late(int64_t now_ns) {
  const int64_t since = since_.load();
  if (since == 0 || !idle_class_ || hurried_) return 0;
  if (now_ns - since < kLateNs) return kLateNs - (now_ns - since);
  if (hurried_.exchange(true)) return 0;
  // The daemon's own class and nice: as any launch, no more.
  sched_param none{};
  if (::sched_setscheduler(tid_, SCHED_OTHER, &none) != 0) {
    log_event(LOG_WARNING, "cannot raise a viewer thread from SCHED_IDLE; it waits for idle CPU time");
    idle_class_ = false;  // not tried again
  }
  return 0;
}

}  // namespace prewarm
