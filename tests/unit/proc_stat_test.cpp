// The /proc/PID/stat parser: the command name ends at the last ')', and a malformed or
// truncated line is an error value.
#include "snapshot/proc_stat.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

namespace prewarm {
namespace {

// Field n (n >= 3) holds n * 10, state "S".
std::string line_with(const std::string& comm, int fields) {
  std::string s = "4242 (" + comm + ") S";
  for (int n = 4; n <= fields; ++n) s += " " + std::to_string(n * 10);
  return s + "\n";
}

TEST(ParseProcStat, CommandNameEndsAtTheLastParenthesis) {
  for (const std::string comm : {") ) x", "a) 7 8 (b", "we ird", "()", ")", "(", " ", ""}) {
    SCOPED_TRACE("comm '" + comm + "'");
    auto s = parse_proc_stat(line_with(comm, 52), 52);
    ASSERT_TRUE(s.ok()) << s.error().describe();
    EXPECT_EQ(s->fields.size(), 52u);
    EXPECT_EQ(s->field(1), "4242");
    EXPECT_EQ(s->field(2), comm);
    EXPECT_EQ(s->state(), 'S');
    EXPECT_EQ(s->number(14).value(), 140u);
    EXPECT_EQ(s->number(52).value(), 520u);
    EXPECT_EQ(s->field(53), std::nullopt);
    EXPECT_FALSE(s->number(53).ok());
    EXPECT_FALSE(s->number(0).ok());
  }
}

TEST(ParseProcStat, MalformedLinesAreErrors) {
  for (const char* bad : {"", "\n", ")", "(", "4242", "4242 ", "4242 (", "4242 (x", "4242 (x S 1 2 3",
                          "(x) S 1", " (x) S 1", "42a (x) S 1", "4242 (x)", "4242 (x)\n", "4242 (x) ",
                          "4242 (x)S 1", "4242 (x) SS 1", "4242 (x) S  1"}) {
    SCOPED_TRACE(std::string("line '") + bad + "'");
    EXPECT_FALSE(parse_proc_stat(bad).ok());
  }
  // ") S" ends the name only at the last ')': here the state is missing after it.
  EXPECT_FALSE(parse_proc_stat("4242 (x) S 1 y)").ok());
}

TEST(ParseProcStat, TruncatedLinesAreErrorsNotShortReads) {
  const std::string full = line_with(") ) x", 52);
  ASSERT_TRUE(parse_proc_stat(full, 52).ok());
  // Every prefix that ends before the last field: too short, so an error. (A cut inside the last
  // number cannot be seen in the text.)
  for (size_t n = 0; n <= full.rfind(' '); ++n) {
    SCOPED_TRACE(n);
    auto s = parse_proc_stat(full.substr(0, n), 52);
    EXPECT_FALSE(s.ok()) << "prefix of " << n << " bytes parsed";
  }
  auto short_line = parse_proc_stat(line_with(") ) x", 21), 22);
  ASSERT_FALSE(short_line.ok());
  EXPECT_NE(short_line.error().message.find("21 fields"), std::string::npos) << short_line.error().message;
  EXPECT_FALSE(parse_proc_stat(line_with("x", 21)).value().number(22).ok());
}

TEST(ParseProcStat, FieldThatIsNotANumberIsAnError) {
  std::string s = "1 (x) S 4 -5 6x 7\n";
  auto p = parse_proc_stat(s);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->number(4).value(), 4u);
  EXPECT_FALSE(p->number(5).ok());
  EXPECT_FALSE(p->number(6).ok());
  EXPECT_EQ(p->number(7).value(), 7u);
}

// This process, renamed to ") ) x" by the kernel's own prctl: the real line parses the same way.
TEST(ReadProcStat, ThisProcessUnderAHostileName) {
  char old[17] = {};
  ASSERT_EQ(::prctl(PR_GET_NAME, old), 0);
  ASSERT_EQ(::prctl(PR_SET_NAME, ") ) x"), 0);
  auto s = read_proc_stat(0, 52);
  ::prctl(PR_SET_NAME, old);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_EQ(s->field(1), std::to_string(::getpid()));
  EXPECT_EQ(s->field(2), ") ) x");
  EXPECT_EQ(s->state(), 'R');
  EXPECT_EQ(s->number(4).value(), static_cast<uint64_t>(::getppid()));
  auto other = read_proc_stat(::getpid(), 52);
  ASSERT_TRUE(other.ok()) << other.error().describe();
  EXPECT_EQ(other->field(2), std::string(old));
}

}  // namespace
}  // namespace prewarm
