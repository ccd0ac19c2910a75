// A file's identity and version (dev, inode, size, mtime, ctime): the one type and the one
// "changed" rule that dump, restore, capture and the store all use, with its proto and JSON forms.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "snapshot/result.h"

namespace prewarm {
namespace pb {
class FileId;
}

struct FileIdentity {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;

  static FileIdentity of(const struct stat& st);
  bool operator==(const FileIdentity&) const = default;
};

// fstat(2) of an open fd: the identity of exactly the file that fd reads.
Result<FileIdentity> identity_of_fd(int fd);
// stat(2) of a path (following symlinks); an error if it does not exist or cannot be reached.
Result<FileIdentity> identity_of_path(const std::string& path);

// Why `now` is not the file recorded as `was`, the most telling reason first ("replaced (new
// inode)", "size changed", "modified (mtime)", "changed (ctime)"); nothing if it is the same.
// ctime counts: chmod, chown, a new hard link or a write that restored the mtime all move it.
std::optional<std::string_view> changed(const FileIdentity& was, const FileIdentity& now);

// The same inode on the same filesystem: the rule for directories, whose entries (and so
// size and times) may change under a snapshot without making it wrong.
inline bool same_inode(const FileIdentity& a, const FileIdentity& b) { return a.dev == b.dev && a.ino == b.ino; }

// The restored process's own /proc entry, as the dump records it ("/proc/self/...",
// "/proc/thread-self/...": policy::proc_self_path): each process has its own, with its own inode,
// so there is no identity to record or compare, only the path to reopen.
bool is_own_proc_path(std::string_view path);

// The image's form (snapshot.proto's FileId).
void to_proto(const FileIdentity& id, pb::FileId* out);
FileIdentity from_proto(const pb::FileId& id);

// A file a snapshot depends on, as recorded at capture: its identity (the cheap check at every
// launch) and its content hash (XXH3-128, 32 hex digits, part of the snapshot key).
struct FileRecord {
  std::string path;
  FileIdentity id;
  std::string content_hash;
};

// The JSON form in meta.json and the capture result: {"path","dev","ino","size","mtime_ns",
// "ctime_ns","hash"}, unchanged since the first store version. from_json throws
// nlohmann::json::exception on a missing or mistyped field. In nlohmann's form, so a record in
// another type's field list (NLOHMANN_DEFINE_TYPE_*) or a vector of them converts as it is.
void to_json(nlohmann::json& j, const FileRecord& f);
void from_json(const nlohmann::json& j, FileRecord& f);

}  // namespace prewarm
