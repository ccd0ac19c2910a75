#include "snapshot/inotify.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "snapshot/file_identity.h"
#include "snapshot/proc_identity.h"
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

// The mount points of the process's mounts, by superblock; whole-filesystem mounts first (a bind
// mount of a directory cannot name what lies outside it).
std::map<dev_t, std::vector<std::string>> mounts_by_dev(pid_t pid) {
  std::map<dev_t, std::vector<std::string>> whole, bound;
  auto text = read_file("/proc/" + std::to_string(pid) + "/mountinfo");
  if (!text) return {};
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, majmin, root, point;
    if (!(f >> id >> parent >> majmin >> root >> point)) continue;
    unsigned ma = 0, mi = 0;
    if (std::sscanf(majmin.c_str(), "%u:%u", &ma, &mi) != 2) continue;
    (root == "/" ? whole : bound)[makedev(ma, mi)].push_back(unescape(point));
  }
  for (auto& [dev, points] : bound) whole[dev].insert(whole[dev].end(), points.begin(), points.end());
  return whole;
}

constexpr size_t kMaxMountsTried = 16;  // per watch: a user's own bind mounts cost root no more

struct Candidate {
  std::string path;
  struct stat st {};
};

// Paths of the watched file, found by its handle on each of `mounts` (as root: the caller keeps
// only one the app's user can walk), or why none.
std::string resolve(const std::string& root, const std::vector<std::string>& mounts, const InotifyMark& m,
                    std::vector<Candidate>& out) {
  if (m.handle.empty()) return "this kernel's fdinfo gives no file handle (CONFIG_EXPORTFS)";
  if (mounts.empty()) return "no mount of its device is found in the process's mountinfo";
  std::unique_ptr<char[]> buf(new char[sizeof(file_handle) + m.handle.size()]);
  auto* fh = reinterpret_cast<file_handle*>(buf.get());
  fh->handle_bytes = static_cast<unsigned>(m.handle.size());
  fh->handle_type = m.handle_type;
  std::memcpy(fh->f_handle, m.handle.data(), m.handle.size());
  std::string why;
  for (size_t i = 0; i < mounts.size() && i < kMaxMountsTried; ++i) {
    // Not O_PATH: open_by_handle_at refuses such a mount fd.
    UniqueFd mnt(::open((root + mounts[i]).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!mnt.valid()) {
      why = "open its mount " + mounts[i] + ": " + std::strerror(errno);
      continue;
    }
    UniqueFd file(::open_by_handle_at(mnt.get(), fh, O_PATH | O_CLOEXEC));
    if (!file.valid()) {
      why = std::string("open_by_handle_at: ") + std::strerror(errno) +
            (errno == EPERM    ? " (it needs CAP_DAC_READ_SEARCH)"
             : errno == ESTALE ? " (deleted, or a file system whose handles cannot be opened, such as overlayfs)"
                               : "");
      continue;
    }
    char link[4096];
    const ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(file.get())).c_str(), link, sizeof link - 1);
    Candidate c;
    if (n <= 0 || link[0] != '/' || ::fstat(file.get(), &c.st) != 0 || c.st.st_ino != m.ino) {
      why = "its file has no path (deleted, or not connected to its mount)";
      continue;
    }
    c.path.assign(link, static_cast<size_t>(n));
    if (c.st.st_nlink == 0) {
      why = "its file was deleted (a watch of an unlinked file has no path to add it by)";
      continue;
    }
    if (std::none_of(out.begin(), out.end(), [&](const Candidate& o) { return o.path == c.path; })) out.push_back(c);
  }
  return out.empty() ? why : std::string();
}

// What the walk as the app's user found of one candidate.
struct Walked {
  uint8_t reached = 0;   // the path names the file
  uint8_t listed = 0;    // a directory's entries were summed (ChildrenSum)
  uint8_t pad[2] = {};
  uint32_t children = 0;
  uint64_t sum = 0;
};

// Walks each candidate from the process's root (openat2 RESOLVE_IN_ROOT: absolute symlinks stay
// inside it) with the process's file-system user, groups and capabilities (as far as the dumper
// has them), and for `list[i]` sums the directory's entries. Forked, so that credentials change
// only there; the child makes only syscalls (this may be a child of a threaded process) and holds
// no fd of the dumper's but the two it needs.
Result<std::vector<Walked>> walk_as_app(pid_t pid, const std::vector<Candidate>& cands,
                                        const std::vector<ChildStamps>& list) {
  PW_ASSIGN(std::string status, read_file("/proc/" + std::to_string(pid) + "/status"));
  ProcessIdentity id;
  PW_TRY(parse_identity_status(status, id));
  UniqueFd root(::open(("/proc/" + std::to_string(pid) + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return errno_error("open /proc/" + std::to_string(pid) + "/root");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  std::vector<Walked> out(cands.size());
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct mine[2]{};
  if (::syscall(SYS_capget, &hdr, mine) != 0) return errno_error("capget");
  __user_cap_data_struct caps[2]{};
  caps[0].effective = caps[0].permitted = static_cast<uint32_t>(id.cap_eff) & mine[0].permitted;
  caps[1].effective = caps[1].permitted = static_cast<uint32_t>(id.cap_eff >> 32) & mine[1].permitted;
  const pid_t child = ::fork();
  if (child < 0) return errno_error("fork");
  if (child == 0) {
    const unsigned r = static_cast<unsigned>(root.get()), w = static_cast<unsigned>(wr.get());
    const unsigned lo = std::min(r, w), hi = std::max(r, w);
    if (lo > 0) ::syscall(SYS_close_range, 0u, lo - 1, 0u);
    if (hi > lo + 1) ::syscall(SYS_close_range, lo + 1, hi - 1, 0u);
    ::syscall(SYS_close_range, hi + 1, ~0u, 0u);
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_setgroups, id.groups.size(), id.groups.data()) != 0 ||
        ::syscall(SYS_setresgid, id.fsgid, id.fsgid, id.fsgid) != 0 ||
        ::syscall(SYS_setresuid, id.fsuid, id.fsuid, id.fsuid) != 0 || ::syscall(SYS_capset, &hdr, caps) != 0 ||
        ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
      ::_exit(1);
    for (size_t i = 0; i < cands.size(); ++i) {
      open_how how{};
      how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
      how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
      const int fd = static_cast<int>(::syscall(SYS_openat2, root.get(), cands[i].path.c_str(), &how, sizeof how));
      struct stat at {};
      Walked& o = out[i];
      o.reached = fd >= 0 && ::fstat(fd, &at) == 0 && at.st_dev == cands[i].st.st_dev && at.st_ino == cands[i].st.st_ino;
      if (o.reached && list[i] != ChildStamps::kNone) {
        how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        const int dir = static_cast<int>(::syscall(SYS_openat2, root.get(), cands[i].path.c_str(), &how, sizeof how));
        o.listed = dir >= 0 && children_sum(dir, list[i], o.sum, o.children);
        if (dir >= 0) ::close(dir);
      }
      if (fd >= 0) ::close(fd);
    }
    const char* bytes = reinterpret_cast<const char*>(out.data());
    const size_t len = out.size() * sizeof(Walked);
    for (size_t done = 0; done < len;) {
      const ssize_t n = ::write(wr.get(), bytes + done, len - done);
      if (n <= 0) ::_exit(1);
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  wr.reset();
  auto got = read_fd(rd.get());
  int wstatus = 0;
  while (::waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!got || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0 || got->size() != out.size() * sizeof(Walked))
    return data_error("the walk of inotify watch paths with the app's credentials failed (it could not take them)");
  std::memcpy(out.data(), got->data(), got->size());
  return out;
}

// Whether this kernel's fdinfo shows a watch's IN_ONESHOT and IN_EXCL_UNLINK (since 5.19): without
// them a oneshot watch would be restored as a lasting one. "" if it does, else why not; a kernel's
// answer is kept, a failure to ask is not.
std::string watch_flags_shown() {
  static int known = -1;  // 1 shown, 0 not
  if (known >= 0) return known ? std::string() : "this kernel's fdinfo does not show IN_ONESHOT and IN_EXCL_UNLINK (Linux 5.19 does)";
  UniqueFd in(::inotify_init1(IN_CLOEXEC));
  if (!in.valid()) return std::string("cannot make an inotify instance to probe the kernel: ") + std::strerror(errno);
  const uint32_t want = IN_CREATE | IN_ONESHOT | IN_EXCL_UNLINK;
  if (::inotify_add_watch(in.get(), "/", want) < 0)
    return std::string("cannot add a watch to probe the kernel: ") + std::strerror(errno);
  auto text = read_file("/proc/self/fdinfo/" + std::to_string(in.get()));
  if (!text) return "cannot read an inotify fdinfo: " + text.error().describe();
  auto marks = parse_inotify_fdinfo(*text);
  known = marks && marks->size() == 1 && (*marks)[0].mask == want;
  return watch_flags_shown();
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

ChildStamps child_stamps(uint32_t mask, mode_t mode) {
  if (!S_ISDIR(mode)) return ChildStamps::kNone;
  if (mask & (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE)) return ChildStamps::kFull;
  if (mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) return ChildStamps::kNames;
  return ChildStamps::kNone;
}

bool children_sum(int dirfd, ChildStamps kind, uint64_t& sum, uint32_t& count) {
  alignas(8) static thread_local char buf[32768];
  sum = 0;
  count = 0;
  for (;;) {
    const long n = ::syscall(SYS_getdents64, dirfd, buf, sizeof buf);
    if (n < 0) return false;
    if (n == 0) return true;
    for (long at = 0; at < n;) {
      const auto* d = reinterpret_cast<const dirent64*>(buf + at);
      at += d->d_reclen;
      if (std::strcmp(d->d_name, ".") == 0 || std::strcmp(d->d_name, "..") == 0) continue;
      if (++count > kMaxChildren) return false;
      struct stat st {};
      if (::fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
      // One entry: its name and what an event of the watch would follow. kNames: its inode and
      // type (a create, delete or move changes those). kFull, also: a file's mode, owner, size and
      // times; a directory's mode and owner (what changes below it is no event of this watch); a
      // socket's mode and owner but not its inode or times (a restore binds a listener's again).
      const bool sock = S_ISSOCK(st.st_mode), dir = S_ISDIR(st.st_mode);
      int64_t stamp[5] = {static_cast<int64_t>(st.st_mode & S_IFMT), sock ? 0 : static_cast<int64_t>(st.st_ino), 0, 0, 0};
      if (kind == ChildStamps::kFull) {
        stamp[0] = static_cast<int64_t>(st.st_mode);
        stamp[2] = (static_cast<int64_t>(st.st_uid) << 32) | st.st_gid;
        if (!sock && !dir) {
          stamp[3] = static_cast<int64_t>(st.st_size) ^ (st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
          stamp[4] = st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
        }
      }
      sum += XXH3_64bits_withSeed(stamp, sizeof stamp, XXH3_64bits(d->d_name, std::strlen(d->d_name)));
    }
  }
}

Result<std::string> inotify_record(pid_t pid, int app_fd, const std::string& fdinfo, pb::FdInotify& out) {
  int queued = 0;
  if (::ioctl(app_fd, FIONREAD, &queued) != 0) return errno_error("FIONREAD on an inotify fd");
  // Events cannot be queued again into a new instance.
  if (queued > 0) return "inotify: " + std::to_string(queued) + " bytes of events queued and not read yet";
  PW_ASSIGN(auto marks, parse_inotify_fdinfo(fdinfo));
  if (marks.empty()) return std::string();
  if (std::string why = watch_flags_shown(); !why.empty()) return "inotify: " + why;
  for (const auto& m : marks)
    if (m.mask & (IN_OPEN | IN_ACCESS | IN_CLOSE_NOWRITE))
      return "inotify: watch " + std::to_string(m.wd) +
             " listens for opens, reads or closes without a write (IN_OPEN, IN_ACCESS, IN_CLOSE_NOWRITE): those "
             "leave no trace a restore could compare, and the dump's and the restore's own reads would make them";
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  const auto mounts = mounts_by_dev(pid);
  std::vector<Candidate> cands;
  std::vector<ChildStamps> list;
  std::vector<size_t> first;  // marks[i]'s candidates start at first[i]
  for (const auto& m : marks) {
    first.push_back(cands.size());
    std::vector<Candidate> mine;
    const auto it = mounts.find(m.dev);
    const std::string why = resolve(root, it == mounts.end() ? std::vector<std::string>{} : it->second, m, mine);
    if (!why.empty())
      return "inotify: the file of watch " + std::to_string(m.wd) + " (inode " + std::to_string(m.ino) +
             " on device " + std::to_string(major(m.dev)) + ":" + std::to_string(minor(m.dev)) + ") is not found: " + why;
    for (auto& c : mine) {
      list.push_back(child_stamps(m.mask, c.st.st_mode));
      cands.push_back(std::move(c));
    }
  }
  first.push_back(cands.size());
  // Found as root; recorded only where the app's own user reaches the file by that path (and
  // never named otherwise: the refusal goes to that user).
  PW_ASSIGN(auto walked, walk_as_app(pid, cands, list));
  // An event since the first look (another process's change) would be in the original only.
  if (::ioctl(app_fd, FIONREAD, &queued) != 0) return errno_error("FIONREAD on an inotify fd");
  if (queued > 0) return std::string("inotify: an event arrived while the dump read the watches; try again");
  for (size_t i = 0; i < marks.size(); ++i) {
    size_t k = first[i];
    while (k < first[i + 1] && !walked[k].reached) ++k;
    if (k == first[i + 1])
      return "inotify: the file of watch " + std::to_string(marks[i].wd) +
             " has no path from the process's root that its user can walk";
    if (list[k] != ChildStamps::kNone && !walked[k].listed)
      return "inotify: the directory of watch " + std::to_string(marks[i].wd) +
             " cannot be listed by its user, or has more than " + std::to_string(kMaxChildren) +
             " entries: a change to one of them since the snapshot could not be told";
    auto* w = out.add_watches();
    w->set_wd(marks[i].wd);
    w->set_mask(marks[i].mask);
    w->set_path(cands[k].path);
    to_proto(FileIdentity::of(cands[k].st), w->mutable_file());
    w->set_handle(marks[i].handle);
    w->set_handle_type(marks[i].handle_type);
    if (list[k] != ChildStamps::kNone) {
      w->set_children_listed(true);
      w->set_children(walked[k].children);
      w->set_children_sum(walked[k].sum);
    }
  }
  return std::string();
}

}  // namespace prewarm
