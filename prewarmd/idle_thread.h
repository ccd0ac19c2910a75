// The threads that serve viewers (the dashboard; list and stats) run on CPU time launches leave
// idle (SCHED_IDLE): a launch that wakes takes their CPU at once, so a scrape or a query never
// slows one (at nice 10, a /metrics client asking back to back still cost launches 1.46x). On a
// machine whose CPUs launches keep busy, though, such a thread would not run at all (50 restores
// at once held a `prewarm list` 5 s), so the loop hurries one whose work has waited kLateNs: it
// then runs at the daemon's own priority until it has nothing left, and goes back.
// Nothing here waits on a lock: the loop and the thread share only atomics.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace prewarm {

class IdleThread {
 public:
  static constexpr int64_t kLateNs = 200'000'000;

  // The thread's side. Names the calling thread (top -H, tests) and makes it SCHED_IDLE (where
  // that is refused, nice +10).
  void start_here(const char* name);
  // It has work waiting since then (kept if it had some already); true if it had none before.
  // Either side may say so: the loop as it hands work over, the thread as work arrives.
  bool busy(int64_t since_ns);
  // The thread's side: its oldest work now waits since then (0: none). Work that has not waited
  // kLateNs ends a hurry: a client asking back to back keeps a thread busy, never late.
  bool pending(int64_t since_ns, int64_t now_ns);
  void idle() { pending(0, 0); }  // it has none: back to SCHED_IDLE if it was hurried

  // The loop's side: hurries the thread if its work is late. Returns the ns until it would be
  // late, to be asked again then; 0 when there is nothing to wait for.
  int64_t hurry_if_late(int64_t now_ns);
  bool hurried() const { return hurried_.load(); }

 private:
  std::atomic<pid_t> tid_{0};
  std::atomic<int64_t> since_{0};
  std::atomic<bool> hurried_{false};
  std::atomic<bool> idle_class_{false};  // SCHED_IDLE was granted (else it runs niced, never hurried)
};

}  // namespace prewarm
