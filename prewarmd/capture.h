// A capture, run in a child of prewarmd: dump the ready app, record the files it depends on,
// compute the snapshot key. The outcome goes to INCOMING.result.json for the daemon to publish.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "snapshot/proc_identity.h"

namespace prewarm {

struct CaptureResult {
  std::string status = "failed";  // "ok", "unsupported", "refused", "rejected" (over budget), "failed"
  std::string message;
  std::string key;
  std::vector<FileRecord> files;
  double freeze_ms = 0;
  std::string page_finder;  // how the dump found the pages to store (DumpStats::page_finder)
};

// What the daemon hands the capture child. The fds are the daemon's (inherited across fork);
// the child closes its copies before it drops to the app's user.
struct CaptureRequest {
  pid_t pid = 0;
  int pidfd = -1;            // bound to the launched process
  int mem_fd = -1;           // open_mm_handle() taken when the app became ready
  ProcessIdentity at_ready;  // read_identity() when the app became ready
  std::optional<Placement> launched_in;  // the launcher's namespaces and cgroups when it asked
  uid_t uid = 0;             // the app's registered user and group
  gid_t gid = 0;
  unsigned delay_ms = 0;
  uint64_t max_image_bytes = 0;  // what the store could still admit for this user (0: no cap)
  std::string incoming;
  policy::LaunchContext ctx;
  std::vector<uint64_t> launch_sockets;  // inodes of the sockets the launch passed (LISTEN_FDS)
  std::vector<std::string> argv;
  std::string cwd;
  std::vector<std::string> watch;
};

// Exit codes of the capture child; the result file says the same in words.
inline constexpr int kCaptureOk = 0;
inline constexpr int kCaptureFailed = 1;
inline constexpr int kCaptureUnsupported = 3;
inline constexpr int kCaptureRefused = 4;

// Dumps req.pid only if, frozen, it is still the process that became ready (same start time,
// credentials, groups, capabilities, executable, mm; dumpable) running as req.uid/req.gid
// (status "refused" otherwise, no image). Then drops to the app's user (req.at_ready.groups,
// req.gid, req.uid; not if req.uid is 0) before recording and hashing any file, so a file that
// user cannot read fails the capture. Returns the exit code above; the result file is written
// in every case it can be. Changes this process's credentials: call it in a child only.
int run_capture_child(const CaptureRequest& req);

// Reads (and removes) the result; a missing or garbled file is a failed capture.
CaptureResult read_capture_result(const std::string& incoming);

}  // namespace prewarm
