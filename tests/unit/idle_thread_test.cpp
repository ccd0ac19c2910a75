// Tests the viewer threads' scheduling on the real kernel: SCHED_IDLE from the start, hurried to
// the daemon's own class only once work has waited IdleThread::kLateNs, and back when it is done.
#include "prewarmd/idle_thread.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "snapshot/clock.h"

namespace prewarm {
namespace {

TEST(IdleThread, IdleUntilLateWorkThenBackWhenDone) {
  IdleThread w;
  std::atomic<pid_t> tid{0};
  std::atomic<int> step{0};
  std::thread t([&] {
    w.start_here("pw-idle-test");
    tid = ::gettid();
    step = 1;
    while (step.load() != 2) ::usleep(1000);
    w.idle();  // its work done
    step = 3;
    while (step.load() != 4) ::usleep(1000);
  });
  while (step.load() != 1) ::usleep(1000);
  ASSERT_EQ(::sched_getscheduler(tid), SCHED_IDLE);

  const int64_t now = mono_ns();
  EXPECT_EQ(w.hurry_if_late(now), 0) << "no work: nothing to wait for";
  EXPECT_TRUE(w.busy(now - IdleThread::kLateNs / 2));
  EXPECT_FALSE(w.busy(now)) << "busy since the first work, not the latest";
  const int64_t left = w.hurry_if_late(now);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, IdleThread::kLateNs / 2);
  EXPECT_EQ(::sched_getscheduler(tid), SCHED_IDLE) << "hurried before its work was late";

  EXPECT_EQ(w.hurry_if_late(now + IdleThread::kLateNs), 0);
  EXPECT_TRUE(w.hurried());
  EXPECT_EQ(::sched_getscheduler(tid), SCHED_OTHER);

  // Work that has not waited long (a client asking back to back) ends the hurry.
  w.pending(mono_ns(), mono_ns());
  EXPECT_FALSE(w.hurried());
  EXPECT_EQ(::sched_getscheduler(tid), SCHED_IDLE);
  EXPECT_EQ(w.hurry_if_late(mono_ns()) > 0, true) << "fresh work: asked again later";
  EXPECT_EQ(w.hurry_if_late(mono_ns() + IdleThread::kLateNs + 1), 0);
  EXPECT_EQ(::sched_getscheduler(tid), SCHED_OTHER) << "that work, once late, is hurried again";

  step = 2;
  while (step.load() != 3) ::usleep(1000);
  EXPECT_EQ(::sched_getscheduler(tid), SCHED_IDLE) << "still hurried with no work left";
  EXPECT_FALSE(w.hurried());
  step = 4;
  t.join();
}

}  // namespace
}  // namespace prewarm
