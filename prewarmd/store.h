// The image store: content-addressed by snapshot key, under the daemon's state directory.
//
//   STATE/store/KEY/{snapshot.pb,pages.img,meta.json}   published images (owner: the app's user, 0700)
//   STATE/incoming/ID/                                   captures in progress (removed at start-up)
//   STATE/quarantine/KEY-TIME/                           images a launch refused (newest few kept)
//
// An image is published by one rename of a complete directory, so readers see all or nothing.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "snapshot/result.h"

namespace prewarm {

struct StoreEntry {
  std::string key;
  std::string app;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<policy::FileRecord> files;
  uint64_t bytes = 0;
  int64_t created_ms = 0;
  int64_t last_used_ms = 0;  // the image directory's mtime, touched at every restore
  double capture_ms = 0, freeze_ms = 0;
};

class ImageStore {
 public:
  explicit ImageStore(std::string state_dir) : root_(std::move(state_dir)) {}

  // Creates the directories, removes leftovers of interrupted captures, loads every image.
  // Images whose meta.json is unreadable are quarantined, not trusted.
  Result<void> open();

  std::string image_dir(const std::string& key) const { return root_ + "/store/" + key; }
  std::string incoming_dir(const std::string& id) const { return root_ + "/incoming/" + id; }

  // Writes meta.json into the complete image at `incoming`, hands it to the app's user and
  // renames it into place (replacing an image with the same key).
  Result<void> publish(const std::string& incoming, StoreEntry entry);
  void remove(const std::string& key);
  // Moves the image aside for inspection; keeps the newest few quarantined images.
  void quarantine(const std::string& key);
  void touch(const std::string& key);
  uint64_t total_bytes() const;
  // Drops least recently used images until the store fits in `budget`; returns what was dropped.
  std::vector<StoreEntry> evict(uint64_t budget, const std::string& keep);

  const std::map<std::string, StoreEntry>& entries() const { return entries_; }
  std::vector<const StoreEntry*> entries_of(const std::string& app) const;

 private:
  std::string root_;
  std::map<std::string, StoreEntry> entries_;
};

// Recursively removes a directory tree (no symlinks followed).
void remove_tree(const std::string& path);

}  // namespace prewarm
