// The image store, kept by directory descriptors so that nothing in it is reached by a path.
#include "prewarmd/store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "policy/eviction.h"
#include "prewarmd/protocol.h"
#include "snapshot/clock.h"
#include "snapshot/dir_entries.h"

namespace prewarm {

// meta.json, beside its "version": every field required (each has been written since version 1).
// bytes and last_used_ms are the directory's own (its size, its mtime), not stored.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(StoreEntry, key, app, uid, gid, files, created_ms, capture_ms, freeze_ms)

namespace {

using nlohmann::json;
constexpr int kMetaVersion = 1;
constexpr size_t kQuarantineKept = 4;
constexpr const char* kMetaName = "meta.json";
constexpr const char* kMetaTemp = "meta.json.tmp";
constexpr uint64_t kMaxMetaBytes = 16ull << 20;
// Opening a directory entry never follows a symlink, last component included.
constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
// Removal recursion is bounded (one descriptor per level); images are one level deep.
constexpr int kMaxDepth = 64;

// One name inside a directory, never a path.
bool is_plain_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos;
}

std::string uid_text(uid_t uid) { return std::to_string(uid); }

int remove_at(int dirfd, const std::string& name, int depth);

// Removes what an open directory holds (one pass; the caller retries if something reappeared).
void clear_dir(int fd, int depth) {
  auto names = dir_names_at(fd);
  if (!names) return;
  for (const auto& n : *names) (void)remove_at(fd, n, depth);
}

// Removes `name` in `dirfd` and, if it is a directory, everything below it, without following a
// symlink anywhere: directories are entered only through openat(O_NOFOLLOW) and a symlink is
// unlinked itself. An entry swapped for something else mid-way (a directory for a symlink) is
// looked at again. Returns 0 or the errno that stopped it.
int remove_at(int dirfd, const std::string& name, int depth) {
  int err = EBUSY;
  for (int attempt = 0; attempt < 4; ++attempt) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : errno;
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return 0;
      if ((err = errno) == EISDIR) continue;
      return err;
    }
    if (depth >= kMaxDepth) return ELOOP;
    int fd = ::openat(dirfd, name.c_str(), kDirFlags | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return 0;
      if ((err = errno) == ELOOP || err == ENOTDIR) continue;  // replaced since the fstatat
      return err;
    }
    {
      UniqueFd dir(fd);
      clear_dir(dir.get(), depth + 1);
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return 0;
    if ((err = errno) != ENOTEMPTY && err != EEXIST && err != ENOTDIR) return err;
  }
  return err;
}

// Bytes on disk of the regular files in an image directory.
uint64_t dir_bytes(int dirfd) {
  uint64_t total = 0;
  auto names = dir_names_at(dirfd);
  if (!names) return 0;
  for (const auto& n : *names) {
    struct stat st {};
    if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

int64_t mtime_ms(const struct stat& st) { return st.st_mtim.tv_sec * 1000ll + st.st_mtim.tv_nsec / 1'000'000; }

// Only the daemon may be able to change what is in the store: its owner, no one else's write bit.
Result<void> check_own_private(const struct stat& st, const std::string& what) {
  if (st.st_uid != ::geteuid())
    return data_error(what + " is owned by uid " + uid_text(st.st_uid) + ", not by prewarmd (uid " +
                      uid_text(::geteuid()) + "), so its user could have changed it");
  if (st.st_mode & 022) return data_error(what + " is writable by group or others");
  return ok();
}

// The state directory or one of its subdirectories: created 0700 if missing, opened without
// following a symlink, the daemon's own, tightened to 0700.
Result<UniqueFd> open_private_dir(int parent, const std::string& name, const std::string& shown) {
  if (::mkdirat(parent, name.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("create " + shown);
  auto fd = open_at(parent, name, kDirFlags);
  if (!fd) {
    // O_DIRECTORY|O_NOFOLLOW says ENOTDIR for a symlink too: name what is there.
    struct stat st {};
    const int e = fd.error().code;
    if ((e == ENOTDIR || e == ELOOP) && ::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      return make_error(e, shown + " is " + file_kind(st.st_mode) + ", not a directory");
    return make_error(e, "open " + shown);
  }
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return errno_error("stat " + shown);
  if (st.st_uid != ::geteuid())
    return data_error(shown + " is owned by uid " + uid_text(st.st_uid) + ", not by prewarmd (uid " +
                      uid_text(::geteuid()) + "); give it to prewarmd's user or choose another state directory");
  if ((st.st_mode & 077) && ::fchmod(fd->get(), 0700) != 0) return errno_error("chmod 0700 " + shown);
  return fd;
}

// `path` as an open parent directory and the name in it (to be opened with openat, never
// followed). The parent's own last component is not followed either, unless `follow_parent`
// (the state directory's parent is the administrator's path, e.g. /var/run -> /run).
Result<std::pair<UniqueFd, std::string>> open_parent(std::string path, bool follow_parent = false) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (!is_plain_name(name)) return make_error(EINVAL, path + " does not name a directory entry");
  PW_ASSIGN(UniqueFd fd, open_fd(parent, follow_parent ? O_RDONLY | O_DIRECTORY : kDirFlags));
  return std::pair<UniqueFd, std::string>(std::move(fd), std::move(name));
}

Result<void> write_meta_at(int dirfd, const std::string& text) {
  if (::unlinkat(dirfd, kMetaTemp, 0) != 0 && errno != ENOENT) return errno_error("remove a stale meta.json.tmp");
  {
    PW_ASSIGN(UniqueFd fd, open_at(dirfd, kMetaTemp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
    Result<void> w = write_all(fd.get(), text.data(), text.size());
    if (w && ::fchmod(fd.get(), 0600) != 0) w = errno_error("chmod meta.json");
    if (w && ::fsync(fd.get()) != 0) w = errno_error("fsync meta.json");
    if (!w) {
      ::unlinkat(dirfd, kMetaTemp, 0);
      return w.error();
    }
  }
  if (::renameat(dirfd, kMetaTemp, dirfd, kMetaName) != 0) return errno_error("rename meta.json into place");
  if (::fsync(dirfd) != 0) return errno_error("fsync the image directory");
  return ok();
}

Result<StoreEntry> parse_meta(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_error("meta.json is not valid JSON");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"] != kMetaVersion)
    return data_error("meta.json has an unknown version");
  try {
    return j.get<StoreEntry>();
  } catch (const json::exception& ex) {
    return data_error(std::string("meta.json: ") + ex.what());
  }
}

}  // namespace

bool remove_tree(const std::string& path) {
  auto at = open_parent(path);
  if (!at) return at.error().code == ENOENT;
  return remove_at(at->first.get(), at->second, 0) == 0;
}

std::vector<std::string> ImageStore::take_warnings() { return std::exchange(warnings_, {}); }

void ImageStore::put(StoreEntry e) {
  if (auto it = entries_.find(e.key); it != entries_.end()) by_app_.erase({it->second.app, it->first});
  by_app_.insert({e.app, e.key});
  std::string key = e.key;
  entries_[std::move(key)] = std::move(e);
}

void ImageStore::drop(const std::string& key) {
  if (auto it = entries_.find(key); it != entries_.end()) {
    by_app_.erase({it->second.app, key});
    entries_.erase(it);
  }
}

Result<void> ImageStore::open() {
  entries_.clear();
  by_app_.clear();
  // The state directory's own path is the administrator's; from its last component on, nothing
  // is followed.
  if (::mkdir(root_.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("create " + root_);
  {
    PW_ASSIGN(auto at, open_parent(root_, /*follow_parent=*/true));
    PW_ASSIGN(root_fd_, open_private_dir(at.first.get(), at.second, root_));
  }
  for (auto [sub, fd] : {std::pair{"store", &store_fd_}, {"incoming", &incoming_fd_}, {"quarantine", &quarantine_fd_}}) {
    // Something planted where a subdirectory belongs is removed, and the directory made anew.
    struct stat st {};
    if (::fstatat(root_fd_.get(), sub, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
      warn(root_ + "/" + sub + " is " + file_kind(st.st_mode) + ", not a directory; removed");
      if (::unlinkat(root_fd_.get(), sub, 0) != 0) return errno_error("remove " + root_ + "/" + sub);
    }
    PW_ASSIGN(*fd, open_private_dir(root_fd_.get(), sub, root_ + "/" + sub));
  }

  // A capture interrupted by a crash or SIGKILL left at most an unpublished directory here.
  if (auto names = dir_names_at(incoming_fd_.get())) {
    for (const auto& n : *names) {
      struct stat st {};
      if (::fstatat(incoming_fd_.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
          !S_ISREG(st.st_mode))
        warn("incoming/" + n + " is " + file_kind(st.st_mode) + ", not a capture; removed");
      if (int e = remove_at(incoming_fd_.get(), n, 0); e != 0)
        warn("incoming/" + n + ": cannot remove it: " + std::strerror(e));
    }
  }
  if (auto names = dir_names_at(quarantine_fd_.get())) {
    for (const auto& n : *names) {
      struct stat st {};
      if (::fstatat(quarantine_fd_.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) continue;
      warn("quarantine/" + n + " is " + file_kind(st.st_mode) + ", not an image; removed");
      if (int e = remove_at(quarantine_fd_.get(), n, 0); e != 0) warn("quarantine/" + n + ": cannot remove it: " + std::strerror(e));
    }
  }
  PW_ASSIGN(std::vector<std::string> names, dir_names_at(store_fd_.get()));
  for (const auto& n : names) {
    struct stat st {};
    if (::fstatat(store_fd_.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISDIR(st.st_mode)) {
      warn("store/" + n + " is " + file_kind(st.st_mode) + ", not an image directory; removed");
      if (int e = remove_at(store_fd_.get(), n, 0); e != 0) warn("store/" + n + ": cannot remove it: " + std::strerror(e));
      continue;
    }
    auto e = load_entry(n);
    if (!e) {
      warn(e.error().describe() + "; image quarantined");
      quarantine(n);
      continue;
    }
    put(std::move(*e));
  }
  return ok();
}

// One image directory, checked entry by entry without following or opening anything but
// regular files: owned by the daemon, private, complete, with a meta.json that names it.
Result<StoreEntry> ImageStore::load_entry(const std::string& key) {
  const std::string shown = "store/" + key;
  auto d = open_at(store_fd_.get(), key, kDirFlags);
  if (!d) return make_error(d.error().code, shown + ": cannot open the image directory");
  struct stat st {};
  if (::fstat(d->get(), &st) != 0) return errno_error(shown + ": stat");
  PW_TRY(check_own_private(st, shown));
  if ((st.st_mode & 077) && ::fchmod(d->get(), 0700) != 0) return errno_error(shown + ": chmod 0700");
  const int64_t last_used = mtime_ms(st);

  auto names = dir_names_at(d->get());
  if (!names) return make_error(names.error().code, shown + ": cannot list it");
  bool manifest = false, pages = false, meta = false;
  uint64_t bytes = 0;
  for (const auto& n : *names) {
    const std::string what = shown + "/" + n;
    if (::fstatat(d->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno_error(what + ": stat");
    if (!S_ISREG(st.st_mode)) return data_error(what + " is " + file_kind(st.st_mode) + ", not a regular file");
    PW_TRY(check_own_private(st, what));
    bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    manifest |= n == kManifestName, pages |= n == kPagesName, meta |= n == kMetaName;
  }
  if (!meta) return make_error(ENOENT, shown + ": meta.json is missing");
  if (!manifest || !pages) return make_error(ENOENT, shown + ": the image is incomplete (no " +
                                                         std::string(manifest ? kPagesName : kManifestName) + ")");
  PW_ASSIGN(UniqueFd mf, open_regular_at(d->get(), kMetaName, shown));
  if (::fstat(mf.get(), &st) != 0) return errno_error(shown + ": stat meta.json");
  if (static_cast<uint64_t>(st.st_size) > kMaxMetaBytes) return data_error(shown + ": meta.json is implausibly large");
  auto text = read_fd(mf.get());
  if (!text) return make_error(text.error().code, shown + ": read meta.json");
  auto e = parse_meta(*text);
  if (!e) return data_error(shown + ": " + e.error().describe());
  if (e->key != key) return data_error(shown + ": meta.json names another image (" + e->key + ")");
  e->last_used_ms = last_used;
  e->bytes = bytes;
  return e;
}

Result<ImageFds> ImageStore::open_image(const std::string& key) const {
  const std::string shown = image_dir(key);
  if (!is_plain_name(key) || !entries_.count(key)) return make_error(ENOENT, shown + ": no such image in the store");
  auto d = open_at(store_fd_.get(), key, kDirFlags);
  if (!d) return make_error(d.error().code, shown + ": cannot open the image directory");
  struct stat st {};
  if (::fstat(d->get(), &st) != 0) return errno_error(shown + ": stat");
  PW_TRY(check_own_private(st, shown));
  PW_ASSIGN(ImageFds fds, open_image_files_at(d->get(), shown));
  for (auto [fd, name] : {std::pair{&fds.manifest, kManifestName}, {&fds.pages, kPagesName}}) {
    if (::fstat(fd->get(), &st) != 0) return errno_error(shown + ": stat " + name);
    PW_TRY(check_own_private(st, shown + "/" + name));
  }
  return fds;
}

uint64_t ImageStore::incoming_bytes(const std::string& incoming) const {
  auto at = open_parent(incoming);
  if (!at) return 0;
  auto d = open_at(at->first.get(), at->second, kDirFlags);
  return d ? dir_bytes(d->get()) : 0;
}

Result<void> ImageStore::publish(const std::string& incoming, StoreEntry e) {
  if (!is_plain_name(e.key)) return data_error("publish " + incoming + ": invalid image key \"" + e.key + "\"");
  PW_ASSIGN(auto at, open_parent(incoming));
  auto& [parent, name] = at;
  PW_ASSIGN(UniqueFd d, open_at(parent.get(), name, kDirFlags));
  struct stat st {};
  if (::fstat(d.get(), &st) != 0) return errno_error("stat " + incoming);
  if (st.st_uid != ::geteuid())
    return data_error(incoming + " is owned by uid " + uid_text(st.st_uid) + ", not by prewarmd; not publishing it");
  // Every entry a regular file of ours, made private; the image stays the daemon's (the launcher
  // gets read-only descriptors), so the app's user can never change what root will read.
  PW_ASSIGN(std::vector<std::string> names, dir_names_at(d.get()));
  bool manifest = false, pages = false;
  for (const auto& n : names) {
    PW_ASSIGN(UniqueFd f, open_regular_at(d.get(), n, incoming));
    if (::fstat(f.get(), &st) != 0) return errno_error("stat " + incoming + "/" + n);
    if (st.st_uid != ::geteuid()) return data_error(incoming + "/" + n + " is not prewarmd's; not publishing it");
    if ((st.st_mode & 07777) != 0600 && ::fchmod(f.get(), 0600) != 0) return errno_error("chmod 0600 " + incoming + "/" + n);
    manifest |= n == kManifestName, pages |= n == kPagesName;
  }
  if (!manifest || !pages)
    return make_error(ENOENT, incoming + ": the image is incomplete (no " + std::string(manifest ? kPagesName : kManifestName) + ")");
  if (::fchmod(d.get(), 0700) != 0) return errno_error("chmod 0700 " + incoming);

  e.created_ms = e.last_used_ms = wall_ms();
  json meta = e;
  meta["version"] = kMetaVersion;
  if (auto w = write_meta_at(d.get(), proto::json_text(meta, 1)); !w)
    return make_error(w.error().code, incoming + ": " + w.error().message);

  // Into place in one rename; an image (or anything else) already there is swapped out
  // atomically and removed, so a launch sees the old image or the new one.
  const std::string dest = image_dir(e.key);
  if (::fstatat(store_fd_.get(), e.key.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (::renameat2(parent.get(), name.c_str(), store_fd_.get(), e.key.c_str(), RENAME_EXCHANGE) != 0)
      return errno_error("publish " + dest);
    if (int err = remove_at(parent.get(), name, 0); err != 0)
      warn(incoming + ": cannot remove the image it replaced: " + std::strerror(err));
  } else if (::renameat2(parent.get(), name.c_str(), store_fd_.get(), e.key.c_str(), RENAME_NOREPLACE) != 0) {
    return errno_error("publish " + dest);
  }
  ::fsync(store_fd_.get());
  e.bytes = dir_bytes(d.get());
  put(std::move(e));
  return ok();
}

void ImageStore::remove(const std::string& key) {
  drop(key);
  if (!is_plain_name(key)) return;
  if (int e = remove_at(store_fd_.get(), key, 0); e != 0) warn("store/" + key + ": cannot remove it: " + std::strerror(e));
}

void ImageStore::quarantine(const std::string& key) {
  drop(key);
  if (!is_plain_name(key)) return;
  const std::string aside = key + "-" + std::to_string(wall_ms());
  if (::renameat2(store_fd_.get(), key.c_str(), quarantine_fd_.get(), aside.c_str(), RENAME_NOREPLACE) != 0 &&
      errno != ENOENT) {
    warn("store/" + key + ": cannot move it to quarantine/ (" + std::strerror(errno) + "); removing it");
    remove(key);
  }
  prune_quarantine();
}

void ImageStore::prune_quarantine() {
  // Newest first by the time in the name (KEY-MS): rename keeps a directory's mtime.
  auto when = [](const std::string& n) {
    auto dash = n.rfind('-');
    return dash == std::string::npos ? 0ll : std::atoll(n.c_str() + dash + 1);
  };
  auto names = dir_names_at(quarantine_fd_.get());
  if (!names) return;
  auto& old = *names;
  std::sort(old.begin(), old.end(), [&](const std::string& a, const std::string& b) {
    return when(a) != when(b) ? when(a) > when(b) : a > b;
  });
  for (size_t i = kQuarantineKept; i < old.size(); ++i)
    if (int e = remove_at(quarantine_fd_.get(), old[i], 0); e != 0)
      warn("quarantine/" + old[i] + ": cannot remove it: " + std::strerror(e));
}

void ImageStore::touch(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  it->second.last_used_ms = wall_ms();
  if (auto d = open_at(store_fd_.get(), key, kDirFlags)) ::futimens(d->get(), nullptr);
}

uint64_t ImageStore::total_bytes() const {
  uint64_t t = 0;
  for (const auto& [k, e] : entries_) t += e.bytes;
  return t;
}

std::vector<StoreEntry> ImageStore::evict(uint64_t budget, const std::string& keep) {
  std::vector<policy::StoredImage> all;
  for (const auto& [k, e] : entries_) all.push_back({k, e.bytes, e.last_used_ms});
  std::vector<StoreEntry> dropped;
  for (const auto& k : policy::choose_evictions(all, budget, keep)) {
    dropped.push_back(entries_.at(k));
    remove(k);
  }
  return dropped;
}

std::vector<std::pair<std::string, ImageStore::Usage>> ImageStore::usage_by_app() const {
  std::vector<std::pair<std::string, Usage>> out;
  for (const auto& [app, key] : by_app_) {
    if (out.empty() || out.back().first != app) out.emplace_back(app, Usage{});
    out.back().second.bytes += entries_.at(key).bytes;
    ++out.back().second.images;
  }
  return out;
}

std::vector<const StoreEntry*> ImageStore::entries_of(const std::string& app) const {
  std::vector<const StoreEntry*> out;
  for (auto it = by_app_.lower_bound({app, ""}); it != by_app_.end() && it->first == app; ++it)
    out.push_back(&entries_.at(it->second));
  return out;
}

}  // namespace prewarm
