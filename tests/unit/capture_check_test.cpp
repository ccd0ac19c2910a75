// Tests of capture_refusal on synthetic identities: each way a frozen process can differ from
// the one that became ready (or from the app's user) is refused with a reason naming it.
#include "policy/capture_check.h"

#include <gtest/gtest.h>

namespace prewarm::policy {
namespace {

constexpr uid_t kApp = 1001;

ProcessIdentity ready() {
  ProcessIdentity id;
  id.pid = 123;
  id.ruid = id.euid = id.suid = id.fsuid = kApp;
  id.rgid = id.egid = id.sgid = id.fsgid = kApp;
  id.groups = {27, 1001};
  id.start_time = 5000;
  id.mm.start_code = 0x5555'0000'0000;
  id.mm.start_stack = 0x7ffc'0000'1000;
  id.mm.arg_start = 0x7ffc'0000'2000;
  id.exe_dev = 8;
  id.exe_ino = 4242;
  id.proc_uid = kApp;
  id.proc_gid = kApp;
  return id;
}

std::string refusal(const ProcessIdentity& frozen, bool mm_same = true) {
  return capture_refusal(ready(), frozen, mm_same, kApp, kApp);
}

TEST(CaptureRefusal, TheSameProcessAsItsUserMayBeDumped) { EXPECT_EQ(refusal(ready()), ""); }

TEST(CaptureRefusal, AnotherStartTimeIsAnotherProcess) {
  auto f = ready();
  f.start_time = 5001;
  EXPECT_EQ(refusal(f), "pid 123 is no longer the launched process (start time differs)");
  f = ready();
  f.pid = 124;
  EXPECT_NE(refusal(f), "");
}

TEST(CaptureRefusal, EveryChangedIdIsNamed) {
  struct Case {
    unsigned ProcessIdentity::*field;
    const char* name;
  } cases[] = {{&ProcessIdentity::ruid, "real uid"},       {&ProcessIdentity::euid, "effective uid"},
               {&ProcessIdentity::suid, "saved uid"},      {&ProcessIdentity::fsuid, "filesystem uid"},
               {&ProcessIdentity::rgid, "real gid"},       {&ProcessIdentity::egid, "effective gid"},
               {&ProcessIdentity::sgid, "saved gid"},      {&ProcessIdentity::fsgid, "filesystem gid"}};
  for (const auto& c : cases) {
    auto f = ready();
    f.*c.field = 1002;
    EXPECT_EQ(refusal(f), std::string("pid 123 changed its ") + c.name + " from 1001 to 1002 since it was launched");
  }
}

TEST(CaptureRefusal, ALaunchThatWasNotTheAppsUserAtReadyIsRefused) {
  auto r = ready();
  r.euid = 0;
  auto f = r;
  EXPECT_EQ(capture_refusal(r, f, true, kApp, kApp),
            "pid 123 did not run as the app's user when it became ready (its effective uid was 0, the app's is 1001)");
  r = ready();
  EXPECT_NE(capture_refusal(r, r, true, kApp, 1002), "");  // registered under another group
}

TEST(CaptureRefusal, ChangedGroupsOrCapabilitiesAreRefused) {
  auto f = ready();
  f.groups = {27};
  EXPECT_EQ(refusal(f), "pid 123 changed its supplementary groups since it was launched");
  f = ready();
  f.cap_eff = 1;
  EXPECT_EQ(refusal(f), "pid 123 changed its capabilities since it was launched");
}

TEST(CaptureRefusal, ANotDumpableProcessIsRefused) {
  auto f = ready();
  f.proc_uid = 0;
  EXPECT_EQ(refusal(f), "pid 123 is not dumpable (it ran a setuid or unreadable program)");
  auto r = ready();
  r.proc_uid = 0;  // already not dumpable when it became ready
  EXPECT_NE(capture_refusal(r, ready(), true, kApp, kApp), "");
}

TEST(CaptureRefusal, AnExecSinceReadyIsRefused) {
  EXPECT_EQ(refusal(ready(), /*mm_same=*/false), "pid 123 ran exec after it became ready");
  auto f = ready();
  f.exe_ino = 4243;
  EXPECT_EQ(refusal(f), "pid 123 runs another executable than when it became ready (exe differs)");
  f = ready();
  f.exe_dev = 9;
  EXPECT_NE(refusal(f), "");
  f = ready();
  f.mm.arg_start += 0x1000;
  EXPECT_EQ(refusal(f), "pid 123 ran exec after it became ready (its memory layout was replaced)");
}

TEST(CaptureRefusal, TheMostTellingReasonComesFirst) {
  // What `su` does to a launched process: new euid, not dumpable, new mm, new exe.
  auto f = ready();
  f.euid = f.suid = f.fsuid = 0;
  f.proc_uid = 0;
  f.exe_ino = 1;
  EXPECT_EQ(refusal(f, false), "pid 123 changed its effective uid from 1001 to 0 since it was launched");
}

TEST(CaptureRefusal, ARootAppIsCheckedOnItsIdsNotOnDumpable) {
  auto r = ready();
  r.ruid = r.euid = r.suid = r.fsuid = 0;
  r.rgid = r.egid = r.sgid = r.fsgid = 0;
  r.proc_uid = r.proc_gid = 0;
  EXPECT_EQ(capture_refusal(r, r, true, 0, 0), "");
  auto f = r;
  f.ruid = f.euid = f.suid = f.fsuid = 65534;
  EXPECT_EQ(capture_refusal(r, f, true, 0, 0), "pid 123 changed its real uid from 0 to 65534 since it was launched");
  EXPECT_EQ(capture_refusal(r, r, false, 0, 0), "pid 123 ran exec after it became ready");
}

Placement launched() {
  Placement p;
  for (size_t i = 0; i < p.ns.size(); ++i) p.ns[i] = 4026531830 + i;
  p.cgroups = "0::/user.slice/user-1001.slice/session-3.scope\n";
  return p;
}

TEST(PlacementOffenders, TheLaunchsOwnNamespacesAndCgroupPass) {
  EXPECT_TRUE(placement_offenders(launched(), launched()).empty());
}

TEST(PlacementOffenders, EachNamespaceTheAppMadeIsNamed) {
  auto now = launched();
  now.ns[0] = 4026532500;  // mnt
  now.ns[3] = 4026532600;  // net
  auto o = placement_offenders(launched(), now);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_EQ(o[0].name, "mnt:[4026532500]");
  EXPECT_EQ(format_offender(o[0]),
            "mnt:[4026532500]: a mnt namespace other than its launch's (mnt:[4026531830]), made or entered by the "
            "app (unshare, setns); a restore runs in its launcher's namespaces, without its mounts");
  EXPECT_EQ(o[1].name, "net:[4026532600]");
  EXPECT_NE(o[1].reason.find("network devices"), std::string::npos) << o[1].reason;
}

TEST(PlacementOffenders, ANamespaceUnknownOnEitherSideIsNotCompared) {
  auto launch = launched(), now = launched();
  launch.ns[6] = 0;  // no time namespaces on that kernel
  now.ns[6] = 99;
  now.ns[5] = 0;
  EXPECT_TRUE(placement_offenders(launch, now).empty());
}

// An app confined at its exec (an AppArmor profile attached to its path) or by change_profile:
// restored, it would run under the launcher's label.
TEST(PlacementOffenders, AnotherSecurityLabelIsNamed) {
  auto launch = launched(), now = launched();
  launch.lsm_label = now.lsm_label = "unconfined";
  EXPECT_TRUE(placement_offenders(launch, now).empty());
  now.lsm_label = "/usr/bin/evince (enforce)";
  auto o = placement_offenders(launch, now);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].name, "security label /usr/bin/evince (enforce)");
  EXPECT_NE(o[0].reason.find("not its launch's (unconfined)"), std::string::npos) << o[0].reason;
}

TEST(PlacementOffenders, ACgroupMoveIsNamedOnlyWhenTheLaunchsIsKnown) {
  auto now = launched();
  now.cgroups = "0::/user.slice/user-1001.slice/session-3.scope/mine\n";
  auto o = placement_offenders(launched(), now);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(format_offender(o[0]),
            "cgroup 0::/user.slice/user-1001.slice/session-3.scope/mine: below its launch's cgroup "
            "(/user.slice/user-1001.slice/session-3.scope): the app made it and moved itself there; a restore "
            "stays in its launcher's");
  // Moved elsewhere, as a desktop moves what it started into a scope of its own: the restore's
  // launcher is moved the same way, so nothing is lost.
  auto scope = launched();
  scope.cgroups = "0::/user.slice/user-1001.slice/user@1001.service/app.slice/app-calc-42.scope\n";
  EXPECT_TRUE(placement_offenders(launched(), scope).empty());
  auto prefix = launched();  // a sibling whose name starts like the launch's is not below it
  prefix.cgroups = "0::/user.slice/user-1001.slice/session-3.scope2\n";
  EXPECT_TRUE(placement_offenders(launched(), prefix).empty());
  auto unknown = launched();
  unknown.cgroups.clear();
  EXPECT_TRUE(placement_offenders(unknown, now).empty());
  // A v1 hierarchy among several: the line that moved is the one named.
  auto v1 = launched();
  v1.cgroups = "12:cpu:/\n0::/a\n";
  auto moved = v1;
  moved.cgroups = "12:cpu:/x\n0::/a\n";
  o = placement_offenders(v1, moved);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].name, "cgroup 12:cpu:/x");
  // A hierarchy the launch did not have is not compared.
  moved.cgroups = "12:cpu:/\n0::/a\n13:name=zdtmtst:/sub\n";
  EXPECT_TRUE(placement_offenders(v1, moved).empty());
}

// A pid namespace unshared for children not yet forked names none yet: still not the launch's.
TEST(PlacementOffenders, APidNamespaceForChildrenNotYetMadeIsNamed) {
  auto now = launched();
  now.ns[7] = Placement::kUnavailable;
  auto o = placement_offenders(launched(), now);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].name, "pid_for_children:[none yet]");
  EXPECT_NE(o[0].reason.find("the pid namespace its children would be in"), std::string::npos) << o[0].reason;
}

}  // namespace
}  // namespace prewarm::policy
