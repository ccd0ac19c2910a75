// The VmFlags of one mapping, decoded once from smaps into typed flags: the parser, the dump,
// the policy and the restore ask about flags, never about their two-letter text.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace prewarm {

// Every mnemonic the kernel's show_smap_vma_flags (fs/proc/task_mmu.c) prints, on x86_64 and
// arm64. The values are bit numbers in images (Mapping.vm_flag_bits): a new flag gets the next
// value, none is ever renumbered. They are not the kernel's VM_* bits, which move between
// versions and alias each other across architectures.
enum class VmFlag : uint8_t {
  kRead = 0,          // rd
  kWrite = 1,         // wr
  kExec = 2,          // ex
  kShared = 3,        // sh
  kMayRead = 4,       // mr
  kMayWrite = 5,      // mw
  kMayExec = 6,       // me
  kMayShare = 7,      // ms
  kGrowsDown = 8,     // gd
  kUffdMissing = 9,   // um
  kPfnMap = 10,       // pf
  kUffdWp = 11,       // uw
  kLocked = 12,       // lo
  kIo = 13,           // io
  kSeqRead = 14,      // sr
  kRandRead = 15,     // rr
  kDontCopy = 16,     // dc
  kDontExpand = 17,   // de
  kLockOnFault = 18,  // lf
  kAccount = 19,      // ac
  kNoReserve = 20,    // nr
  kHugetlb = 21,      // ht
  kSync = 22,         // sf
  kArch1 = 23,        // ar (x86 PAT, ...)
  kArm64Bti = 24,     // bt (the same kernel bit as ar, on arm64)
  kWipeOnFork = 25,   // wf
  kDontDump = 26,     // dd
  kSoftDirty = 27,    // sd
  kMixedMap = 28,     // mm
  kHugePage = 29,     // hg
  kNoHugePage = 30,   // nh
  kMergeable = 31,    // mg
  kArm64Mte = 32,     // mt
  kShadowStack = 33,  // ss
  kDroppable = 34,    // dp
  kUffdMinor = 35,    // ui
  kSealed = 36,       // sl
};

// Every flag, in the order the kernel prints them (its bit order).
std::span<const VmFlag> all_vm_flags();
std::string_view mnemonic(VmFlag f);

class VmFlags {
 public:
  constexpr VmFlags() = default;
  static constexpr VmFlags from_bits(uint64_t bits) { return VmFlags(bits); }
  constexpr uint64_t bits() const { return bits_; }
  constexpr bool has(VmFlag f) const { return (bits_ >> static_cast<unsigned>(f)) & 1; }
  constexpr void set(VmFlag f) { bits_ |= uint64_t{1} << static_cast<unsigned>(f); }
  constexpr bool empty() const { return bits_ == 0; }
  friend constexpr bool operator==(VmFlags, VmFlags) = default;

 private:
  constexpr explicit VmFlags(uint64_t bits) : bits_(bits) {}
  uint64_t bits_ = 0;
};

// A mnemonic this prewarm does not know, kept with its place in the line so the text shown to
// the user is the kernel's.
struct UnknownVmFlag {
  std::string mnemonic;
  size_t position = 0;  // index among all the words of the line
  bool operator==(const UnknownVmFlag&) const = default;
};

// What one "VmFlags:" line said.
struct ParsedVmFlags {
  VmFlags known;
  std::vector<UnknownVmFlag> unknown;  // a refusal, never ignored (policy/attrs.h)
  bool has(VmFlag f) const { return known.has(f); }
  bool empty() const { return known.empty() && unknown.empty(); }
};

// The words after "VmFlags:", e.g. "rd wr mr mw me ac sd".
ParsedVmFlags parse_vm_flags(std::string_view text);

// Each word in the kernel's order: fn(flag, mnemonic), flag nullopt for an unknown one.
template <typename Fn>
void for_each_vm_flag(const ParsedVmFlags& p, Fn&& fn) {
  size_t u = 0, i = 0;
  auto unknown_due = [&] {
    while (u < p.unknown.size() && p.unknown[u].position <= i) {
      fn(std::optional<VmFlag>{}, std::string_view(p.unknown[u++].mnemonic));
      ++i;
    }
  };
  for (VmFlag f : all_vm_flags()) {
    if (!p.known.has(f)) continue;
    unknown_due();
    fn(std::optional<VmFlag>(f), mnemonic(f));
    ++i;
  }
  for (; u < p.unknown.size(); ++u) fn(std::optional<VmFlag>{}, std::string_view(p.unknown[u].mnemonic));
}

// The line as the kernel printed it (without "VmFlags:" and the trailing blank).
std::string to_text(const ParsedVmFlags& p);
std::string to_text(VmFlags f);

}  // namespace prewarm
