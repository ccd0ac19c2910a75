// The readiness message: encoded as the launcher does, stamped as the blob does (digits written
// into its slots), parsed as prewarmd does; and what is not such a message.
#include "snapshot/ready_message.h"

#include <string>

#include <gtest/gtest.h>

namespace prewarm::ready_message {
namespace {

// What restorer/blob/restorer.cpp's stamp() does: `v` in decimal, right-aligned in the slot.
void stamp(std::string& text, size_t at, uint64_t v) {
  for (size_t i = kStampDigits; i-- > 0; v /= 10) text[at + i] = static_cast<char>('0' + v % 10);
}

TEST(ReadyMessage, RoundTrip) {
  std::string text = encode("READY=1\n", 1'000, 2'000, 7'340'032);
  EXPECT_TRUE(is_ready(text));
  auto slots = find_slots(text);
  ASSERT_TRUE(slots.has_value()) << text;
  EXPECT_EQ(text.substr(slots->mapped - kMapped.size() - 1, kMapped.size() + 1), std::string(kMapped) + "=");
  EXPECT_EQ(text.substr(slots->resumed - kResumed.size() - 1, kResumed.size() + 1), std::string(kResumed) + "=");
  stamp(text, slots->mapped, 3'000);
  stamp(text, slots->resumed, 4'000);
  EXPECT_NE(text.find(std::string(kMapped) + "=00000000000000003000\n"), std::string::npos) << text;
  auto s = parse(text);
  ASSERT_TRUE(s.has_value()) << text;
  EXPECT_EQ(s->validated_ns, 1'000);
  EXPECT_EQ(s->read_ns, 2'000);
  EXPECT_EQ(s->mapped_ns, 3'000);
  EXPECT_EQ(s->resumed_ns, 4'000);
  EXPECT_EQ(s->bytes_read, 7'340'032);
  // systemd gets the base only.
  EXPECT_EQ(without_prewarm_fields(text), "READY=1\n");
}

// Unstamped (a blob that never got that far): zeros are before the launcher's own stamps.
TEST(ReadyMessage, UnstampedIsOutOfOrder) {
  EXPECT_FALSE(parse(encode("READY=1\n", 1'000, 2'000, 0)).has_value());
  // With all stamps zero the order holds (the plan's size estimate encodes exactly this).
  EXPECT_TRUE(parse(encode("READY=1\n", 0, 0, 0)).has_value());
}

TEST(ReadyMessage, SlotsAreTheLastOnesAndWholeWidth) {
  // A base that carries a field of the same name does not move the stamp into it.
  const std::string base = "READY=1\n" + std::string(kMapped) + "=1\n";
  const std::string text = encode(base, 1, 2, 3);
  auto slots = find_slots(text);
  ASSERT_TRUE(slots.has_value());
  EXPECT_GT(slots->mapped, base.size());
  EXPECT_FALSE(find_slots("READY=1\n").has_value());
  // A slot cut short (the message truncated) is no slot.
  EXPECT_FALSE(find_slots(text.substr(0, text.size() - 2)).has_value());
  const std::string narrow = "READY=1\n" + std::string(kMapped) + "=000\n" + std::string(kResumed) + "=000\n";
  EXPECT_FALSE(find_slots(narrow).has_value());
}

TEST(ReadyMessage, MalformedIsNothing) {
  const std::string good = encode("READY=1\n", 1, 2, 3);
  for (std::string_view key : {kValidated, kRead, kBytesRead, kMapped, kResumed}) {
    for (const std::string bad : {"", "abc", "12abc", " 12", "12 ", "+12", "1.5", "0x10", "99999999999999999999"}) {
      std::string m = good;
      const size_t at = m.find(std::string(key) + "=") + key.size() + 1;
      m.replace(at, m.find('\n', at) - at, bad);
      EXPECT_FALSE(parse(m).has_value()) << key << "='" << bad << "' in\n" << m;
    }
    // And the field missing.
    std::string m = good;
    const size_t at = m.find(std::string(key) + "=");
    m.erase(at, m.find('\n', at) + 1 - at);
    EXPECT_FALSE(parse(m).has_value()) << "without " << key << ":\n" << m;
  }
  EXPECT_FALSE(parse("").has_value());
  EXPECT_FALSE(parse("READY=1\n").has_value());
}

TEST(ReadyMessage, NegativeBytesAndOutOfOrderAreNothing) {
  std::string m = encode("READY=1\n", 1, 2, 3);
  auto slots = find_slots(m);
  ASSERT_TRUE(slots.has_value());
  stamp(m, slots->mapped, 5), stamp(m, slots->resumed, 6);
  ASSERT_TRUE(parse(m).has_value());
  std::string neg = m;
  neg.replace(neg.find("BYTES_READ=3"), 12, "BYTES_READ=-3");
  EXPECT_FALSE(parse(neg).has_value()) << neg;
  std::string swapped = m;
  stamp(swapped, slots->resumed, 4);  // resumed before mapped
  EXPECT_FALSE(parse(swapped).has_value()) << swapped;
  EXPECT_FALSE(parse(encode("READY=1\n", 2, 1, 3)).has_value());  // read before validated
}

TEST(ReadyMessage, IsReadyNeedsTheWholeLine) {
  EXPECT_TRUE(is_ready("READY=1"));
  EXPECT_TRUE(is_ready("STATUS=up\nREADY=1\n"));
  EXPECT_FALSE(is_ready("READY=10\n"));
  EXPECT_FALSE(is_ready("STATUS=READY=1\n"));
  EXPECT_FALSE(is_ready("XREADY=1\n"));
  EXPECT_FALSE(is_ready(""));
}

// As restorer/blob/lazy_server.h writes it: the field name, '=', the reason, a newline.
TEST(ReadyMessage, LazyFailure) {
  auto f = lazy_failure(std::string(kLazyFailed) + "=a page failed its checksum\n");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(*f, "a page failed its checksum");
  EXPECT_EQ(lazy_failure("PREWARM_LAZY_FAILED=read\n"), std::optional<std::string>("read"));  // the blob's literal
  EXPECT_FALSE(lazy_failure("READY=1\n").has_value());
  EXPECT_FALSE(lazy_failure("STATUS=PREWARM_LAZY_FAILED=x\n").has_value());
}

// As restorer/blob/restorer.cpp's die() writes it.
TEST(ReadyMessage, RestoreFailure) {
  EXPECT_EQ(restore_failure("PREWARM_RESTORE_FAILED=mremap of the vDSO failed (errno 1) at 0x00003f8db9c1a000\n"),
            std::optional<std::string>("mremap of the vDSO failed (errno 1) at 0x00003f8db9c1a000"));
  EXPECT_EQ(std::string(kRestoreFailed), "PREWARM_RESTORE_FAILED");  // the blob's literal
  EXPECT_FALSE(restore_failure("READY=1\n").has_value());
  EXPECT_FALSE(restore_failure(std::string(kLazyFailed) + "=x\n").has_value());
  EXPECT_FALSE(lazy_failure(std::string(kRestoreFailed) + "=x\n").has_value());
}

TEST(WithoutPrewarmFields, DropsExactlyThePrewarmLines) {
  EXPECT_EQ(without_prewarm_fields("READY=1\nPREWARM_X=3\nSTATUS=serving on :8080\nPREWARM_READ_NS=5\nMAINPID=77\n"),
            "READY=1\nSTATUS=serving on :8080\nMAINPID=77\n");
}

TEST(WithoutPrewarmFields, KeepsEverythingElseVerbatim) {
  for (const std::string m : {"READY=1", "READY=1\n", "STATUS=PREWARM_X=1 is only text\nREADY=1\n",
                              "X_PREWARM_Y=1\nprewarm_lower=2\n", "READY=1\n\nSTATUS=two newlines\n", ""})
    EXPECT_EQ(without_prewarm_fields(m), m);
  EXPECT_EQ(without_prewarm_fields("PREWARM_X=3\nREADY=1"), "READY=1");
  EXPECT_EQ(without_prewarm_fields("PREWARM_X=3\n"), "");
}

}  // namespace
}  // namespace prewarm::ready_message
