// `prewarm restore`: turn the calling process into the snapshotted one.
#pragma once

#include <functional>
#include <string>

#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct RestoreOptions {
  // A connected datagram socket that receives `notify_message` once the app is in place (the
  // restored app's READY=1); -1 for none. Ownership stays with the caller on failure.
  int notify_fd = -1;
  std::string notify_message;
  // A signal (1-64) the app gets once restored, before it runs any of its own code: pending when
  // it resumes (its handler lets it reseed or reconnect: every restore of an image is a clone).
  // 0 for none. The app must catch it; a syscall it was blocked in returns EINTR when the
  // handler lacks SA_RESTART, as the kernel does for a signal that interrupts it.
  int on_restore_signal = 0;
  // ---- lazy ---- Lazy restore (restorer/lazy.h): private anonymous pages are filled on demand
  // and in the background by a server thread of the app instead of read before it resumes.
  // Without a userfaultfd that can serve kernel-mode faults the restore is eager and `note`
  // gets the reason. `lazy_uffd`: one the caller opened (e.g. before dropping root), consumed.
  bool lazy = false;
  int lazy_uffd = -1;
  // The image's working set file (restorer/lazy.h), read and written: its runs are read before
  // the app resumes, the runs this launch faults on are added. -1: none. Consumed.
  int working_set_fd = -1;
  std::function<void(const std::string&)> note;
};

// Validates and stages everything, then hands over to the restorer blob. Returns only on a
// failure before the point of no return; the process is then unchanged except for memory.
Error restore_in_place(const std::string& images_dir, const RestoreOptions& options = {});
// The same from the image's two files, open read-only (prewarmd hands a launch these, never a
// path or directory: the launcher runs as the app's user and cannot open root's store itself).
// The descriptors are consumed; errors name the image "the image".
Error restore_in_place(UniqueFd manifest, UniqueFd pages, const RestoreOptions& options = {});

}  // namespace prewarm
