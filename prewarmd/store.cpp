#include "prewarmd/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "policy/eviction.h"
#include "prewarmd/protocol.h"
#include "prewarmd/registry.h"
#include "snapshot/clock.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

using nlohmann::json;
constexpr int kMetaVersion = 1;
constexpr size_t kQuarantineKept = 4;

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string n = e->d_name; n != "." && n != "..") out.push_back(n);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

json to_json(const policy::FileRecord& f) {
  return {{"path", f.path},         {"dev", f.dev},           {"ino", f.ino},
          {"size", f.size},         {"mtime_ns", f.mtime_ns}, {"ctime_ns", f.ctime_ns},
          {"hash", f.content_hash}};
}

Result<StoreEntry> parse_meta(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_error("meta.json is not valid JSON");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"] != kMetaVersion)
    return data_error("meta.json has an unknown version");
  try {
    StoreEntry e;
    e.key = j.at("key").get<std::string>();
    e.app = j.at("app").get<std::string>();
    e.uid = j.at("uid").get<uid_t>();
    e.gid = j.at("gid").get<gid_t>();
    e.created_ms = j.value("created_ms", 0ll);
    e.capture_ms = j.value("capture_ms", 0.0);
    e.freeze_ms = j.value("freeze_ms", 0.0);
    for (const auto& f : j.at("files")) {
      policy::FileRecord r;
      r.path = f.at("path").get<std::string>();
      r.dev = f.at("dev").get<uint64_t>();
      r.ino = f.at("ino").get<uint64_t>();
      r.size = f.at("size").get<uint64_t>();
      r.mtime_ns = f.at("mtime_ns").get<int64_t>();
      r.ctime_ns = f.at("ctime_ns").get<int64_t>();
      r.content_hash = f.at("hash").get<std::string>();
      e.files.push_back(std::move(r));
    }
    return e;
  } catch (const json::exception& ex) {
    return data_error(std::string("meta.json: ") + ex.what());
  }
}

uint64_t dir_bytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& n : list_dir(dir)) {
    struct stat st {};
    if (::lstat((dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

Result<void> make_private_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("create " + path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error("stat " + path);
  if (!S_ISDIR(st.st_mode)) return data_error(path + " is not a directory");
  if (st.st_uid == ::geteuid() && (st.st_mode & 077) && ::chmod(path.c_str(), 0700) != 0)
    return errno_error("chmod 0700 " + path);
  return ok();
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& n : list_dir(path)) remove_tree(path + "/" + n);
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

Result<void> ImageStore::open() {
  PW_TRY(make_private_dir(root_));
  for (const char* sub : {"/store", "/incoming", "/quarantine"}) PW_TRY(make_private_dir(root_ + sub));
  // A capture interrupted by a crash or SIGKILL left at most an unpublished directory here.
  for (const auto& n : list_dir(root_ + "/incoming")) remove_tree(root_ + "/incoming/" + n);
  for (const auto& n : list_dir(root_ + "/store")) {
    const std::string dir = image_dir(n);
    auto meta = read_file(dir + "/meta.json");
    Result<StoreEntry> e = meta ? parse_meta(*meta) : Result<StoreEntry>(meta.error());
    if (!e || e->key != n) {
      quarantine(n);
      continue;
    }
    struct stat st {};
    e->last_used_ms = ::stat(dir.c_str(), &st) == 0
                          ? st.st_mtim.tv_sec * 1000ll + st.st_mtim.tv_nsec / 1'000'000
                          : e->created_ms;
    e->bytes = dir_bytes(dir);
    entries_[n] = std::move(*e);
  }
  return ok();
}

Result<void> ImageStore::publish(const std::string& incoming, StoreEntry e) {
  e.created_ms = e.last_used_ms = wall_ms();
  json files = json::array();
  for (const auto& f : e.files) files.push_back(to_json(f));
  json meta = {{"version", kMetaVersion}, {"key", e.key},   {"app", e.app},
               {"uid", e.uid},            {"gid", e.gid},   {"created_ms", e.created_ms},
               {"capture_ms", e.capture_ms}, {"freeze_ms", e.freeze_ms}, {"files", files}};
  PW_TRY(write_file_atomic(incoming + "/meta.json", proto::json_text(meta, 1), 0600));
  // The image holds the app's memory: only its user (and root) may read it.
  if (e.uid != ::geteuid()) {
    for (const auto& n : list_dir(incoming))
      if (::lchown((incoming + "/" + n).c_str(), e.uid, e.gid) != 0)
        return errno_error("hand " + incoming + "/" + n + " to uid " + std::to_string(e.uid));
    if (::lchown(incoming.c_str(), e.uid, e.gid) != 0) return errno_error("hand " + incoming + " to its user");
  }
  const std::string dest = image_dir(e.key);
  if (entries_.count(e.key) || ::access(dest.c_str(), F_OK) == 0) remove(e.key);
  if (::rename(incoming.c_str(), dest.c_str()) != 0) return errno_error("publish " + dest);
  if (auto d = open_fd(root_ + "/store", O_RDONLY | O_DIRECTORY)) ::fsync(d->get());
  e.bytes = dir_bytes(dest);
  entries_[e.key] = std::move(e);
  return ok();
}

void ImageStore::remove(const std::string& key) {
  entries_.erase(key);
  remove_tree(image_dir(key));
}

void ImageStore::quarantine(const std::string& key) {
  entries_.erase(key);
  const std::string q = root_ + "/quarantine";
  if (::rename(image_dir(key).c_str(), (q + "/" + key + "-" + std::to_string(wall_ms())).c_str()) != 0)
    remove_tree(image_dir(key));
  // Newest first by the time in the name (KEY-MS): rename keeps a directory's mtime.
  auto when = [](const std::string& n) {
    auto dash = n.rfind('-');
    return dash == std::string::npos ? 0ll : std::atoll(n.c_str() + dash + 1);
  };
  auto old = list_dir(q);
  std::sort(old.begin(), old.end(), [&](const std::string& a, const std::string& b) {
    return when(a) != when(b) ? when(a) > when(b) : a > b;
  });
  for (size_t i = kQuarantineKept; i < old.size(); ++i) remove_tree(q + "/" + old[i]);
}

void ImageStore::touch(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  it->second.last_used_ms = wall_ms();
  ::utimensat(AT_FDCWD, image_dir(key).c_str(), nullptr, 0);
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

std::vector<const StoreEntry*> ImageStore::entries_of(const std::string& app) const {
  std::vector<const StoreEntry*> out;
  for (const auto& [k, e] : entries_)
    if (e.app == app) out.push_back(&e);
  return out;
}

}  // namespace prewarm
