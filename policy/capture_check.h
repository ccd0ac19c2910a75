// Whether root may dump a launched app now: the process frozen must be the one that became ready,
// still running as the app's user, the same program in the same address space.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "policy/support.h"
#include "snapshot/proc_identity.h"

namespace prewarm::policy {

// "" if the capture may proceed, else why not, starting with "pid N ...". `at_ready` was read
// when the app became ready, `frozen` right after the freeze; `mm_same` says the mm handle taken
// at ready still sees the process's memory (no exec since).
std::string capture_refusal(const ProcessIdentity& at_ready, const ProcessIdentity& frozen, bool mm_same,
                            uid_t app_uid, gid_t app_gid);

// What the app made or entered since its launch that a restore, which runs in its launcher's
// namespaces, cgroups and security label, would not have: one offender per namespace that
// differs from `launch`'s, for another label, and per cgroup below the launch's (one the app
// made and moved into) when `launch.cgroups` is known ("": not compared).
std::vector<Offender> placement_offenders(const Placement& launch, const Placement& now);

}  // namespace prewarm::policy
