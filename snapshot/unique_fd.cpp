// RAII handles and whole-file I/O helpers.
#include "snapshot/unique_fd.h"

#include <fcntl.h>

#include <cerrno>

namespace prewarm {

Result<UniqueFd> open_fd(const std::string& path, int flags, mode_t mode) {
  return open_at(AT_FDCWD, path, flags, mode);
}

Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno_error("open " + path);
  return UniqueFd(fd);
}

Result<std::string> read_fd(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  PW_ASSIGN(UniqueFd fd, open_fd(path, O_RDONLY));
  auto r = read_fd(fd.get());
  if (!r) return make_error(r.error().code, "read " + path);
  return r;
}

Result<void> write_all(int fd, const void* data, size_t len) {
  auto p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return ok();
}

Result<void> pread_all(int fd, void* data, size_t len, off_t offset) {
  auto p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("pread");
    }
    if (n == 0) return make_error(EIO, "pread: unexpected end of file");
    p += n;
    len -= static_cast<size_t>(n);
    offset += n;
  }
  return ok();
}

Result<UniqueMapping> map_anonymous(size_t len, int prot, int extra_flags, void* hint) {
  void* p = ::mmap(hint, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (p == MAP_FAILED) return errno_error("mmap anonymous");
  return UniqueMapping(p, len);
}

}  // namespace prewarm
