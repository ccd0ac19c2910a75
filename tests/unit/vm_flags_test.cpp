// VmFlags decoding: every mnemonic round-trips, unknown ones are reported where they stood, and
// this kernel's own smaps lines come back out unchanged.
#include "snapshot/vm_flags.h"

#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

TEST(VmFlags, EveryKnownFlagRoundTrips) {
  std::set<std::string_view> names;
  std::string all;
  VmFlags every;
  for (VmFlag f : all_vm_flags()) {
    const std::string_view name = mnemonic(f);
    EXPECT_EQ(name.size(), 2u);
    EXPECT_TRUE(names.insert(name).second) << name << " twice";
    const ParsedVmFlags p = parse_vm_flags(name);
    EXPECT_TRUE(p.unknown.empty()) << name;
    EXPECT_TRUE(p.has(f)) << name;
    EXPECT_EQ(p.known, VmFlags::from_bits(uint64_t{1} << static_cast<unsigned>(f))) << name;
    EXPECT_EQ(to_text(p.known), name);
    all += std::string(all.empty() ? "" : " ") + std::string(name);
    every.set(f);
  }
  EXPECT_EQ(names.size(), 37u);
  const ParsedVmFlags p = parse_vm_flags(all);
  EXPECT_EQ(p.known, every);
  EXPECT_EQ(to_text(p), all);
  EXPECT_EQ(to_text(VmFlags::from_bits(every.bits())), all);
}

TEST(VmFlags, UnknownMnemonicsAreReportedInPlace) {
  const ParsedVmFlags p = parse_vm_flags("rd wr zz mr ?? mw me qq\n");
  EXPECT_EQ(to_text(p.known), "rd wr mr mw me");
  ASSERT_EQ(p.unknown.size(), 3u);
  EXPECT_EQ(p.unknown[0], (UnknownVmFlag{"zz", 2}));
  EXPECT_EQ(p.unknown[1], (UnknownVmFlag{"??", 4}));
  EXPECT_EQ(p.unknown[2], (UnknownVmFlag{"qq", 7}));
  EXPECT_EQ(to_text(p), "rd wr zz mr ?? mw me qq");
  EXPECT_TRUE(parse_vm_flags("  \n").empty());
  EXPECT_EQ(to_text(parse_vm_flags("")), "");
}

TEST(VmFlags, PrintsInTheKernelsOrderWhateverTheInput) {
  EXPECT_EQ(to_text(parse_vm_flags("sd ac me mw mr wr rd")), "rd wr mr mw me ac sd");
  EXPECT_EQ(to_text(parse_vm_flags("sl ss um pf gd")), "gd um pf ss sl");
}

// The kernel's own text for every mapping of this process: decoding and printing it again gives
// the same line, so inspect and offender lines show what smaps showed.
TEST(VmFlags, ThisKernelsLinesComeBackUnchanged) {
  auto text = read_file("/proc/self/smaps");
  ASSERT_TRUE(text) << text.error().describe();
  std::istringstream in(*text);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("VmFlags:")) continue;
    std::string words = line.substr(8);
    words.erase(0, words.find_first_not_of(' '));
    while (!words.empty() && words.back() == ' ') words.pop_back();
    const ParsedVmFlags p = parse_vm_flags(words);
    EXPECT_TRUE(p.unknown.empty()) << line;
    EXPECT_EQ(to_text(p), words);
    ++lines;
  }
  EXPECT_GT(lines, 5);
}

}  // namespace
}  // namespace prewarm
