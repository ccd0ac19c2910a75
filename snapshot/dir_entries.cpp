#include "snapshot/dir_entries.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

namespace prewarm {

Result<std::vector<std::string>> dir_names_at(int dirfd) {
  // fdopendir takes over the descriptor it is given and reads from its offset: a fresh one.
  const int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error("open directory");
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    const int e = errno;
    ::close(fd);
    return make_error(e, "read directory");
  }
  std::vector<std::string> out;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    if (std::string n = e->d_name; n != "." && n != "..") out.push_back(std::move(n));
    errno = 0;
  }
  const int e = errno;  // readdir returns null at the end and on an error alike
  ::closedir(d);
  if (e != 0) return make_error(e, "read directory");
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> dir_names(const std::string& path, bool nofollow) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0) return errno_error("open " + path);
  auto names = dir_names_at(fd);
  ::close(fd);
  if (!names) return make_error(names.error().code, names.error().message + " " + path);
  return names;
}

Result<std::vector<int>> dir_numbers(const std::string& path) {
  PW_ASSIGN(std::vector<std::string> names, dir_names(path));
  std::vector<int> out;
  for (const auto& n : names) {
    int v = 0;
    auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (ec == std::errc() && end == n.data() + n.size() && v >= 0) out.push_back(v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace prewarm
