// The readiness message: encode and parse, in one place.
#include "snapshot/ready_message.h"

#include <charconv>
#include <vector>

namespace prewarm::ready_message {
namespace {

struct Line {
  std::string_view text;  // without its '\n'
  bool terminated;        // a '\n' followed it
};

// The lines of a notify message (newline-separated assignments).
std::vector<Line> lines_of(std::string_view message) {
  std::vector<Line> out;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find('\n', pos);
    if (end == std::string_view::npos) end = message.size();
    out.push_back({message.substr(pos, end - pos), end < message.size()});
    pos = end + 1;
  }
  return out;
}

// The value of the first KEY=... line.
std::optional<std::string_view> value(std::string_view message, std::string_view key) {
  for (const Line& l : lines_of(message))
    if (l.text.size() > key.size() && l.text.starts_with(key) && l.text[key.size()] == '=')
      return l.text.substr(key.size() + 1);
  return std::nullopt;
}

// value() as a string of its own, for a reply that outlives the message.
std::optional<std::string> owned_value(std::string_view message, std::string_view key) {
  auto v = value(message, key);
  if (!v) return std::nullopt;
  return std::string(*v);
}

// The value of KEY=<decimal>: digits only (a leading '-' allowed), nothing else on the line.
std::optional<int64_t> number(std::string_view message, std::string_view key) {
  auto v = value(message, key);
  if (!v) return std::nullopt;
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || p != v->data() + v->size()) return std::nullopt;
  return out;
}

std::string line(std::string_view key, std::string_view v) {
  return std::string(key).append("=").append(v).append("\n");
}

}  // namespace

std::string encode(std::string_view base, int64_t validated_ns, int64_t read_ns, uint64_t bytes_read) {
  const std::string slot(kStampDigits, '0');
  return std::string(base) + line(kValidated, std::to_string(validated_ns)) + line(kRead, std::to_string(read_ns)) +
         line(kBytesRead, std::to_string(bytes_read)) + line(kMapped, slot) + line(kResumed, slot);
}

std::optional<Slots> find_slots(std::string_view text) {
  // The last of each: a base that happens to carry the name must not move the stamp into it.
  auto slot = [&](std::string_view key) -> std::optional<size_t> {
    const std::string needle = "\n" + std::string(key) + "=";
    const size_t at = text.rfind(needle);
    if (at == std::string_view::npos) return std::nullopt;
    const size_t digits = at + needle.size();
    if (digits + kStampDigits >= text.size() || text[digits + kStampDigits] != '\n') return std::nullopt;
    return digits;
  };
  auto mapped = slot(kMapped), resumed = slot(kResumed);
  if (!mapped || !resumed) return std::nullopt;
  return Slots{*mapped, *resumed};
}

std::optional<Stamps> parse(std::string_view message) {
  auto validated = number(message, kValidated), read = number(message, kRead);
  auto mapped = number(message, kMapped), resumed = number(message, kResumed);
  auto bytes = number(message, kBytesRead);
  if (!validated || !read || !mapped || !resumed || !bytes || *bytes < 0) return std::nullopt;
  // One clock, read in this order: anything else is a forged or damaged message.
  if (!(*validated <= *read && *read <= *mapped && *mapped <= *resumed)) return std::nullopt;
  return Stamps{*validated, *read, *mapped, *resumed, *bytes};
}

bool is_ready(std::string_view message) {
  for (const Line& l : lines_of(message))
    if (l.text == "READY=1") return true;
  return false;
}

std::optional<std::string> lazy_failure(std::string_view message) { return owned_value(message, kLazyFailed); }

std::optional<std::string> restore_failure(std::string_view message) { return owned_value(message, kRestoreFailed); }

std::string without_prewarm_fields(std::string_view message) {
  std::string out;
  for (const Line& l : lines_of(message))
    if (!l.text.starts_with(kPrefix)) out.append(l.text).append(l.terminated ? "\n" : "");
  return out;
}

}  // namespace prewarm::ready_message
