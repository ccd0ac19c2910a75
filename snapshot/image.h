// The on-disk image: DIR/snapshot.pb (manifest) + DIR/pages.img (page runs, page aligned).
// Written to a temporary sibling directory, fsynced, then renamed into place, so a reader sees a
// complete image or none.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"
#include "snapshot/vm_flags.h"

namespace prewarm {

inline constexpr uint32_t kFormatVersion = 3;  // 2: threads (a reader of 1 would drop them); 3: tid words
inline constexpr uint64_t kPageSize = 4096;
inline constexpr const char* kManifestName = "snapshot.pb";
inline constexpr const char* kPagesName = "pages.img";
inline constexpr uint64_t kMaxManifestBytes = 64ull << 20;

class ImageWriter {
 public:
  // Prepares a private temporary directory next to `dir` (0700; files 0600).
  static Result<ImageWriter> create(const std::string& dir);
  ImageWriter(ImageWriter&&) noexcept;
  ImageWriter& operator=(ImageWriter&&) = delete;
  ~ImageWriter();  // removes the temporary directory unless committed

  // Appends one run of page contents and records it (with its checksum) in `snap`.
  Result<void> append_run(pb::Snapshot& snap, uint64_t addr, const void* data, uint64_t len);
  // Writes the manifest, fsyncs everything and publishes the image at `dir`.
  Result<void> commit(pb::Snapshot& snap);

 private:
  ImageWriter() = default;
  std::string dir_, tmp_dir_;
  UniqueFd pages_;
  uint64_t pages_size_ = 0;
  bool committed_ = false;
};

struct LoadedImage {
  pb::Snapshot snap;
  UniqueFd pages;     // open pages.img
  std::string label;  // where it came from (a directory, or what the caller named it), for messages
};

// The two files of an image, read-only and blocking, each checked to be a regular file.
struct ImageFds {
  UniqueFd manifest;  // snapshot.pb
  UniqueFd pages;     // pages.img
};

// Opens snapshot.pb and pages.img in the directory `dirfd` without following a symlink and
// without blocking on a FIFO (O_NONBLOCK until fstat says S_ISREG). `label` names the image in
// errors.
Result<ImageFds> open_image_files_at(int dirfd, const std::string& label);
// The same in the directory `dir` (which may itself be reached through symlinks, e.g. /proc/self/fd/N).
Result<ImageFds> open_image_files(const std::string& dir);
// Opens one file of `dirfd` that way (O_RDONLY|O_NOFOLLOW|O_NONBLOCK, S_ISREG checked, then
// O_NONBLOCK cleared). Refusals: ENOENT (missing), ELOOP (a symlink), a data error (anything else
// that is not a regular file).
Result<UniqueFd> open_regular_at(int dirfd, const std::string& name, const std::string& label);
// "a FIFO", "a symlink", "a directory", ... for messages about a file of the wrong type.
const char* file_kind(mode_t mode);

// Parses an image (from its two open files, or from a directory) and checks its structure (version, ordering, bounds, page runs within their
// mappings and within pages.img). Does not read page contents.
Result<LoadedImage> load_image(UniqueFd manifest, UniqueFd pages, std::string label);
Result<LoadedImage> load_image(const std::string& dir);
Result<void> check_structure(const pb::Snapshot& snap, uint64_t pages_file_size);
// The manifest's bytes parsed and checked against a pages.img of `pages_file_size` bytes.
Result<pb::Snapshot> parse_manifest(std::string_view bytes, uint64_t pages_file_size);

uint64_t xxh3_64(const void* data, size_t len);

// A mapping's VmFlags: its vm_flag_bits, or for an image written before that field, its text
// decoded (unknown mnemonics there were refused at dump, or sit on [vdso]/[vvar], which are moved).
VmFlags vm_flags_of(const pb::Mapping& m);

}  // namespace prewarm
