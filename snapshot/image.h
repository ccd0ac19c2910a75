// The on-disk image: DIR/snapshot.pb (manifest) + DIR/pages.img (page runs, page aligned).
// Written to a temporary sibling directory, fsynced, then renamed into place, so a reader sees a
// complete image or none.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/unique_fd.h"

namespace prewarm {

inline constexpr uint32_t kFormatVersion = 1;
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
  UniqueFd pages;  // open pages.img
  std::string dir;
};

// Opens and parses an image and checks its structure (version, ordering, bounds, page runs
// within their mappings and within pages.img). Does not read page contents.
Result<LoadedImage> load_image(const std::string& dir);
Result<void> check_structure(const pb::Snapshot& snap, uint64_t pages_file_size);
// The manifest's bytes parsed and checked against a pages.img of `pages_file_size` bytes.
Result<pb::Snapshot> parse_manifest(std::string_view bytes, uint64_t pages_file_size);

uint64_t xxh3_64(const void* data, size_t len);

}  // namespace prewarm
