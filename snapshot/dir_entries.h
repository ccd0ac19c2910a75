// The one directory reader: /proc task and fd lists, image directories, prewarmd's state.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "snapshot/result.h"

namespace prewarm {

// The names in an open directory except "." and "..", sorted. Reads through a descriptor of
// its own, so the caller's (its offset, its flags) is left as it was.
Result<std::vector<std::string>> dir_names_at(int dirfd);
// The same for a path, opened O_DIRECTORY (following symlinks unless nofollow).
Result<std::vector<std::string>> dir_names(const std::string& path, bool nofollow = false);
// The names that are whole decimal numbers (pids, tids, fds), ascending; others are skipped.
Result<std::vector<int>> dir_numbers(const std::string& path);

}  // namespace prewarm
