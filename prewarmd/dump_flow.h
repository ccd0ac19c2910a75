// Snapshotting a live process, shared by `prewarm dump` and prewarmd's capture: freeze, collect,
// apply the support policy, write the image, let the process go (or end it).
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "snapshot/dump.h"
#include "snapshot/proc_identity.h"

namespace prewarm {

struct DumpOutcome {
  // kRefused: the verifier said no (nothing kept); kOverBudget: the image grew past the byte cap.
  enum Status { kOk, kUnsupported, kFailed, kRefused, kOverBudget } status = kFailed;
  std::string message;                 // kFailed, kRefused, kOverBudget: what went wrong, or why
  std::vector<std::string> offenders;  // kUnsupported: one formatted line each
  DumpStats stats;
  double freeze_ms = 0;                // how long the process was stopped
  double total_ms = 0;
  int attempts = 1;  // dumps taken: more than one when a lock held at the first was released
};

// Says why the frozen process must not be dumped, or "" to go on.
using FrozenVerifier = std::function<std::string()>;

struct DumpOptions {
  bool kill = false;  // end the process once its image is written
  // Runs right after the freeze, before anything of the process is read, and again just before
  // the image is published; a reason from it ends the dump (kRefused).
  FrozenVerifier verify_frozen;
  uint64_t max_bytes = 0;  // stops the write once the image's pages exceed it (kOverBudget); 0: none
  // The inodes of the sockets the process's launch passed (LISTEN_FDS order, 0 for a non-socket),
  // when the caller knows them; a passed socket is then recognised at any fd number (an app may
  // dup fd 3 elsewhere and close it), otherwise only at fds 3 onwards.
  std::vector<uint64_t> launch_sockets;
  // The namespaces (and cgroups, if set) the process was launched in: one it is no longer in is
  // refused by name (policy::placement_offenders). Unset: not compared.
  std::optional<Placement> launched_in;
};

// Writes a complete image to `dir` or nothing at all; the process keeps running unless `kill`.
DumpOutcome dump_process(pid_t pid, const std::string& dir, const DumpOptions& opts);

}  // namespace prewarm
