#include "snapshot/inotify.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr size_t kMaxHandleBytes = 128;  // MAX_HANDLE_SZ
constexpr size_t kMaxWatches = 65536;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// A mount point as mountinfo escapes it (\040 for a space, and so on).
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
      out += static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The mount points of the process's mounts of superblock `dev`, whole-filesystem mounts first
// (a bind mount of a directory cannot name what lies outside it).
std::vector<std::string> mounts_of(pid_t pid, dev_t dev) {
  std::vector<std::string> whole, bound;
  auto text = read_file("/proc/" + std::to_string(pid) + "/mountinfo");
  if (!text) return {};
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, majmin, root, point;
    if (!(f >> id >> parent >> majmin >> root >> point)) continue;
    unsigned ma = 0, mi = 0;
    if (std::sscanf(majmin.c_str(), "%u:%u", &ma, &mi) != 2 || makedev(ma, mi) != dev) continue;
    (root == "/" ? whole : bound).push_back(unescape(point));
  }
  whole.insert(whole.end(), bound.begin(), bound.end());
  return whole;
}

// The path of the watched inode, from the process's root, or "" when none is found.
std::string resolve(pid_t pid, const InotifyMark& m, struct stat& st) {
  if (m.handle.empty()) return {};
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  std::unique_ptr<char[]> buf(new char[sizeof(file_handle) + m.handle.size()]);
  auto* fh = reinterpret_cast<file_handle*>(buf.get());
  fh->handle_bytes = static_cast<unsigned>(m.handle.size());
  fh->handle_type = m.handle_type;
  std::memcpy(fh->f_handle, m.handle.data(), m.handle.size());
  for (const auto& point : mounts_of(pid, m.dev)) {
    UniqueFd mnt(::open((root + point).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // not O_PATH: refused there
    if (!mnt.valid()) continue;
    UniqueFd file(::open_by_handle_at(mnt.get(), fh, O_PATH | O_CLOEXEC));
    if (!file.valid()) continue;
    char path[4096];
    const ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(file.get())).c_str(), path, sizeof path - 1);
    struct stat have {};
    if (n <= 0 || path[0] != '/' || ::fstat(file.get(), &have) != 0 || have.st_ino != m.ino) continue;
    std::string p(path, static_cast<size_t>(n));
    // What the restore will find at that path from the app's root must be this very file.
    struct stat at {};
    if (::lstat((root + p).c_str(), &at) != 0 || at.st_dev != have.st_dev || at.st_ino != have.st_ino) continue;
    st = have;
    return p;
  }
  return {};
}

}  // namespace

Result<std::vector<InotifyMark>> parse_inotify_fdinfo(const std::string& text) {
  std::vector<InotifyMark> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("inotify ", 0) != 0) continue;
    unsigned wd = 0, sdev = 0, mask = 0, ignored = 0;
    unsigned long ino = 0;
    int used = 0;
    if (std::sscanf(line.c_str(), "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x%n", &wd, &ino, &sdev, &mask,
                    &ignored, &used) != 5 ||
        wd == 0 || wd > 0x7fffffff)
      return data_error("fdinfo: cannot parse inotify line: " + line);
    InotifyMark m;
    m.wd = static_cast<int32_t>(wd);
    m.ino = ino;
    m.dev = makedev(sdev >> 20, sdev & 0xfffff);  // the kernel's dev_t: 12 bits major, 20 minor
    m.mask = mask;
    unsigned bytes = 0;
    int type = 0, at = 0;
    const char* rest = line.c_str() + used;
    if (std::sscanf(rest, " fhandle-bytes:%x fhandle-type:%x f_handle:%n", &bytes, &type, &at) == 2 && at > 0) {
      const std::string hex = rest + at;
      if (bytes == 0 || bytes > kMaxHandleBytes || hex.size() != 2 * size_t{bytes})
        return data_error("fdinfo: bad inotify file handle: " + line);
      for (size_t i = 0; i < hex.size(); i += 2) {
        const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0) return data_error("fdinfo: bad inotify file handle: " + line);
        m.handle += static_cast<char>((hi << 4) | lo);
      }
      m.handle_type = type;
    }
    out.push_back(std::move(m));
    if (out.size() > kMaxWatches) return data_error("fdinfo: more than " + std::to_string(kMaxWatches) + " inotify watches");
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.wd < b.wd; });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].wd == out[i - 1].wd) return data_error("fdinfo: inotify wd " + std::to_string(out[i].wd) + " twice");
  return out;
}

Result<bool> has_file_handle(const std::string& path, int type, const std::string& handle) {
  std::unique_ptr<char[]> buf(new char[sizeof(file_handle) + kMaxHandleBytes]);
  auto* fh = reinterpret_cast<file_handle*>(buf.get());
  fh->handle_bytes = kMaxHandleBytes;
  int mount_id = 0;
  if (::name_to_handle_at(AT_FDCWD, path.c_str(), fh, &mount_id, 0) != 0) return errno_error("name_to_handle_at " + path);
  return fh->handle_type == type &&
         std::string(reinterpret_cast<const char*>(fh->f_handle), fh->handle_bytes) == handle;
}

Result<std::string> inotify_record(pid_t pid, int app_fd, const std::string& fdinfo, pb::FdInotify& out) {
  int queued = 0;
  if (::ioctl(app_fd, FIONREAD, &queued) != 0) return errno_error("FIONREAD on an inotify fd");
  // Events cannot be queued again into a new instance.
  if (queued > 0) return "inotify: " + std::to_string(queued) + " bytes of events queued and not read yet";
  PW_ASSIGN(auto marks, parse_inotify_fdinfo(fdinfo));
  for (const auto& m : marks) {
    struct stat st {};
    const std::string path = resolve(pid, m, st);
    char ino[32];
    std::snprintf(ino, sizeof ino, "%lu", static_cast<unsigned long>(m.ino));
    if (path.empty())
      return "inotify: the path of watch " + std::to_string(m.wd) + " (inode " + ino + " on device " +
             std::to_string(major(m.dev)) + ":" + std::to_string(minor(m.dev)) +
             ") is not found from the process's root (deleted, or its file handle cannot be opened without "
             "CAP_DAC_READ_SEARCH)";
    auto* w = out.add_watches();
    w->set_wd(m.wd);
    w->set_mask(m.mask);
    w->set_path(path);
    w->set_dev(st.st_dev);
    w->set_ino(st.st_ino);
    w->set_handle(m.handle);
    w->set_handle_type(m.handle_type);
  }
  return std::string();
}

}  // namespace prewarm
