// Tests that scan_present_pages reports exactly the pages of a real mapping in this process that
// hold data, with the kernel's categories, and nothing for pages that were never touched.
#include "snapshot/pagemap_scan.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

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

class PagemapScan : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fd = open_fd("/proc/self/pagemap", O_RDONLY);
    ASSERT_TRUE(fd.ok()) << fd.error().describe();
    pagemap_ = std::move(*fd);
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

TEST_F(PagemapScan, ReportsWrittenAndReadPagesButNotUntouchedOrDiscarded) {
  char* m = anon(16);
  ASSERT_NE(m, nullptr);
  write_page(m + 1 * kPage, 'a');
  write_page(m + 2 * kPage, 'b');
  write_page(m + 5 * kPage, 0);  // written with zeros: still a page of its own
  read_page(m + 8 * kPage);      // read only: the shared zero page
  write_page(m + 11 * kPage, 'c');
  ASSERT_EQ(::madvise(m + 11 * kPage, kPage, MADV_DONTNEED), 0);  // gone again

  const std::vector<Pages> want = {{1, 3, kPagePresent},
                                   {5, 6, kPagePresent},
                                   {8, 9, kPagePresent | kPagePfnZero}};
  EXPECT_EQ(scan(m, 0, 16), want);
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
// with different categories, which must stay separate.
TEST_F(PagemapScan, ManyAlternatingRegionsComeBackInOrderAcrossCalls) {
  constexpr uint64_t kCount = 1500;
  char* m = anon(kCount);
  ASSERT_NE(m, nullptr);
  for (uint64_t i = 0; i < kCount; ++i) {
    if (i % 2 == 0) write_page(m + i * kPage, 'w');
    else read_page(m + i * kPage);
  }
  auto got = scan(m, 0, kCount);
  ASSERT_EQ(got.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    const uint64_t want = i % 2 == 0 ? kPagePresent : kPagePresent | kPagePfnZero;
    ASSERT_EQ(got[i], (Pages{i, i + 1, want})) << "page " << i;
  }
}

TEST_F(PagemapScan, FilePagesAreMarkedFileUntilWritten) {
  char path[] = "/tmp/prewarm-pagemap-XXXXXX";
  UniqueFd file(::mkstemp(path));
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
  auto null = open_fd("/dev/null", O_RDONLY);
  ASSERT_TRUE(null.ok());
  int x = 0;
  const auto addr = reinterpret_cast<uint64_t>(&x) & ~(kPage - 1);
  auto r = scan_present_pages(null->get(), addr, addr + kPage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENOTTY);
  EXPECT_NE(r.error().message.find("PAGEMAP_SCAN"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace prewarm
