#include "prewarmd/capture.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "policy/capture_check.h"
#include "prewarmd/dump_flow.h"
#include "prewarmd/file_records.h"
#include "prewarmd/protocol.h"
#include "prewarmd/registry.h"
#include "snapshot/image.h"

namespace prewarm {

// The result file the capture child leaves for prewarmd: every field required.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CaptureResult, status, message, key, files, freeze_ms, page_finder)

namespace {

using nlohmann::json;

std::string result_path(const std::string& incoming) { return incoming + ".result.json"; }

// Turns a dump's outcome into the result; false if the capture ends there.
bool take_dump(const DumpOutcome& d, CaptureResult& r) {
  r.freeze_ms = d.freeze_ms;
  r.page_finder = d.stats.page_finder;
  switch (d.status) {
    case DumpOutcome::kOk: return true;
    case DumpOutcome::kRefused: r.status = "refused", r.message = d.message; break;
    case DumpOutcome::kOverBudget:
      r.status = "rejected";
      r.message = d.message + ", more than the store budget and this user's share leave room for";
      break;
    case DumpOutcome::kUnsupported:
      r.status = "unsupported";
      for (const auto& o : d.offenders) r.message += (r.message.empty() ? "" : "; ") + o;
      break;
    case DumpOutcome::kFailed: r.message = d.message; break;
  }
  return false;
}

// What the snapshot depends on, recorded with whatever permissions this process has now, and
// the key over it.
void record_dependencies(const pb::Snapshot& snap, const policy::LaunchContext& ctx,
                         const std::vector<std::string>& argv, const std::string& cwd,
                         const std::vector<std::string>& watch, CaptureResult& r) {
  for (const auto& path : dependency_paths(snap, argv, cwd, watch)) {
    // Records travel as JSON: such a name would arrive altered and the snapshot be stale at
    // once, so every launch would start cold and capture again.
    if (!proto::is_utf8(path)) {
      r.status = "unsupported";
      r.message = "the app uses a file whose name is not UTF-8 (" + path + ")";
      return;
    }
    auto rec = record_file(path);
    if (!rec) {
      r.message = "cannot record " + path + ": " + rec.error().describe();
      return;
    }
    r.files.push_back(std::move(*rec));
  }
  // A file that changed between the dump and its hashing would poison the key.
  if (std::string change = first_change(r.files); !change.empty()) {
    r.message = change + " during the capture";
    return;
  }
  r.key = policy::snapshot_key(ctx, r.files);
  r.status = "ok";
}

// The frozen process checked against what it was at ready; "" if it may be dumped.
std::string verify_frozen(const CaptureRequest& req) {
  const std::string who = "pid " + std::to_string(req.pid);
  auto now = read_identity(req.pid, req.pidfd);
  if (!now) return who + ": cannot read its identity: " + now.error().describe();
  if (req.mem_fd < 0) return who + ": no memory handle from its ready point, so an exec cannot be ruled out";
  auto same = mm_unchanged(req.mem_fd, req.at_ready.mm.start_stack);
  if (!same) return who + ": cannot tell whether it ran exec: " + same.error().describe();
  return policy::capture_refusal(req.at_ready, *now, *same, req.uid, req.gid);
}

// For good: groups, gid, uid, each checked, then root must be out of reach.
Result<void> become_app_user(uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (::setgroups(groups.size(), groups.data()) != 0) return errno_error("setgroups");
  if (::setresgid(gid, gid, gid) != 0) return errno_error("setresgid " + std::to_string(gid));
  if (::setresuid(uid, uid, uid) != 0) return errno_error("setresuid " + std::to_string(uid));
  uid_t ru = 0, eu = 0, su = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  if (::getresuid(&ru, &eu, &su) != 0 || ::getresgid(&rg, &eg, &sg) != 0) return errno_error("getresuid");
  if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid)
    return data_error("the credentials did not change to uid " + std::to_string(uid));
  if (::setresuid(0, 0, 0) == 0) return data_error("root could be regained after dropping to uid " + std::to_string(uid));
  // The kernel leaves a process dumpable after a setuid when fs.suid_dumpable is 1; the app's
  // user must not be able to ptrace this process and write its result.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno_error("prctl PR_SET_DUMPABLE");
  return ok();
}

// Every fd but stdio and `keep`: the daemon's sockets, the image, the handles to the app.
void close_all_but(int keep) {
  if (keep > 3) ::close_range(3, static_cast<unsigned>(keep) - 1, 0);
  ::close_range(static_cast<unsigned>(std::max(keep, 2)) + 1, ~0u, 0);
}

CaptureResult capture_checked(const CaptureRequest& req, int result_fd) {
  CaptureResult r;
  // 1. The image, only of the process that became ready, complete or not at all.
  auto verify = [&] { return verify_frozen(req); };
  const DumpOptions opts{.verify_frozen = verify,
                         .max_bytes = req.max_image_bytes,
                         .launch_sockets = req.launch_sockets,
                         .launched_in = req.launched_in};
  if (!take_dump(dump_process(req.pid, req.incoming, opts), r))
    return r;
  // 2. The manifest is root's: read it while still root.
  auto img = load_image(req.incoming);
  if (!img) {
    r.message = "the new image does not load: " + img.error().describe();
    return r;
  }
  // 3. Nothing open is needed past here but the result: what root opened (the daemon's fds
  // inherited by fork, the handles to the app, the image) stays behind.
  img->pages.reset();
  close_all_but(result_fd);
  // 4. Files are the app user's to read: a hash is never a way to read someone else's file.
  if (req.uid != 0) {
    if (auto d = become_app_user(req.uid, req.gid, req.at_ready.groups); !d) {
      r.message = "cannot switch to the app's user " + std::to_string(req.uid) + ": " + d.error().describe();
      return r;
    }
  }
  // 5. Recorded now, so a change after this point invalidates the snapshot.
  record_dependencies(img->snap, req.ctx, req.argv, req.cwd, req.watch, r);
  return r;
}

int exit_code(const CaptureResult& r) {
  if (r.status == "ok") return kCaptureOk;
  if (r.status == "unsupported") return kCaptureUnsupported;
  if (r.status == "refused") return kCaptureRefused;
  return kCaptureFailed;
}

}  // namespace

int run_capture_child(const CaptureRequest& req) {
  // After READY=1 the app may still be closing the socket it sent it with.
  if (req.delay_ms) ::usleep(req.delay_ms * 1000);
  // Opened as root in root's incoming/, written after the drop to the app's user (who could
  // not create it). The daemon reads it only once this process has exited, so no rename.
  const std::string path = result_path(req.incoming);
  ::unlink(path.c_str());
  auto out = open_fd(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
  if (!out) return kCaptureFailed;
  CaptureResult r = capture_checked(req, out->get());
  const std::string text = proto::json_text(json(r));
  if (!write_all(out->get(), text.data(), text.size()) || ::fsync(out->get()) != 0) return kCaptureFailed;
  return exit_code(r);
}

CaptureResult read_capture_result(const std::string& incoming) {
  CaptureResult r;
  auto text = read_file(result_path(incoming));
  ::unlink(result_path(incoming).c_str());
  if (!text) {
    r.message = "the capture ended without a result (it crashed or was killed)";
    return r;
  }
  json j = json::parse(*text, nullptr, false);
  try {
    j.get_to(r);
  } catch (const json::exception& e) {
    r = CaptureResult{};
    r.message = std::string("garbled capture result: ") + e.what();
  }
  if (r.status == "ok" && r.key.size() != 32) r.status = "failed", r.message = "capture result without a key";
  return r;
}

}  // namespace prewarm
