// What makes a snapshot valid for a launch: the snapshot key and the staleness check of the files
// recorded at capture. Plain data in, decisions out.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace prewarm::policy {

// A file the snapshot depends on, as seen at capture. The content hash goes into the key; the
// stat fields are the cheap check at every launch.
struct FileRecord {
  std::string path;
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  std::string content_hash;  // XXH3-128, 32 hex digits
};

// Everything about a launch, other than files, that the restored app would otherwise get wrong.
struct LaunchContext {
  std::string app;  // two registrations of one command never share an image
  std::vector<std::string> argv;
  std::vector<std::string> env;  // as launched; launch_environment() picks what counts
  std::string cwd;
  uint32_t uid = 0, gid = 0;
  std::array<std::string, 3> stdio;  // stdio_kind() of fds 0, 1, 2
  std::string kernel;                // uname release
  uint64_t xfeatures = 0;            // XCR0
  uint32_t xsave_size = 0;
};

// The environment without per-launch variables (INVOCATION_ID, NOTIFY_SOCKET, LISTEN_*, ...)
// and the launching shell's PWD/OLDPWD (the app runs in its registered directory, and a cold
// start sets PWD to it), sorted: launches that differ only in those share a snapshot.
std::vector<std::string> launch_environment(const std::vector<std::string>& env);

// "tty", "pipe", "socket", "file", "chardev", "dir" or "closed", from st_mode (0: not open).
std::string stdio_kind(uint32_t st_mode, bool is_tty);

// A 128-bit hash as 32 lowercase hex digits, high half first: the form of keys and content hashes.
std::string hash_hex(uint64_t high, uint64_t low);

// XXH3-128 over the context and the files' content hashes, as 32 hex digits.
std::string snapshot_key(const LaunchContext& ctx, std::vector<FileRecord> files);

struct StatNow {
  bool exists = false;
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
};

// "" when the file looks unchanged, else why not ("missing", "replaced (inode)", "size", ...).
std::string file_change(const FileRecord& rec, const StatNow& now);

}  // namespace prewarm::policy
