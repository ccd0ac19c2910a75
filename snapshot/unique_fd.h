// Move-only owners of kernel handles: file descriptors and memory mappings.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <string>
#include <utility>

#include "snapshot/result.h"

namespace prewarm {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC always added.
Result<UniqueFd> open_fd(const std::string& path, int flags, mode_t mode = 0);
Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode = 0);

// Whole-file helpers for small /proc and image files.
Result<std::string> read_file(const std::string& path);
Result<std::string> read_fd(int fd);
Result<void> write_all(int fd, const void* data, size_t len);
Result<void> pread_all(int fd, void* data, size_t len, off_t offset);

class UniqueMapping {
 public:
  UniqueMapping() = default;
  UniqueMapping(void* addr, size_t len) : addr_(addr), len_(len) {}
  UniqueMapping(UniqueMapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
  UniqueMapping& operator=(UniqueMapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      len_ = std::exchange(o.len_, 0);
    }
    return *this;
  }
  UniqueMapping(const UniqueMapping&) = delete;
  UniqueMapping& operator=(const UniqueMapping&) = delete;
  ~UniqueMapping() { reset(); }

  void* get() const { return addr_; }
  size_t size() const { return len_; }
  // Gives up ownership: the mapping outlives this object (the restorer takes it over).
  void* release() {
    len_ = 0;
    return std::exchange(addr_, nullptr);
  }
  void reset() {
    if (addr_ != nullptr) ::munmap(addr_, len_);
    addr_ = nullptr;
    len_ = 0;
  }

 private:
  void* addr_ = nullptr;
  size_t len_ = 0;
};

Result<UniqueMapping> map_anonymous(size_t len, int prot, int extra_flags = 0, void* hint = nullptr);

}  // namespace prewarm
