// Lazy restore, the launcher's half: everything checked before the point of no return.
#include "restorer/lazy.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "restorer/staging.h"
#include "snapshot/image.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kServerStack = 64 * 1024;
constexpr uint64_t kSpareSegs = 4096;  // room for mremap/munmap splits while pages are owed

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// Not an mlocked one: locking it would fault every page in before the server runs.
bool lazy_eligible(const pb::Mapping& m) {
  return m.kind() == pb::Mapping::ANON && !m.shared() && !m.growsdown() && !vm_flags_of(m).has(VmFlag::kLocked);
}

}  // namespace

Result<UniqueFd> create_full_uffd() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (fd.valid()) return fd;
  if (errno == ENOSYS) return errno_error("userfaultfd (kernel without CONFIG_USERFAULTFD)");
  const int first = errno;
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (!dev.valid())
    return make_error(first, std::string("/dev/userfaultfd: ") + std::strerror(errno) +
                                 "; userfaultfd(2) (vm.unprivileged_userfaultfd=0?)");
  fd.reset(::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return errno_error("USERFAULTFD_IOC_NEW");
  return fd;
}

Result<UniqueFd> open_lazy_uffd(int given) {
  UniqueFd fd(given);
  if (!fd.valid()) {
    auto made = create_full_uffd();
    if (!made) return made.error();
    fd = std::move(*made);
  }
  // A handed-in fd must be non-blocking too: the server polls it between runs.
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) return errno_error("userfaultfd flags");
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
  if (::ioctl(fd.get(), UFFDIO_API, &api) != 0)
    return errno_error("UFFDIO_API with the remap, remove and unmap events");
  const uint64_t need = (1ull << _UFFDIO_REGISTER) | (1ull << _UFFDIO_UNREGISTER);
  if ((api.ioctls & need) != need) return data_error("this userfaultfd cannot register ranges");
  // Probe what the blob will do past the point of no return: register a private anonymous
  // mapping and get the copy, zero-page and wake ioctls for it.
  void* probe = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) return errno_error("map a userfaultfd probe");
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(probe), kPage};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  const bool registered = ::ioctl(fd.get(), UFFDIO_REGISTER, &reg) == 0;
  const int reg_errno = errno;
  if (registered) (void)::ioctl(fd.get(), UFFDIO_UNREGISTER, &reg.range);
  ::munmap(probe, kPage);
  if (!registered) return make_error(reg_errno, "UFFDIO_REGISTER of an anonymous mapping");
  const uint64_t fill = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
  if ((reg.ioctls & fill) != fill) return data_error("this userfaultfd cannot fill anonymous memory");
  return fd;
}

LazySetup plan_lazy(const pb::Snapshot& snap, const std::vector<uint32_t>& working_set) {
  LazySetup s;
  s.eager_view = snap;
  s.eager_view.clear_page_runs();
  std::vector<bool> first(static_cast<size_t>(snap.page_runs_size()), false);
  for (uint32_t i : working_set)
    if (i < first.size()) first[i] = true;
  std::vector<int> rest;
  int ri = 0;
  for (const auto& m : snap.mappings()) {
    const int from = ri;
    uint64_t longest = 0;
    while (ri < snap.page_runs_size() && snap.page_runs(ri).addr() < m.end())
      longest = std::max(longest, snap.page_runs(ri).len()), ++ri;
    const bool lazy = ri > from && lazy_eligible(m) && longest <= kMaxLazyRun;
    for (int i = from; i < ri; ++i) {
      if (!lazy) {
        *s.eager_view.add_page_runs() = snap.page_runs(i);
        continue;
      }
      // The server fills its runs in this order: the working set first, as one batch.
      const uint64_t pages = snap.page_runs(i).len() / kPage;
      if (first[static_cast<size_t>(i)])
        s.lazy_runs.push_back(i), s.prefetched_pages += pages;
      else
        rest.push_back(i);
      s.pages += pages;
    }
    if (lazy) {
      s.ranges.push_back({m.start(), m.end() - m.start()});
      s.dontfork.push_back(vm_flags_of(m).has(VmFlag::kDontCopy) ? 1 : 0);
      s.max_run = std::max(s.max_run, longest);
    }
  }
  s.lazy_runs.insert(s.lazy_runs.end(), rest.begin(), rest.end());
  if (s.lazy_runs.empty()) return s;
  const uint64_t runs = s.lazy_runs.size(), segs = runs + s.ranges.size() + kSpareSegs;
  uint64_t off = align_up(sizeof(PwLazyHeader), 64);
  off = align_up(off + runs * sizeof(PwLazyRun), 64);
  off = align_up(off + segs * sizeof(PwLazySeg), 64);
  off = align_up(off + (s.pages + 63) / 64 * 8, kPage);
  s.region_len = off + align_up(s.max_run, kPage) + kServerStack;
  return s;
}

namespace {
constexpr uint64_t kWorkingSetMagic = 0x3173777772777270ull;  // "prwrwws1"
}

std::vector<uint32_t> read_working_set(int fd, const pb::Snapshot& snap) {
  std::vector<uint32_t> out;
  uint64_t head[2] = {};
  if (::pread(fd, head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) || head[0] != kWorkingSetMagic ||
      head[1] != snap.pages_img_size())
    return out;
  std::vector<uint32_t> buf(4096);
  for (off_t off = sizeof head;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size() * 4, off);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n / 4; ++i)
      if (buf[static_cast<size_t>(i)] < static_cast<uint32_t>(snap.page_runs_size())) out.push_back(buf[static_cast<size_t>(i)]);
    off += n / 4 * 4;
    if (n % 4) break;
    if (out.size() > static_cast<size_t>(snap.page_runs_size()) * 4) break;  // a file that only grows
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<void> restart_working_set(int fd, const pb::Snapshot& snap, const std::vector<uint32_t>& runs) {
  if (::ftruncate(fd, 0) != 0) return errno_error("truncate the working set file");
  const uint64_t head[2] = {kWorkingSetMagic, snap.pages_img_size()};
  std::string bytes(reinterpret_cast<const char*>(head), sizeof head);
  bytes.append(reinterpret_cast<const char*>(runs.data()), runs.size() * 4);
  if (::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
    return errno_error("write the working set file");
  // The server appends: O_APPEND, so its records never land over these.
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_APPEND) != 0) return errno_error("working set file flags");
  return ok();
}

Result<void> write_lazy_region(const pb::Snapshot& snap, const LazySetup& s, uint64_t region, int uffd,
                               int pages_fd, int notify_fd, int ws_fd, bool trace) {
  void* p = ::mmap(reinterpret_cast<void*>(region), s.region_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return errno_error("map the lazy page server's region");
  char* base = static_cast<char*>(p);
  auto* h = reinterpret_cast<PwLazyHeader*>(base);
  const uint64_t runs = s.lazy_runs.size(), segs_cap = runs + s.ranges.size() + kSpareSegs;
  h->magic = PW_LAZY_MAGIC;
  h->region_len = s.region_len;
  h->runs_off = align_up(sizeof(PwLazyHeader), 64);
  h->runs_count = static_cast<uint32_t>(runs);
  h->segs_off = align_up(h->runs_off + runs * sizeof(PwLazyRun), 64);
  h->segs_cap = static_cast<uint32_t>(segs_cap);
  h->bitmap_off = align_up(h->segs_off + segs_cap * sizeof(PwLazySeg), 64);
  h->buf_off = align_up(h->bitmap_off + (s.pages + 63) / 64 * 8, kPage);
  h->buf_len = align_up(s.max_run, kPage);
  h->stack_top = region + s.region_len;
  h->uffd = uffd;
  h->pages_fd = pages_fd;
  h->notify_fd = notify_fd;
  h->ws_fd = ws_fd;
  h->trace = trace ? 1 : 0;
  h->pending = s.pages;
  auto* run = reinterpret_cast<PwLazyRun*>(base + h->runs_off);
  auto* seg = reinterpret_cast<PwLazySeg*>(base + h->segs_off);
  auto* bits = reinterpret_cast<uint64_t*>(base + h->bitmap_off);
  uint64_t bit = 0;
  uint32_t nseg = 0;
  for (uint64_t i = 0; i < runs; ++i) {
    const auto& r = snap.page_runs(s.lazy_runs[i]);
    const uint64_t pages = r.len() / kPage;
    run[i] = PwLazyRun{r.addr(), r.file_offset(), r.len(), r.xxh3(), bit, static_cast<uint32_t>(pages),
                       static_cast<uint32_t>(s.lazy_runs[i])};
    seg[nseg++] = PwLazySeg{r.addr(), r.len(), 0, PW_SEG_PIECE, static_cast<uint32_t>(i), 0, 0};
    for (uint64_t k = 0; k < pages; ++k, ++bit) bits[bit / 64] |= 1ull << (bit % 64);
  }
  for (size_t i = 0; i < s.ranges.size(); ++i)
    seg[nseg++] = PwLazySeg{s.ranges[i].start, s.ranges[i].len, 0, PW_SEG_REGION, 0, s.dontfork[i], 0};
  h->segs_count = nseg;
  return ok();
}

}  // namespace prewarm
