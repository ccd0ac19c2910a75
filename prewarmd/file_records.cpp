#include "prewarmd/file_records.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <memory>

#include "snapshot/unique_fd.h"

namespace prewarm {
Result<FileRecord> record_file(const std::string& path) {
  // O_NONBLOCK: a --watch path may be a FIFO or a device, whose open would otherwise wait.
  PW_ASSIGN(auto fd, open_fd(path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  struct stat before {};
  if (::fstat(fd.get(), &before) != 0) return errno_error("stat " + path);
  FileRecord rec;
  rec.path = path;
  rec.id = FileIdentity::of(before);
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> h(XXH3_createState(), XXH3_freeState);
  XXH3_128bits_reset(h.get());
  if (S_ISREG(before.st_mode)) {
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("read " + path);
      if (n == 0) break;
      XXH3_128bits_update(h.get(), buf.data(), static_cast<size_t>(n));
    }
  } else {
    // Directories and the like (a --watch path): their identity and times are what counts.
    XXH3_128bits_update(h.get(), &before.st_mode, sizeof before.st_mode);
  }
  struct stat after {};
  if (::fstat(fd.get(), &after) != 0) return errno_error("stat " + path);
  if (changed(rec.id, FileIdentity::of(after)))
    return data_error(path + " changed while it was being hashed");
  XXH128_hash_t d = XXH3_128bits_digest(h.get());
  rec.content_hash = policy::hash_hex(d.high64, d.low64);
  return rec;
}

std::vector<std::string> dependency_paths(const pb::Snapshot& snap, const std::vector<std::string>& argv,
                                          const std::string& cwd,
                                          const std::vector<std::string>& watch) {
  std::vector<std::string> out;
  if (!snap.process().exe_path().empty()) out.push_back(snap.process().exe_path());
  for (const auto& m : snap.mappings())
    if (m.kind() == pb::Mapping::FILE) out.push_back(m.name());
  // Kernel objects (pipes, eventfds, ...) have no file to record, nor has the app's own /proc
  // entry: prewarmd's stat of /proc/self is its own, so recording it made every image stale.
  for (const auto& f : snap.files())
    if (f.kind() == pb::FD_FILE && !f.directory() && !f.char_device() && !is_own_proc_path(f.path()))
      out.push_back(f.path());
  for (const auto& a : argv) {
    if (a.empty() || a.size() > 4096) continue;
    std::string p = a[0] == '/' ? a : cwd + "/" + a;
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out.push_back(p);
  }
  for (const auto& w : watch) out.push_back(w);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string first_change(const std::vector<FileRecord>& files) {
  for (const auto& f : files) {
    auto now = identity_of_path(f.path);
    if (!now) return f.path + ": missing";
    if (auto why = changed(f.id, *now)) return f.path + ": " + std::string(*why);
  }
  return "";
}

}  // namespace prewarm
