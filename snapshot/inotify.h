// inotify instances: each watch as fdinfo reports it (wd, inode, superblock, mask, file handle),
// resolved at dump to the path of the watched file, so a restore can add it again by path with
// the same wd. Both sides read fdinfo with the one parser here: the restore checks its own new
// instance against the image with it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"

namespace prewarm {

struct InotifyMark {
  int32_t wd = 0;
  uint64_t ino = 0;
  dev_t dev = 0;      // the superblock's, converted from the kernel's encoding to stat's
  uint32_t mask = 0;  // events, IN_ONESHOT, IN_EXCL_UNLINK
  int handle_type = 0;
  std::string handle;  // the file handle's bytes (empty on kernels without CONFIG_EXPORTFS)
};

// Every "inotify wd:" line of an inotify fd's fdinfo, ascending by wd; an error on a line that
// does not parse.
Result<std::vector<InotifyMark>> parse_inotify_fdinfo(const std::string& text);

// The watches of inotify fd `app_fd` (the app's own open file, from pidfd_getfd) of the frozen
// process `pid`, each resolved to a path through its file handle (needs CAP_DAC_READ_SEARCH) and
// checked to name the watched inode from the process's root. "" and `out` filled, or why the
// instance cannot be carried: events queued and not read yet, a watch whose path is not found.
Result<std::string> inotify_record(pid_t pid, int app_fd, const std::string& fdinfo, pb::FdInotify& out);

// A directory watch is checked at restore by a sum over its entries, where its events would
// follow them: kNames for a watch of entries made, removed or moved (IN_CREATE, IN_DELETE,
// IN_MOVED_*), kFull for one of its entries' writes or attributes too (IN_MODIFY, IN_ATTRIB,
// IN_CLOSE_WRITE), which leave the directory's own times alone.
inline constexpr uint32_t kMaxChildren = 65536;
enum class ChildStamps : uint8_t { kNone, kNames, kFull };
ChildStamps child_stamps(uint32_t mask, mode_t mode);
// The order-free sum of the stamps of every entry of directory `dirfd` (each its name, inode and
// type; kFull also a file's mode, owner, size and times, a subdirectory's mode and owner, a
// socket's mode and owner without its inode), and their count; false if it cannot be read or has
// more than kMaxChildren entries. Only syscalls (the dump runs it in a forked child).
bool children_sum(int dirfd, ChildStamps kind, uint64_t& sum, uint32_t& count);

// Whether `path` (its last component not followed) names the file of handle `handle` of type
// `type`: true or false, or an error where the file system gives no handles.
Result<bool> has_file_handle(const std::string& path, int type, const std::string& handle);

}  // namespace prewarm
