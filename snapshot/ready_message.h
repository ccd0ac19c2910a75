// The readiness message of a restore: the sd_notify text the launcher writes (restorer/plan.cpp
// puts it into the plan), the blob stamps with its clock and sends from the app, and prewarmd
// reads (its phase times) and relays to systemd without prewarm's own fields. Field names, the
// encoder and the parser live here only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace prewarm::ready_message {

// Every field prewarm adds starts so; prewarmd strips them before relaying (systemd would log
// each unknown one).
inline constexpr std::string_view kPrefix = "PREWARM_";
inline constexpr std::string_view kValidated = "PREWARM_VALIDATED_NS";  // CLOCK_MONOTONIC, launcher
inline constexpr std::string_view kRead = "PREWARM_READ_NS";            // launcher: pages read
inline constexpr std::string_view kBytesRead = "PREWARM_BYTES_READ";
inline constexpr std::string_view kMapped = "PREWARM_MAPPED_NS";    // blob: every mapping in place
inline constexpr std::string_view kResumed = "PREWARM_RESUMED_NS";  // blob: just before the app runs
// Sent alone by a lazy restore's page server as it kills the app (restorer/blob/lazy_server.h
// writes it by hand: the blob includes nothing).
inline constexpr std::string_view kLazyFailed = "PREWARM_LAZY_FAILED";
// Sent alone by the blob as it ends the process past the point of no return (its die(), by hand).
inline constexpr std::string_view kRestoreFailed = "PREWARM_RESTORE_FAILED";
// The width of the blob's decimal slots (PW_STAMP_DIGITS, static_assert'ed in restorer/plan.cpp).
inline constexpr size_t kStampDigits = 20;

// `base` (what systemd gets, "READY=1\n"), the launcher's fields, then kMapped and kResumed with
// kStampDigits zeros each, for the blob to overwrite.
std::string encode(std::string_view base, int64_t validated_ns, int64_t read_ns, uint64_t bytes_read);

// Where in an encode()d message the blob writes its two stamps (the first digit of each
// slot); nothing if `text` lacks either slot.
struct Slots {
  size_t mapped = 0, resumed = 0;
};
std::optional<Slots> find_slots(std::string_view text);

// The restore's clock readings, as sent. Any field missing or not a plain decimal, a negative
// byte count, or stamps out of order (validated <= read <= mapped <= resumed): nothing.
struct Stamps {
  int64_t validated_ns = 0, read_ns = 0, mapped_ns = 0, resumed_ns = 0;
  int64_t bytes_read = 0;
};
std::optional<Stamps> parse(std::string_view message);

// The message has a line READY=1.
bool is_ready(std::string_view message);

// What a lazy restore's page server reported (kLazyFailed=...), if the message is that.
std::optional<std::string> lazy_failure(std::string_view message);
// What the blob reported (kRestoreFailed=...) as it failed past the point of no return.
std::optional<std::string> restore_failure(std::string_view message);

// `message` without its kPrefix lines: what goes on to systemd.
std::string without_prewarm_fields(std::string_view message);

}  // namespace prewarm::ready_message
