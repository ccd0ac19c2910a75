// Reopening the app's files.
#include "restorer/app_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "restorer/fd_objects.h"
#include "snapshot/file_identity.h"

namespace prewarm {

int launcher_fd(const AppFiles& files, int app_fd) {
  if (app_fd >= 0 && app_fd <= 2) return app_fd;  // stdio: the launch's own
  for (const auto& mv : files.moves)
    if (mv.to == app_fd) return mv.from;
  return -1;
}

Result<AppFiles> open_app_files(const pb::Snapshot& snap, const ListenEnv& launch) {
  AppFiles out;
  int base = 3;
  for (const auto& f : snap.files()) {
    if (f.fd() < 3 || f.fd() > (1 << 20)) return data_error("image has an invalid fd number");
    base = std::max(base, f.fd() + 1);
  }
  std::vector<int> targets;
  PW_ASSIGN(auto objects, create_fd_objects(snap, launch, out.bound_paths));
  for (const auto& f : snap.files()) {
    if (f.kind() != pb::FD_FILE) {
      // One object per open file description; every fd of it is a dup, as in the app.
      int high = ::fcntl(objects.at(f.description()).get(), F_DUPFD_CLOEXEC, base);
      if (high < 0) return errno_error("move fd of " + f.path());
      out.fds.emplace_back(high);
      out.moves.push_back({high, f.fd(), f.cloexec() ? 1u : 0u, 0});
      targets.push_back(f.fd());
      if (f.kind() == pb::FD_PASSED) out.passed_flags.emplace_back(high, static_cast<int>(f.flags()) & O_NONBLOCK);
      continue;
    }
    const int flags = static_cast<int>(f.flags()) & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
    auto fd = open_fd(f.path(), flags);
    if (!fd) return make_error(fd.error().code, "reopen the app's fd " + std::to_string(f.fd()) + " (" + f.path() + ")");
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return errno_error("stat " + f.path());
    std::string why;
    if (is_own_proc_path(f.path())) {
      // nothing to compare: the restored process's entry, not the snapshotted one's
    } else if (f.char_device()) {
      if (!S_ISCHR(st.st_mode)) why = "no longer a character device";
    } else if (f.directory()) {
      if (!same_inode(from_proto(f.file()), FileIdentity::of(st))) why = "replaced";
    } else {
      why = changed(from_proto(f.file()), FileIdentity::of(st)).value_or("");
    }
    if (!why.empty()) return data_error(f.path() + " (the app's fd " + std::to_string(f.fd()) + ") changed since the snapshot: " + why);
    if (!(flags & O_PATH) && !f.char_device() &&
        ::lseek(fd->get(), static_cast<off_t>(f.pos()), SEEK_SET) < 0)
      return errno_error("seek " + f.path());
    int high = ::fcntl(fd->get(), F_DUPFD_CLOEXEC, base);
    if (high < 0) return errno_error("move fd of " + f.path());
    out.fds.emplace_back(high);
    out.moves.push_back({high, f.fd(), f.cloexec() ? 1u : 0u, 0});
    targets.push_back(f.fd());
  }
  PW_ASSIGN(out.epoll, epoll_registrations(snap, [&](int app_fd) { return launcher_fd(out, app_fd); }));
  std::sort(targets.begin(), targets.end());
  if (std::adjacent_find(targets.begin(), targets.end()) != targets.end())
    return data_error("image has an fd number twice");
  uint64_t next = 3;
  for (int t : targets) {
    if (static_cast<uint64_t>(t) > next) out.close.push_back({next, static_cast<uint64_t>(t) - next});
    next = static_cast<uint64_t>(t) + 1;
  }
  out.close.push_back({next, (1ull << 31) - next});
  return out;
}

}  // namespace prewarm
