// What makes a snapshot valid for a launch: the snapshot key and the staleness check of the files
// recorded at capture. Plain data in, decisions out.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/file_identity.h"

namespace prewarm::policy {

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
  // The launcher's security label and the loaded policy's revision: an exec of the app under
  // another label or policy may be confined otherwise than the captured one was.
  std::string security;
};

// The environment without per-launch variables (INVOCATION_ID, NOTIFY_SOCKET, LISTEN_*, ...)
// and the launching shell's PWD/OLDPWD (the app runs in its registered directory, and a cold
// start sets PWD to it), sorted: launches that differ only in those share a snapshot.
std::vector<std::string> launch_environment(const std::vector<std::string>& env);

// "tty", "pipe", "socket", "file", "chardev", "dir" or "closed", from st_mode (0: not open).
std::string stdio_kind(uint32_t st_mode, bool is_tty);

// A 128-bit hash as 32 lowercase hex digits, high half first: the form of keys and content hashes.
std::string hash_hex(uint64_t high, uint64_t low);

// XXH3-128 over the context and the files' content hashes (snapshot/file_identity.h's FileRecord:
// its identity is the cheap check at every launch, not part of the key), as 32 hex digits.
std::string snapshot_key(const LaunchContext& ctx, std::vector<FileRecord> files);

}  // namespace prewarm::policy
