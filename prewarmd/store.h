// The image store: content-addressed by snapshot key, under the daemon's state directory.
//
//   STATE/store/KEY/{snapshot.pb,pages.img,meta.json}   published images (root's: dirs 0700, files 0600)
//   STATE/incoming/ID/                                   captures in progress (removed at start-up)
//   STATE/quarantine/KEY-TIME/                           images a launch refused (newest few kept)
//
// An image is published by one rename of a complete directory, so readers see all or nothing.
// Images stay the daemon's and are never writable by their app's user (meta.json says whose they
// are); a launch gets read-only descriptors of the two files. Inside the state directory nothing
// is reached by a path that could be changed under us: every access goes through directory
// descriptors (openat/fstatat/unlinkat/renameat, O_NOFOLLOW), and only regular files are opened.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "snapshot/image.h"
#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

struct StoreEntry {
  std::string key;
  std::string app;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<FileRecord> files;
  uint64_t bytes = 0;
  int64_t created_ms = 0;
  int64_t last_used_ms = 0;  // the image directory's mtime, touched at every restore
  double capture_ms = 0, freeze_ms = 0;
};

class ImageStore {
 public:
  explicit ImageStore(std::string state_dir) : root_(std::move(state_dir)) {}

  // Creates the directories, removes leftovers of interrupted captures, loads every image.
  // Images whose meta.json is unreadable, that are not the daemon's, or that hold anything but
  // regular files are quarantined, not trusted; symlinks, FIFOs and other such objects found in
  // store/, incoming/ or quarantine/ are removed (never followed). Each is reported in
  // take_warnings(). Fails only if the state directory or its subdirectories cannot be had.
  Result<void> open();

  // Paths, for messages and for the capture child, which writes its image into incoming/ID.
  // Nothing inside the state directory should be opened through image_dir(): use open_image().
  std::string image_dir(const std::string& key) const { return root_ + "/store/" + key; }
  std::string incoming_dir(const std::string& id) const { return root_ + "/incoming/" + id; }
  // Bytes on disk of an unpublished image, counted as publish() counts a published one (0 if
  // it cannot be opened).
  uint64_t incoming_bytes(const std::string& incoming) const;

  // Read-only, blocking descriptors of the image's snapshot.pb and pages.img, for a launch. Both
  // checked: regular files (never a symlink or FIFO), owned by the daemon, writable by no one else.
  Result<ImageFds> open_image(const std::string& key) const;

  // Checks the complete image at `incoming` (regular files only, snapshot.pb and pages.img
  // present), makes it the daemon's own and private (0700/0600; never handed to the app's user),
  // writes meta.json and renames it into place, replacing an image with the same key.
  Result<void> publish(const std::string& incoming, StoreEntry entry);
  void remove(const std::string& key);
  // Moves the image aside for inspection; keeps the newest few quarantined images.
  void quarantine(const std::string& key);
  void touch(const std::string& key);
  uint64_t total_bytes() const;
  // Drops least recently used images until the store fits in `budget`; returns what was dropped.
  std::vector<StoreEntry> evict(uint64_t budget, const std::string& keep);

  const std::map<std::string, StoreEntry>& entries() const { return entries_; }
  // In key order; costs the app's own images, not the store's (list and stats ask for every app).
  std::vector<const StoreEntry*> entries_of(const std::string& app) const;
  struct Usage {
    uint64_t bytes = 0, images = 0;
  };
  // Every app with images, in name order: one pass over the store, not a lookup per app.
  std::vector<std::pair<std::string, Usage>> usage_by_app() const;

  // What the store refused, removed or could not do since the last call, one human-readable
  // line each ("store/KEY: pages.img is a FIFO, not a regular file; image quarantined"), for
  // the daemon to log. Library code does not log.
  std::vector<std::string> take_warnings();

 private:
  void warn(std::string message) { warnings_.push_back(std::move(message)); }
  Result<StoreEntry> load_entry(const std::string& key);
  void put(StoreEntry e);  // entries_ and by_app_ change only together, here and in drop()
  void drop(const std::string& key);
  void prune_quarantine();

  std::string root_;
  UniqueFd root_fd_, store_fd_, incoming_fd_, quarantine_fd_;  // O_DIRECTORY|O_NOFOLLOW, from open()
  std::map<std::string, StoreEntry> entries_;
  std::set<std::pair<std::string, std::string>> by_app_;  // (app, key) of every entry
  std::vector<std::string> warnings_;
};

// Recursively removes a directory tree (or a single file) by directory descriptors: a symlink is
// removed itself, never followed, even if it replaces a directory while the removal runs. The
// last component of `path` is not followed either. Returns false if something was left behind.
bool remove_tree(const std::string& path);

}  // namespace prewarm
