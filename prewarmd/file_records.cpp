#include "prewarmd/file_records.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <memory>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

policy::StatNow from_stat(const struct stat& st) {
  return {true,
          static_cast<uint64_t>(st.st_dev),
          static_cast<uint64_t>(st.st_ino),
          static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec,
          st.st_ctim.tv_sec * 1'000'000'000ll + st.st_ctim.tv_nsec};
}

}  // namespace

policy::StatNow stat_now(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return from_stat(st);
}

Result<policy::FileRecord> record_file(const std::string& path) {
  // O_NONBLOCK: a --watch path may be a FIFO or a device, whose open would otherwise wait.
  PW_ASSIGN(auto fd, open_fd(path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  struct stat before {};
  if (::fstat(fd.get(), &before) != 0) return errno_error("stat " + path);
  policy::FileRecord rec;
  rec.path = path;
  auto s = from_stat(before);
  rec.dev = s.dev, rec.ino = s.ino, rec.size = s.size, rec.mtime_ns = s.mtime_ns, rec.ctime_ns = s.ctime_ns;
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
  if (from_stat(after).mtime_ns != s.mtime_ns || after.st_size != before.st_size)
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
  for (const auto& f : snap.files())  // kernel objects (pipes, eventfds, ...) have no file to record
    if (f.kind() == pb::FD_FILE && !f.directory() && !f.char_device()) out.push_back(f.path());
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

std::string first_change(const std::vector<policy::FileRecord>& files) {
  for (const auto& f : files) {
    std::string why = policy::file_change(f, stat_now(f.path));
    if (!why.empty()) return f.path + ": " + why;
  }
  return "";
}

}  // namespace prewarm
