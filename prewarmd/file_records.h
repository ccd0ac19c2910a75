// The files a snapshot depends on, recorded at capture (content hash + stat) and re-checked at
// every launch and on every inotify event.
#pragma once

#include <string>
#include <vector>

#include "policy/launch_key.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"

namespace prewarm {

// Stat and XXH3-128 of the file's content, read with the caller's permissions (the capture
// calls it as the app's user). Fails if the file changes while being read.
Result<FileRecord> record_file(const std::string& path);

// The executable, every mapped file and open regular file of the image, every argv entry that
// names a regular file (relative ones against `cwd`), and the --watch paths; sorted, unique.
std::vector<std::string> dependency_paths(const pb::Snapshot& snap, const std::vector<std::string>& argv,
                                          const std::string& cwd,
                                          const std::vector<std::string>& watch);

// The first recorded file that changed, as "PATH: why"; "" if none.
std::string first_change(const std::vector<FileRecord>& files);

}  // namespace prewarm
