// Tests that scan_present_pages reports exactly the pages of a real mapping in this process that
// hold data, with the kernel's categories, and nothing for pages that were never touched; and
// that the pagemap fallback (read_present_pages) gives the same regions on real processes.
#include "snapshot/pagemap_scan.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "snapshot/pagemap_fallback.h"
#include "snapshot/present_pages.h"
#include "snapshot/proc_maps.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kPage = 4096;

// A region as page indexes relative to a base, so expectations read like the setup.
struct Pages {
  uint64_t first, end, categories;
  bool operator==(const Pages&) const = default;
};

void PrintTo(const Pages& p, std::ostream* os) {
  *os << "[" << p.first << ", " << p.end << ") cat=0x" << std::hex << p.categories;
}

// The ioctl came with Linux 6.7 (Debian 12's own 6.1 has none): tests of it, and tests that take
// it as the fallback's oracle, skip without it, saying so.
constexpr const char* kNoScan = "this kernel has no PAGEMAP_SCAN (Linux 6.7+); the dump uses the pagemap fallback";

bool scan_supported() {
  auto fd = open_fd("/proc/self/pagemap", O_RDONLY);
  return fd.ok() && pagemap_scan_supported(fd->get());
}

class PagemapScan : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fd = open_fd("/proc/self/pagemap", O_RDONLY);
    ASSERT_TRUE(fd.ok()) << fd.error().describe();
    pagemap_ = std::move(*fd);
    if (!pagemap_scan_supported(pagemap_.get())) GTEST_SKIP() << kNoScan;
  }

  // Private anonymous pages; no THP, so one touch makes exactly one page present.
  char* anon(uint64_t pages) {
    auto m = map_anonymous(pages * kPage, PROT_READ | PROT_WRITE);
    EXPECT_TRUE(m.ok()) << m.error().describe();
    if (!m.ok()) return nullptr;
    char* p = static_cast<char*>(m->get());
    EXPECT_EQ(::madvise(p, pages * kPage, MADV_NOHUGEPAGE), 0);
    maps_.push_back(std::move(*m));
    return p;
  }

  std::vector<Pages> scan(const char* base, uint64_t first, uint64_t end) {
    const auto b = reinterpret_cast<uint64_t>(base);
    auto r = scan_present_pages(pagemap_.get(), b + first * kPage, b + end * kPage);
    EXPECT_TRUE(r.ok()) << r.error().describe();
    std::vector<Pages> out;
    if (!r.ok()) return out;
    for (const auto& reg : *r)
      out.push_back({(reg.start - b) / kPage, (reg.end - b) / kPage, reg.categories});
    return out;
  }

  UniqueFd pagemap_;
  std::vector<UniqueMapping> maps_;
};

void read_page(const char* p) { (void)*static_cast<const volatile char*>(p); }
void write_page(char* p, char value) { *static_cast<volatile char*>(p) = value; }

// A read fault on private anonymous memory maps the shared zero page on some machines and gives
// the page a frame of its own on others (TESTING.md); the product copes either way (all-zero
// pages are skipped by content), so the tests expect what this machine does.
enum class ReadFault { kZeroPage, kOwnPage };

constexpr uint64_t kPfnMask = (1ull << 55) - 1;
constexpr int kKpfZeroPage = 24;  // /proc/kpageflags bit (include/uapi/linux/kernel-page-flags.h)

// The frame behind addr by /proc/self/pagemap, 0 when unprivileged (the kernel hides PFNs).
uint64_t pfn_of(const void* addr) {
  auto pm = open_fd("/proc/self/pagemap", O_RDONLY);
  uint64_t entry = 0;
  if (!pm.ok() ||
      !pread_all(pm->get(), &entry, sizeof entry,
                 static_cast<off_t>(reinterpret_cast<uint64_t>(addr) / kPage * sizeof entry)).ok())
    return 0;
  return entry & kPfnMask;
}

// Whether frame pfn is the zero page, by /proc/kpageflags (root only); nullopt if unreadable.
std::optional<bool> is_zero_frame(uint64_t pfn) {
  auto kf = open_fd("/proc/kpageflags", O_RDONLY);
  uint64_t flags = 0;
  if (pfn == 0 || !kf.ok() ||
      !pread_all(kf->get(), &flags, sizeof flags, static_cast<off_t>(pfn * sizeof flags)).ok())
    return std::nullopt;
  return (flags >> kKpfZeroPage) & 1;
}

// Read-faults a fresh page and asks the kernel what it got: /proc/kpageflags when this process
// may read it (independent of the code under test), else the PAGEMAP_SCAN category.
// PREWARM_TEST_ASSUME_NO_ZERO_PAGE=1 makes it answer kOwnPage, so that branch's expectations
// (which only assert what holds on both kinds of machine) can be run anywhere.
ReadFault probe_read_fault(int pagemap_fd) {
  const char* force = std::getenv("PREWARM_TEST_ASSUME_NO_ZERO_PAGE");
  if (force != nullptr && std::string(force) == "1") return ReadFault::kOwnPage;
  auto m = map_anonymous(kPage, PROT_READ | PROT_WRITE);
  if (!m.ok()) return ReadFault::kOwnPage;
  (void)::madvise(m->get(), kPage, MADV_NOHUGEPAGE);
  read_page(static_cast<const char*>(m->get()));
  if (auto zero = is_zero_frame(pfn_of(m->get())))
    return *zero ? ReadFault::kZeroPage : ReadFault::kOwnPage;
  const auto start = reinterpret_cast<uint64_t>(m->get());
  auto r = scan_present_pages(pagemap_fd, start, start + kPage);
  return r.ok() && r->size() == 1 && ((*r)[0].categories & kPagePfnZero) ? ReadFault::kZeroPage
                                                                          : ReadFault::kOwnPage;
}

const char* describe(ReadFault f) {
  return f == ReadFault::kZeroPage ? "read faults map the zero page here"
                                   : "read faults get a page of their own here (or assumed so)";
}

// The category of a page that was only read: the zero page's where the probe saw it. Where it did
// not, only what holds on every machine: present, anonymous, whatever the frame.
void expect_read_page_category(ReadFault f, uint64_t categories, uint64_t page) {
  if (f == ReadFault::kZeroPage)
    EXPECT_EQ(categories, kPagePresent | kPagePfnZero) << "page " << page;
  else
    EXPECT_EQ(categories & ~uint64_t{kPagePfnZero}, kPagePresent) << "page " << page;
}

TEST_F(PagemapScan, ReportsWrittenAndReadPagesButNotUntouchedOrDiscarded) {
  const ReadFault fault = probe_read_fault(pagemap_.get());
  SCOPED_TRACE(describe(fault));
  char* m = anon(16);
  ASSERT_NE(m, nullptr);
  write_page(m + 1 * kPage, 'a');
  write_page(m + 2 * kPage, 'b');
  write_page(m + 5 * kPage, 0);  // written with zeros: still a page of its own
  read_page(m + 8 * kPage);      // read only: the zero page or a page of its own (see the probe)
  write_page(m + 11 * kPage, 'c');
  ASSERT_EQ(::madvise(m + 11 * kPage, kPage, MADV_DONTNEED), 0);  // gone again

  const auto got = scan(m, 0, 16);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], (Pages{1, 3, kPagePresent}));
  EXPECT_EQ(got[1], (Pages{5, 6, kPagePresent}));
  EXPECT_EQ(got[2].first, 8u);
  EXPECT_EQ(got[2].end, 9u);
  expect_read_page_category(fault, got[2].categories, 8);
}

// Written pages next to read-only ones. Where reads map the zero page the categories differ and
// every page is a region of its own; where they do not, equal neighbours merge, so only the
// coverage and the categories that hold everywhere are checked.
TEST_F(PagemapScan, ReadAndWrittenNeighboursAreReportedAsThisMachineFaultsThem) {
  const ReadFault fault = probe_read_fault(pagemap_.get());
  SCOPED_TRACE(describe(fault));
  constexpr uint64_t kCount = 1500;
  char* m = anon(kCount);
  ASSERT_NE(m, nullptr);
  for (uint64_t i = 0; i < kCount; ++i) {
    if (i % 2 == 0) write_page(m + i * kPage, 'w');
    else read_page(m + i * kPage);
  }
  const auto got = scan(m, 0, kCount);
  if (fault == ReadFault::kZeroPage) {
    ASSERT_EQ(got.size(), kCount);
    for (uint64_t i = 0; i < kCount; ++i) {
      const uint64_t want = i % 2 == 0 ? kPagePresent : kPagePresent | kPagePfnZero;
      ASSERT_EQ(got[i], (Pages{i, i + 1, want})) << "page " << i;
    }
    return;
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().first, 0u);
  EXPECT_EQ(got.back().end, kCount);
  for (size_t r = 0; r < got.size(); ++r) {
    SCOPED_TRACE(::testing::PrintToString(got[r]));
    if (r > 0) {
      EXPECT_EQ(got[r].first, got[r - 1].end) << "a touched page is missing";
      EXPECT_NE(got[r].categories, got[r - 1].categories) << "equal neighbours were not merged";
    }
    for (uint64_t i = got[r].first; i < got[r].end; ++i) {
      if (i % 2 == 0) EXPECT_EQ(got[r].categories, kPagePresent) << "written page " << i;
      else expect_read_page_category(fault, got[r].categories, i);
    }
  }
}

// The zero page, mapped on purpose with UFFDIO_ZEROPAGE (the kernel has one on every machine,
// whatever a read fault does), is reported as PFNZERO: the dump skips such pages by category.
TEST_F(PagemapScan, ZeroPageIsReportedAsPfnZero) {
  char* m = anon(3);
  ASSERT_NE(m, nullptr);
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  // Unprivileged with vm.unprivileged_userfaultfd=0: only a user-mode-only one (enough here).
  if (!uffd.valid() && errno == EPERM)
    uffd.reset(static_cast<int>(
        ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (!uffd.valid() && (errno == EPERM || errno == ENOSYS))
    GTEST_SKIP() << "userfaultfd not available to this process: " << std::strerror(errno);
  ASSERT_TRUE(uffd.valid()) << std::strerror(errno);
  uffdio_api api{};
  api.api = UFFD_API;
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_API, &api), 0) << std::strerror(errno);
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(m), 3 * kPage};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_REGISTER, &reg), 0) << std::strerror(errno);
  uffdio_zeropage zp{};
  zp.range = {reinterpret_cast<uint64_t>(m + kPage), kPage};
  ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_ZEROPAGE, &zp), 0) << std::strerror(errno);
  uffd.reset();  // unregisters: later faults are ordinary ones
  write_page(m + 2 * kPage, 'w');

  if (auto zero = is_zero_frame(pfn_of(m + kPage))) {
    ASSERT_TRUE(*zero) << "UFFDIO_ZEROPAGE did not map the zero page";
  }
  EXPECT_EQ(scan(m, 0, 3), (std::vector<Pages>{{1, 2, kPagePresent | kPagePfnZero},
                                               {2, 3, kPagePresent}}));
}

TEST_F(PagemapScan, UntouchedMappingHasNoRegions) {
  char* m = anon(8);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(scan(m, 0, 8).empty());
}

TEST_F(PagemapScan, ScanOfPartOfAMappingIsClippedToTheRange) {
  char* m = anon(8);
  ASSERT_NE(m, nullptr);
  for (int i = 0; i < 8; ++i) write_page(m + i * kPage, 'x');
  EXPECT_EQ(scan(m, 2, 5), (std::vector<Pages>{{2, 5, kPagePresent}}));
}

// More regions than one ioctl call returns (the scanner asks for 512 at a time), and neighbours
// with different categories, which must stay separate. Page-cache pages read through a private
// file mapping alternate with their written (copy-on-write, anonymous) neighbours: the same on
// every machine, unlike read faults on anonymous memory.
TEST_F(PagemapScan, ManyAlternatingRegionsComeBackInOrderAcrossCalls) {
  constexpr uint64_t kCount = 1500;
  char path[] = "/tmp/prewarm-pagemap-XXXXXX";
  UniqueFd file(::mkostemp(path, O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  const std::string data(kCount * kPage, 'f');
  ASSERT_TRUE(write_all(file.get(), data.data(), data.size()).ok());
  void* p = ::mmap(nullptr, kCount * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  UniqueMapping guard(p, kCount * kPage);
  char* m = static_cast<char*>(p);
  // Every page is touched, so fault-around (which maps cached neighbours on a read fault) can
  // only map pages that are read anyway or about to be copied on write.
  for (uint64_t i = 0; i < kCount; ++i) {
    if (i % 2 == 0) write_page(m + i * kPage, 'w');
    else read_page(m + i * kPage);
  }
  auto got = scan(m, 0, kCount);
  ASSERT_EQ(got.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    const uint64_t want = i % 2 == 0 ? kPagePresent : kPagePresent | kPageFile;
    ASSERT_EQ(got[i], (Pages{i, i + 1, want})) << "page " << i;
  }
}

TEST_F(PagemapScan, FilePagesAreMarkedFileUntilWritten) {
  char path[] = "/tmp/prewarm-pagemap-XXXXXX";
  UniqueFd file(::mkostemp(path, O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  const std::string data(4 * kPage, 'f');
  ASSERT_TRUE(write_all(file.get(), data.data(), data.size()).ok());
  void* p = ::mmap(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  UniqueMapping guard(p, 4 * kPage);
  char* m = static_cast<char*>(p);
  read_page(m);
  write_page(m + 3 * kPage, 'w');  // copy-on-write: now an anonymous page

  // The kernel may map neighbouring cached pages on a read fault (fault-around), so only the
  // touched pages are checked.
  auto category_of = [&](uint64_t page) -> uint64_t {
    for (const auto& r : scan(m, 0, 4))
      if (r.first <= page && page < r.end) return r.categories;
    return 0;
  };
  EXPECT_EQ(category_of(0), kPagePresent | kPageFile);
  EXPECT_EQ(category_of(3), kPagePresent);
}

// Chrome reserves about 1 TiB; the scan must come back with just the few touched pages.
TEST_F(PagemapScan, HugeSparseReservationGivesOnlyTheTouchedPages) {
  const uint64_t size = 1ull << 40;
  void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "cannot reserve 1 TiB: " << std::strerror(errno);
  UniqueMapping guard(p, size);
  char* m = static_cast<char*>(p);
  // One page at 1 GiB, one at the very end.
  const uint64_t a = (1ull << 30) / kPage, b = (size - kPage) / kPage;
  for (uint64_t page : {a, b}) {
    ASSERT_EQ(::mprotect(m + page * kPage, kPage, PROT_READ | PROT_WRITE), 0);
    write_page(m + page * kPage, 's');
  }
  EXPECT_EQ(scan(m, 0, size / kPage),
            (std::vector<Pages>{{a, a + 1, kPagePresent}, {b, b + 1, kPagePresent}}));
}

TEST_F(PagemapScan, EmptyRangeHasNoRegions) {
  char* m = anon(1);
  ASSERT_NE(m, nullptr);
  write_page(m, 'x');
  EXPECT_TRUE(scan(m, 0, 0).empty());
}

TEST(PagemapScanErrors, FdThatIsNotAPagemapIsAnError) {
  if (!scan_supported()) GTEST_SKIP() << kNoScan;
  auto null = open_fd("/dev/null", O_RDONLY);
  ASSERT_TRUE(null.ok());
  int x = 0;
  const auto addr = reinterpret_cast<uint64_t>(&x) & ~(kPage - 1);
  auto r = scan_present_pages(null->get(), addr, addr + kPage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_NE(r.error().message.find("PAGEMAP_SCAN"), std::string::npos) << r.error().message;
}

// ---- The pagemap fallback (kernels before 6.7), compared with PAGEMAP_SCAN on the same memory.

// Page index -> categories, so two answers can be compared page by page.
std::map<uint64_t, uint64_t> per_page(const std::vector<PageRegion>& regions) {
  std::map<uint64_t, uint64_t> out;
  for (const auto& r : regions)
    for (uint64_t a = r.start; a < r.end; a += kPage) out[a / kPage] = r.categories;
  return out;
}

// The fallback's answer must be the scan's. The one allowed difference is the one the header
// documents: a zero page whose frame this process could not learn (no CAP_SYS_ADMIN, or no huge
// zero page to probe) is a present page of data (the huge one "file", as pagemap says).
// `zero_pages` collects those pages so that the caller can check they really are zero.
void expect_same_pages(const std::vector<PageRegion>& scan, const std::vector<PageRegion>& fallback,
                       const ZeroFrames& zero, const std::string& what,
                       std::vector<uint64_t>* zero_pages = nullptr) {
  const auto s = per_page(scan), f = per_page(fallback);
  ASSERT_EQ(s.size(), f.size()) << what << ": a different number of pages";
  size_t differences = 0;
  for (auto si = s.begin(), fi = f.begin(); si != s.end(); ++si, ++fi) {
    ASSERT_EQ(si->first, fi->first) << what << ": a different page set";
    if (si->second == fi->second) continue;
    const bool unknown_zero =
        si->second == (kPagePresent | kPagePfnZero) &&
        ((zero.zero_pfn == 0 && fi->second == kPagePresent) ||
         (zero.huge_zero_pfn == 0 && fi->second == (kPagePresent | kPageFile)));
    EXPECT_TRUE(unknown_zero) << what << ": page 0x" << std::hex << si->first * kPage
                              << " scan 0x" << si->second << " fallback 0x" << fi->second;
    if (unknown_zero && zero_pages) zero_pages->push_back(si->first * kPage);
    if (++differences > 20) break;  // enough to see the pattern
  }
  // Same pages, same categories: then the merged regions must be the very same list.
  if (differences == 0) {
    ASSERT_EQ(scan.size(), fallback.size()) << what;
    for (size_t i = 0; i < scan.size(); ++i) {
      EXPECT_EQ(scan[i].start, fallback[i].start) << what << " region " << i;
      EXPECT_EQ(scan[i].end, fallback[i].end) << what << " region " << i;
    }
  }
}

bool pfns_visible() {
  int x = 1;
  return pfn_of(&x) != 0;
}

class PagemapFallback : public PagemapScan {
 protected:
  // Both answers for [first, end) pages of base in this process, compared.
  void compare(const char* base, uint64_t first, uint64_t end, const std::string& what,
               const ZeroFrames& zero = zero_frames()) {
    const auto b = reinterpret_cast<uint64_t>(base);
    auto s = scan_present_pages(pagemap_.get(), b + first * kPage, b + end * kPage);
    auto f = read_present_pages(pagemap_.get(), b + first * kPage, b + end * kPage, zero);
    ASSERT_TRUE(s.ok()) << s.error().describe();
    ASSERT_TRUE(f.ok()) << f.error().describe();
    std::vector<uint64_t> zeros;
    expect_same_pages(*s, *f, zero, what, &zeros);
    for (uint64_t a : zeros) {
      const char* p = reinterpret_cast<const char*>(a);
      EXPECT_TRUE(std::all_of(p, p + kPage, [](char c) { return c == 0; })) << what << ": not zero";
    }
  }
};

// What zero_frames() learnt must be what /proc/kpageflags says, when this process can see frames.
TEST_F(PagemapFallback, ZeroFramesAreTheKernelsZeroPages) {
  const ZeroFrames& z = zero_frames();
  if (!pfns_visible()) {
    EXPECT_EQ(z, ZeroFrames{}) << "frames are hidden from this process, yet a zero frame was found";
    GTEST_SKIP() << "pagemap hides frame numbers here (no CAP_SYS_ADMIN): zero pages count as data";
  }
  ASSERT_NE(z.zero_pfn, 0u) << "frames are visible but the zero page was not found";
  if (auto zero = is_zero_frame(z.zero_pfn)) {
    EXPECT_TRUE(*zero);
  }
  if (z.huge_zero_pfn != 0) {
    if (auto zero = is_zero_frame(z.huge_zero_pfn)) {
      EXPECT_TRUE(*zero);
    }
  }
}

// Written, zero-written, read-only (zero page or own page, whatever this machine does),
// discarded and untouched pages, a UFFDIO_ZEROPAGE page and a written THP: page for page the
// same answer both ways, with this process's zero frames and with none (as unprivileged).
TEST_F(PagemapFallback, SameRegionsAsScanOnAnonymousMemory) {
  SCOPED_TRACE(describe(probe_read_fault(pagemap_.get())));
  char* m = anon(64);
  ASSERT_NE(m, nullptr);
  for (uint64_t i = 0; i < 64; ++i) {
    switch (i % 5) {
      case 0: write_page(m + i * kPage, 'a'); break;
      case 1: write_page(m + i * kPage, 0); break;
      case 2: read_page(m + i * kPage); break;
      case 3: break;
      case 4:
        write_page(m + i * kPage, 'd');
        ASSERT_EQ(::madvise(m + i * kPage, kPage, MADV_DONTNEED), 0);
        break;
    }
  }
  compare(m, 0, 64, "mixed anonymous pages");
  compare(m, 0, 64, "mixed anonymous pages, zero frames unknown", ZeroFrames{});
  compare(m, 3, 17, "part of a mapping");

  // The zero page on purpose, where this process may use a userfaultfd.
  char* z = anon(3);
  ASSERT_NE(z, nullptr);
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd.valid() && errno == EPERM)  // unprivileged: user-mode faults are enough here
    uffd.reset(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (uffd.valid()) {
    uffdio_api api{};
    api.api = UFFD_API;
    ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_API, &api), 0) << std::strerror(errno);
    uffdio_register reg{};
    reg.range = {reinterpret_cast<uint64_t>(z), 3 * kPage};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_REGISTER, &reg), 0) << std::strerror(errno);
    uffdio_zeropage zp{};
    zp.range = {reinterpret_cast<uint64_t>(z + kPage), kPage};
    ASSERT_EQ(::ioctl(uffd.get(), UFFDIO_ZEROPAGE, &zp), 0) << std::strerror(errno);
    uffd.reset();
    write_page(z + 2 * kPage, 'w');
    compare(z, 0, 3, "a UFFDIO_ZEROPAGE page");
    compare(z, 0, 3, "a UFFDIO_ZEROPAGE page, zero frames unknown", ZeroFrames{});
    if (zero_frames().zero_pfn != 0) {
      const auto b = reinterpret_cast<uint64_t>(z);
      auto f = read_present_pages(pagemap_.get(), b, b + 3 * kPage, zero_frames());
      ASSERT_TRUE(f.ok());
      EXPECT_EQ(per_page(*f)[(b + kPage) / kPage], kPagePresent | kPagePfnZero);
    }
  } else {
    std::cerr << "no userfaultfd for this process (" << std::strerror(errno)
              << "): the zero page on purpose is not compared\n";
  }

  // A transparent huge page, where THP is available: one PMD both ways.
  auto big = map_anonymous(4 << 20, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(big.ok());
  char* h = reinterpret_cast<char*>((reinterpret_cast<uint64_t>(big->get()) + (2 << 20) - 1) &
                                    ~uint64_t{(2 << 20) - 1});
  (void)::madvise(h, 2 << 20, MADV_HUGEPAGE);
  write_page(h + 12345, 'h');
  compare(h, 0, 512, "a huge page (or one page, without THP)");
}

// Private file pages (page cache) next to their copy-on-write neighbours, and a shared anonymous
// (shmem) mapping, which pagemap calls "file" as PAGEMAP_SCAN does.
TEST_F(PagemapFallback, SameRegionsAsScanOnFileAndSharedMemory) {
  constexpr uint64_t kCount = 600;
  char path[] = "/tmp/prewarm-pagemap-XXXXXX";
  UniqueFd file(::mkostemp(path, O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  const std::string data(kCount * kPage, 'f');
  ASSERT_TRUE(write_all(file.get(), data.data(), data.size()).ok());
  void* p = ::mmap(nullptr, kCount * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  UniqueMapping guard(p, kCount * kPage);
  char* m = static_cast<char*>(p);
  for (uint64_t i = 0; i < kCount; i += 3) {
    if (i % 2 == 0) write_page(m + i * kPage, 'w');
    else read_page(m + i * kPage);
  }
  compare(m, 0, kCount, "a private file mapping");

  void* s = ::mmap(nullptr, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(s, MAP_FAILED);
  UniqueMapping sguard(s, 16 * kPage);
  for (uint64_t i = 0; i < 16; i += 2) write_page(static_cast<char*>(s) + i * kPage, 's');
  compare(static_cast<char*>(s), 0, 16, "a shared anonymous mapping");
}

// Swapped pages, where this machine has swap: MADV_PAGEOUT moves a written page out.
TEST_F(PagemapFallback, SameRegionsAsScanOnSwappedPages) {
  char* m = anon(32);
  ASSERT_NE(m, nullptr);
  for (uint64_t i = 0; i < 32; ++i) write_page(m + i * kPage, static_cast<char>('a' + i % 20));
  (void)::madvise(m, 16 * kPage, MADV_PAGEOUT);
  const auto b = reinterpret_cast<uint64_t>(m);
  auto s = scan_present_pages(pagemap_.get(), b, b + 32 * kPage);
  ASSERT_TRUE(s.ok());
  const bool swapped = std::any_of(s->begin(), s->end(), [](const PageRegion& r) {
    return (r.categories & kPageSwapped) != 0;
  });
  compare(m, 0, 32, "written pages, some paged out");
  if (!swapped) GTEST_SKIP() << "MADV_PAGEOUT swapped nothing out (no swap here): only present pages compared";
}

TEST_F(PagemapFallback, HugeSparseReservationGivesOnlyTheTouchedPages) {
  const uint64_t size = 1ull << 40;
  void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "cannot reserve 1 TiB: " << std::strerror(errno);
  UniqueMapping guard(p, size);
  char* m = static_cast<char*>(p);
  const uint64_t a = (1ull << 30) / kPage, b = (size - kPage) / kPage;
  for (uint64_t page : {a, b}) {
    ASSERT_EQ(::mprotect(m + page * kPage, kPage, PROT_READ | PROT_WRITE), 0);
    write_page(m + page * kPage, 's');
  }
  const auto base = reinterpret_cast<uint64_t>(m);
  auto f = read_present_pages(pagemap_.get(), base, base + size, zero_frames());
  ASSERT_TRUE(f.ok()) << f.error().describe();
  ASSERT_EQ(f->size(), 2u);
  EXPECT_EQ((*f)[0].start, base + a * kPage);
  EXPECT_EQ((*f)[0].end, base + (a + 1) * kPage);
  EXPECT_EQ((*f)[1].start, base + b * kPage);
  EXPECT_EQ((*f)[0].categories, uint64_t{kPagePresent});
}

// Another process, stopped, mapping by mapping over its whole address space: both ways give the
// same pages. The python app of the benchmark where it is installed (sympy + numpy: ~200
// mappings), and a child of this test (every page it has is shared copy-on-write with us).
void compare_process(pid_t pid, const std::string& what) {
  auto pm = open_fd("/proc/" + std::to_string(pid) + "/pagemap", O_RDONLY);
  ASSERT_TRUE(pm.ok()) << pm.error().describe();
  auto vmas = read_maps(pid);
  ASSERT_TRUE(vmas.ok()) << vmas.error().describe();
  size_t pages = 0;
  for (const auto& v : *vmas) {
    // [vsyscall] is above the task size (no pagemap entries); the [vvar] pair may be VM_PFNMAP,
    // which PAGEMAP_SCAN skips and pagemap does not. The dump scans neither.
    if (v.name == "[vsyscall]" || v.name.starts_with("[vvar")) continue;
    auto s = scan_present_pages(pm->get(), v.start, v.end);
    auto f = read_present_pages(pm->get(), v.start, v.end, zero_frames());
    ASSERT_TRUE(s.ok()) << v.name << ": " << s.error().describe();
    ASSERT_TRUE(f.ok()) << v.name << ": " << f.error().describe();
    expect_same_pages(*s, *f, zero_frames(), what + " " + v.name);
    pages += per_page(*s).size();
  }
  EXPECT_GT(pages, 100u) << what << ": implausibly few pages";
}

struct StoppedChild {
  pid_t pid = -1;
  ~StoppedChild() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST(PagemapFallbackProcess, SameRegionsAsScanOnAPythonApp) {
  if (!scan_supported()) GTEST_SKIP() << kNoScan;
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  StoppedChild c;
  c.pid = ::fork();
  ASSERT_GE(c.pid, 0);
  if (c.pid == 0) {
    ::dup2(fds[1], 1);
    const char* code =
        "import sys\n"
        "try:\n import sympy, numpy\n x = numpy.arange(100000) * 3\n s = sympy.symbols('s')\n"
        "except ImportError:\n x = list(range(100000))\n"
        "print('ready', flush=True)\nsys.stdin.read()\n";
    ::execl("/usr/bin/python3", "python3", "-c", code, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string line;
  char ch = 0;
  while (line.size() < 16 && ::read(fds[0], &ch, 1) == 1 && ch != '\n') line += ch;
  ::close(fds[0]);
  ASSERT_EQ(line, "ready") << "python did not get ready";
  ASSERT_EQ(::kill(c.pid, SIGSTOP), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(c.pid, &st, WUNTRACED), c.pid);
  ASSERT_TRUE(WIFSTOPPED(st));
  compare_process(c.pid, "python3");
}

TEST(PagemapFallbackProcess, SameRegionsAsScanOnAForkedChild) {
  if (!scan_supported()) GTEST_SKIP() << kNoScan;
  StoppedChild c;
  c.pid = ::fork();
  ASSERT_GE(c.pid, 0);
  if (c.pid == 0) {
    std::vector<char> v(3 << 20, 'c');  // a few pages of its own
    ::raise(SIGSTOP);
    ::_exit(v[0] == 'c' ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(c.pid, &st, WUNTRACED), c.pid);
  ASSERT_TRUE(WIFSTOPPED(st));
  compare_process(c.pid, "forked child");
}

// The choice between the two: forced by the environment; a pagemap that answers the probe with
// ENOTTY (as 6.1's has no ioctl at all, like /dev/null here) is not scanned.
TEST(PresentPages, FallbackIsForcedByTheEnvironmentAndChosenWithoutTheIoctl) {
  auto pm = open_fd("/proc/self/pagemap", O_RDONLY);
  ASSERT_TRUE(pm.ok());
  auto null = open_fd("/dev/null", O_RDONLY);
  ASSERT_TRUE(null.ok());
  EXPECT_FALSE(pagemap_scan_supported(null->get()));
  const char* old = std::getenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  const std::string saved = old ? old : "";
  ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", "1", 1);
  EXPECT_EQ(page_finder(pm->get()), PageFinder::kPagemapRead);
  ::unsetenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  EXPECT_EQ(page_finder(pm->get()), pagemap_scan_supported(pm->get()) ? PageFinder::kPagemapScan
                                                                      : PageFinder::kPagemapRead);
  if (old) ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", saved.c_str(), 1);
  // Through the chooser, forced, a written page is found like the scan finds it.
  int* x = new int(5);
  const uint64_t a = reinterpret_cast<uint64_t>(x) & ~(kPage - 1);
  ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", "1", 1);
  auto f = find_present_pages(pm->get(), a, a + kPage);
  if (old) ::setenv("PREWARM_FORCE_PAGEMAP_FALLBACK", saved.c_str(), 1);
  else ::unsetenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  delete x;
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), 1u);
  EXPECT_EQ((*f)[0].categories & kPagePresent, uint64_t{kPagePresent});
}

}  // namespace
}  // namespace prewarm
