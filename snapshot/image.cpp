// Writing and loading images.
#include "snapshot/image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "snapshot/dir_entries.h"

namespace prewarm {
namespace {

constexpr uint64_t kUserAddressLimit = 1ull << 47;

std::string parent_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<void> fsync_path(const std::string& path, int flags) {
  PW_ASSIGN(UniqueFd fd, open_fd(path, flags));
  if (::fsync(fd.get()) != 0) return errno_error("fsync " + path);
  return ok();
}

// Removes a flat image directory (files only). By its descriptor: after a RENAME_EXCHANGE it
// holds the previous image, whose directory someone else may be able to swap for a symlink.
void remove_tree(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    UniqueFd dfd(fd);
    if (auto names = dir_names_at(dfd.get()))
      for (const auto& n : *names) ::unlinkat(dfd.get(), n.c_str(), 0);
  }
  ::rmdir(dir.c_str());
}

bool is_empty_dir(const std::string& dir) {
  auto names = dir_names(dir);
  return names && names->empty();
}

}  // namespace

uint64_t xxh3_64(const void* data, size_t len) { return XXH3_64bits(data, len); }

Result<ImageWriter> ImageWriter::create(const std::string& dir) {
  ImageWriter w;
  w.dir_ = dir;
  while (w.dir_.size() > 1 && w.dir_.back() == '/') w.dir_.pop_back();
  std::string tmpl = w.dir_ + ".tmp-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return errno_error("create temporary directory " + tmpl);
  w.tmp_dir_ = tmpl;  // mkdtemp makes it 0700
  auto pages = open_fd(w.tmp_dir_ + "/" + kPagesName, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!pages) {
    remove_tree(w.tmp_dir_);
    return pages.error();
  }
  w.pages_ = std::move(pages.value());
  return w;
}

ImageWriter::ImageWriter(ImageWriter&& o) noexcept
    : dir_(std::move(o.dir_)),
      tmp_dir_(std::move(o.tmp_dir_)),
      pages_(std::move(o.pages_)),
      pages_size_(o.pages_size_),
      committed_(o.committed_) {
  o.tmp_dir_.clear();
}

ImageWriter::~ImageWriter() {
  if (!committed_ && !tmp_dir_.empty()) remove_tree(tmp_dir_);
}

Result<void> ImageWriter::append_run(pb::Snapshot& snap, uint64_t addr, const void* data,
                                     uint64_t len) {
  auto w = write_all(pages_.get(), data, len);
  if (!w) return make_error(w.error().code, "write " + tmp_dir_ + "/" + kPagesName);
  auto* run = snap.add_page_runs();
  run->set_addr(addr);
  run->set_len(len);
  run->set_file_offset(pages_size_);
  run->set_xxh3(xxh3_64(data, len));
  pages_size_ += len;
  return ok();
}

Result<void> ImageWriter::commit(pb::Snapshot& snap) {
  snap.set_format_version(kFormatVersion);
  snap.set_pages_img_size(pages_size_);
  std::string manifest;
  if (!snap.SerializeToString(&manifest)) return data_error("cannot serialize snapshot.pb");
  {
    PW_ASSIGN(UniqueFd mf, open_fd(tmp_dir_ + "/" + kManifestName,
                                   O_WRONLY | O_CREAT | O_EXCL, 0600));
    auto w = write_all(mf.get(), manifest.data(), manifest.size());
    if (!w) return make_error(w.error().code, "write " + tmp_dir_ + "/" + kManifestName);
    if (::fsync(mf.get()) != 0) return errno_error("fsync snapshot.pb");
  }
  if (::fsync(pages_.get()) != 0) return errno_error("fsync pages.img");
  pages_.reset();
  PW_TRY(fsync_path(tmp_dir_, O_RDONLY | O_DIRECTORY));

  // Publish: a missing or empty target is replaced by rename; an existing image is swapped out
  // atomically and then removed. Anything else at the target is left alone.
  struct stat st {};
  if (::stat(dir_.c_str(), &st) == 0 && !is_empty_dir(dir_)) {
    if (::access((dir_ + "/" + kManifestName).c_str(), F_OK) != 0)
      return make_error(EEXIST, dir_ + " exists and is not a prewarm image; not replacing it");
    if (::syscall(SYS_renameat2, AT_FDCWD, tmp_dir_.c_str(), AT_FDCWD, dir_.c_str(),
                  RENAME_EXCHANGE) != 0)
      return errno_error("replace image " + dir_);
    committed_ = true;
    remove_tree(tmp_dir_);  // now holds the old image
  } else {
    if (::rename(tmp_dir_.c_str(), dir_.c_str()) != 0) return errno_error("publish image " + dir_);
    committed_ = true;
  }
  return fsync_path(parent_of(dir_), O_RDONLY | O_DIRECTORY);
}

Result<void> check_structure(const pb::Snapshot& snap, uint64_t pages_file_size) {
  if (snap.format_version() != kFormatVersion)
    return data_error("image format version " + std::to_string(snap.format_version()) +
                      " is not supported (this prewarm reads version " +
                      std::to_string(kFormatVersion) + ")");
  if (snap.pages_img_size() != pages_file_size)
    return data_error("pages.img is " + std::to_string(pages_file_size) + " bytes, the manifest says " +
                      std::to_string(snap.pages_img_size()) + " (truncated or replaced)");
  if (snap.mappings_size() == 0) return data_error("image has no mappings");
  uint64_t prev_end = 0;
  for (const auto& m : snap.mappings()) {
    if (m.start() % kPageSize || m.end() % kPageSize || m.start() >= m.end())
      return data_error("mapping " + m.name() + " has an invalid range");
    if (m.end() > kUserAddressLimit) return data_error("mapping " + m.name() + " ends beyond the user address space");
    if (m.start() < prev_end) return data_error("mappings overlap or are out of order at " + m.name());
    if (m.prot() & ~7u) return data_error("mapping " + m.name() + " has invalid protections");
    prev_end = m.end();
  }
  // Runs are sorted by address and each lies within one mapping; file offsets are contiguous.
  uint64_t expect_off = 0;
  uint64_t prev_run_end = 0;
  int mi = 0;
  for (const auto& r : snap.page_runs()) {
    if (r.len() == 0 || r.len() % kPageSize || r.addr() % kPageSize || r.addr() < prev_run_end)
      return data_error("page run at " + std::to_string(r.addr()) + " is malformed");
    if (r.file_offset() != expect_off || r.len() > pages_file_size - r.file_offset())
      return data_error("page run points past the end of pages.img");
    while (mi < snap.mappings_size() && snap.mappings(mi).end() <= r.addr()) ++mi;
    if (mi == snap.mappings_size() || snap.mappings(mi).start() > r.addr() ||
        r.len() > snap.mappings(mi).end() - r.addr())
      return data_error("page run is outside every mapping");
    auto kind = snap.mappings(mi).kind();
    if (kind != pb::Mapping::ANON && kind != pb::Mapping::FILE && kind != pb::Mapping::SHARED_ANON)
      return data_error("page run inside a mapping that is never stored");
    expect_off += r.len();
    prev_run_end = r.addr() + r.len();
  }
  if (expect_off != pages_file_size) return data_error("pages.img has data no run accounts for");
  if (!snap.has_regs() || snap.regs().xsave().size() < 576)
    return data_error("image has no register state");
  return ok();
}

const char* file_kind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symlink";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "an object of unknown type";
  }
}

Result<UniqueFd> open_regular_at(int dirfd, const std::string& name, const std::string& label) {
  // O_NONBLOCK: opening a FIFO planted in place of the file must not wait for a writer.
  auto f = open_at(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (!f) {
    const int e = f.error().code;
    if (e == ENOENT) return make_error(ENOENT, label + ": " + name + " is missing (the image is incomplete or was removed)");
    if (e == ELOOP) return make_error(ELOOP, label + ": " + name + " is a symlink, not a regular file; refusing it");
    return make_error(e, label + ": open " + name);
  }
  struct stat st {};
  if (::fstat(f->get(), &st) != 0) return errno_error(label + ": stat " + name);
  if (!S_ISREG(st.st_mode))
    return data_error(label + ": " + name + " is " + file_kind(st.st_mode) + ", not a regular file; refusing it");
  const int fl = ::fcntl(f->get(), F_GETFL);
  if (fl < 0 || ::fcntl(f->get(), F_SETFL, fl & ~O_NONBLOCK) != 0) return errno_error(label + ": fcntl " + name);
  return f;
}

Result<ImageFds> open_image_files_at(int dirfd, const std::string& label) {
  ImageFds fds;
  PW_ASSIGN(fds.manifest, open_regular_at(dirfd, kManifestName, label));
  PW_ASSIGN(fds.pages, open_regular_at(dirfd, kPagesName, label));
  return fds;
}

Result<ImageFds> open_image_files(const std::string& dir) {
  PW_ASSIGN(UniqueFd dfd, open_fd(dir, O_RDONLY | O_DIRECTORY));
  return open_image_files_at(dfd.get(), dir);
}

Result<LoadedImage> load_image(UniqueFd manifest, UniqueFd pages, std::string label) {
  // The descriptors may come from another process: check them as if we had opened them.
  struct stat st {};
  if (!manifest.valid() || !pages.valid()) return make_error(EBADF, label + ": no image files");
  if (::fstat(manifest.get(), &st) != 0) return errno_error(label + ": stat " + kManifestName);
  if (!S_ISREG(st.st_mode)) return data_error(label + ": " + kManifestName + " is " + file_kind(st.st_mode) + ", not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxManifestBytes)
    return data_error(label + ": " + kManifestName + " is implausibly large");
  // pread from 0: the file offset of a passed descriptor is not ours to trust.
  std::string text(static_cast<size_t>(st.st_size), '\0');
  if (auto r = pread_all(manifest.get(), text.data(), text.size(), 0); !r)
    return make_error(r.error().code, label + ": read " + kManifestName);
  if (::fstat(pages.get(), &st) != 0) return errno_error(label + ": stat " + kPagesName);
  if (!S_ISREG(st.st_mode)) return data_error(label + ": " + kPagesName + " is " + file_kind(st.st_mode) + ", not a regular file");
  auto snap = parse_manifest(text, static_cast<uint64_t>(st.st_size));
  if (!snap) return data_error(label + ": " + kManifestName + ": " + snap.error().describe());
  LoadedImage img;
  img.snap = std::move(*snap);
  img.pages = std::move(pages);
  img.label = std::move(label);
  return img;
}

Result<LoadedImage> load_image(const std::string& dir) {
  PW_ASSIGN(ImageFds fds, open_image_files(dir));
  return load_image(std::move(fds.manifest), std::move(fds.pages), dir);
}

Result<pb::Snapshot> parse_manifest(std::string_view bytes, uint64_t pages_file_size) {
  pb::Snapshot snap;
  if (bytes.size() > kMaxManifestBytes) return data_error("implausibly large");
  if (!snap.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return data_error("does not parse (corrupted or not an image)");
  PW_TRY(check_structure(snap, pages_file_size));
  return snap;
}

VmFlags vm_flags_of(const pb::Mapping& m) {
  if (m.has_vm_flag_bits()) return VmFlags::from_bits(m.vm_flag_bits());
  return parse_vm_flags(m.vm_flags()).known;
}

}  // namespace prewarm
