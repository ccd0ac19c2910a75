// File identity: one rule for "is this still the file we recorded".
#include "snapshot/file_identity.h"

#include <nlohmann/json.hpp>

#include "snapshot/snapshot.pb.h"

namespace prewarm {

FileIdentity FileIdentity::of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec,
          st.st_ctim.tv_sec * 1'000'000'000ll + st.st_ctim.tv_nsec};
}

Result<FileIdentity> identity_of_fd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat fd " + std::to_string(fd));
  return FileIdentity::of(st);
}

Result<FileIdentity> identity_of_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
  return FileIdentity::of(st);
}

bool is_own_proc_path(std::string_view path) {
  for (std::string_view own : {"/proc/self", "/proc/thread-self"})
    if (path == own || (path.starts_with(own) && path.size() > own.size() && path[own.size()] == '/')) return true;
  return false;
}

std::optional<std::string_view> changed(const FileIdentity& was, const FileIdentity& now) {
  if (!same_inode(was, now)) return "replaced (new inode)";
  if (now.size != was.size) return "size changed";
  if (now.mtime_ns != was.mtime_ns) return "modified (mtime)";
  if (now.ctime_ns != was.ctime_ns) return "changed (ctime)";
  return std::nullopt;
}

void to_proto(const FileIdentity& id, pb::FileId* out) {
  out->set_dev(id.dev);
  out->set_inode(id.ino);
  out->set_size(id.size);
  out->set_mtime_ns(id.mtime_ns);
  out->set_ctime_ns(id.ctime_ns);
}

FileIdentity from_proto(const pb::FileId& id) {
  return {id.dev(), id.inode(), id.size(), id.mtime_ns(), id.ctime_ns()};
}

void to_json(nlohmann::json& j, const FileRecord& f) {
  j = {{"path", f.path},   {"dev", f.id.dev},           {"ino", f.id.ino},          {"size", f.id.size},
          {"mtime_ns", f.id.mtime_ns}, {"ctime_ns", f.id.ctime_ns}, {"hash", f.content_hash}};
}

void from_json(const nlohmann::json& j, FileRecord& r) {
  j.at("path").get_to(r.path);
  j.at("dev").get_to(r.id.dev);
  j.at("ino").get_to(r.id.ino);
  j.at("size").get_to(r.id.size);
  j.at("mtime_ns").get_to(r.id.mtime_ns);
  j.at("ctime_ns").get_to(r.id.ctime_ns);
  j.at("hash").get_to(r.content_hash);
}

}  // namespace prewarm
