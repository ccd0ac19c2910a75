// Decoding and printing VmFlags mnemonics.
#include "snapshot/vm_flags.h"

#include <array>
#include <utility>

namespace prewarm {
namespace {

using F = VmFlag;

// In the kernel's print order, which is its bit order: on x86_64 rd..gd are bits 0-8, um 9,
// pf 10, uw 12, lo..mg 13-31, ss 37, dp 40, ui 41, sl 42; on arm64 bt takes ar's bit 24 and mt
// is bit 36. A flag added later goes where the kernel prints it, whatever its value.
constexpr std::array<std::pair<VmFlag, std::string_view>, 37> kTable = {{
    {F::kRead, "rd"},        {F::kWrite, "wr"},       {F::kExec, "ex"},         {F::kShared, "sh"},
    {F::kMayRead, "mr"},     {F::kMayWrite, "mw"},    {F::kMayExec, "me"},      {F::kMayShare, "ms"},
    {F::kGrowsDown, "gd"},   {F::kUffdMissing, "um"}, {F::kPfnMap, "pf"},       {F::kUffdWp, "uw"},
    {F::kLocked, "lo"},      {F::kIo, "io"},          {F::kSeqRead, "sr"},      {F::kRandRead, "rr"},
    {F::kDontCopy, "dc"},    {F::kDontExpand, "de"},  {F::kLockOnFault, "lf"},  {F::kAccount, "ac"},
    {F::kNoReserve, "nr"},   {F::kHugetlb, "ht"},     {F::kSync, "sf"},         {F::kArch1, "ar"},
    {F::kArm64Bti, "bt"},    {F::kWipeOnFork, "wf"},  {F::kDontDump, "dd"},     {F::kSoftDirty, "sd"},
    {F::kMixedMap, "mm"},    {F::kHugePage, "hg"},    {F::kNoHugePage, "nh"},   {F::kMergeable, "mg"},
    {F::kArm64Mte, "mt"},    {F::kShadowStack, "ss"}, {F::kDroppable, "dp"},    {F::kUffdMinor, "ui"},
    {F::kSealed, "sl"},
}};

constexpr std::array<VmFlag, kTable.size()> order() {
  std::array<VmFlag, kTable.size()> out{};
  for (size_t i = 0; i < kTable.size(); ++i) out[i] = kTable[i].first;
  return out;
}
constexpr auto kOrder = order();

// Each value once, and every value below the count present: a flag added to the enum but not
// here would be silently unknown.
constexpr bool table_complete() {
  std::array<bool, kTable.size()> seen{};
  for (const auto& [f, name] : kTable) {
    const auto v = static_cast<size_t>(f);
    if (v >= seen.size() || seen[v] || name.size() != 2) return false;
    seen[v] = true;
  }
  return true;
}
static_assert(table_complete(), "kTable must list every VmFlag once");

}  // namespace

std::span<const VmFlag> all_vm_flags() { return kOrder; }

std::string_view mnemonic(VmFlag f) {
  for (const auto& [flag, name] : kTable)
    if (flag == f) return name;
  return "??";
}

ParsedVmFlags parse_vm_flags(std::string_view text) {
  ParsedVmFlags out;
  size_t position = 0;
  while (!text.empty()) {
    const size_t b = text.find_first_not_of(" \t\n");
    if (b == std::string_view::npos) break;
    text.remove_prefix(b);
    const size_t e = std::min(text.find_first_of(" \t\n"), text.size());
    const std::string_view word = text.substr(0, e);
    text.remove_prefix(e);
    bool known = false;
    for (const auto& [flag, name] : kTable)
      if (name == word) {
        out.known.set(flag);
        known = true;
        break;
      }
    if (!known) out.unknown.push_back({std::string(word), position});
    ++position;
  }
  return out;
}

std::string to_text(const ParsedVmFlags& p) {
  std::string out;
  for_each_vm_flag(p, [&](std::optional<VmFlag>, std::string_view word) {
    if (!out.empty()) out += ' ';
    out += word;
  });
  return out;
}

std::string to_text(VmFlags f) { return to_text(ParsedVmFlags{f, {}}); }

}  // namespace prewarm
