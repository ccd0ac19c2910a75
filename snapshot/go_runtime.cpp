#include "snapshot/go_runtime.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kMaxSectionBytes = 256u << 20;  // a symbol table larger than this is not read
constexpr uint64_t kMaxMBytes = 16u << 10;         // an m is about 1 KiB in every release so far
constexpr size_t kMaxMs = 1u << 14;                // the runtime's own limit on threads is 10,000
constexpr size_t kMaxReads = 1u << 20;             // words read looking for the list's link

// A 64-bit ELF's header and section headers; nullopt if the file is not one.
struct ElfSections {
  Elf64_Ehdr eh{};
  std::vector<Elf64_Shdr> sh;
};

std::optional<ElfSections> read_sections(int fd) {
  ElfSections e;
  if (::pread(fd, &e.eh, sizeof e.eh, 0) != static_cast<ssize_t>(sizeof e.eh) ||
      std::memcmp(e.eh.e_ident, ELFMAG, SELFMAG) != 0 || e.eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      e.eh.e_shentsize != sizeof(Elf64_Shdr) || e.eh.e_shstrndx >= e.eh.e_shnum || e.eh.e_shnum > 4096)
    return std::nullopt;
  e.sh.resize(e.eh.e_shnum);
  if (!pread_all(fd, e.sh.data(), e.sh.size() * sizeof(Elf64_Shdr), static_cast<off_t>(e.eh.e_shoff))) return std::nullopt;
  return e;
}

Result<std::string> read_section(int fd, const Elf64_Shdr& s, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat of the file");
  if (s.sh_size > kMaxSectionBytes) return data_error(std::string("its ") + what + " is larger than 256 MiB");
  if (s.sh_offset > static_cast<uint64_t>(st.st_size) || s.sh_size > static_cast<uint64_t>(st.st_size) - s.sh_offset)
    return data_error(std::string("its ") + what + " lies past the end of the file");
  std::string bytes(s.sh_size, '\0');
  PW_TRY(pread_all(fd, bytes.data(), bytes.size(), static_cast<off_t>(s.sh_offset)));
  return bytes;
}

// How far from its link-time addresses the executable is loaded: 0 for a fixed-address one,
// the kernel's choice for a position-independent one, read off the entry point the kernel
// reported (AT_ENTRY in `auxv`, /proc/PID/auxv's bytes).
Result<uint64_t> load_bias(const Elf64_Ehdr& eh, const std::string& auxv) {
  if (eh.e_type == ET_EXEC) return uint64_t{0};
  for (size_t off = 0; off + 16 <= auxv.size(); off += 16) {
    uint64_t kv[2];
    std::memcpy(kv, auxv.data() + off, sizeof kv);
    if (kv[0] == AT_ENTRY) return kv[1] - eh.e_entry;
  }
  return data_error("its auxiliary vector has no entry point (AT_ENTRY)");
}

// Whether the open ELF file has the section .go.buildinfo (false for a file that is not ELF).
bool has_go_buildinfo(int fd) {
  auto e = read_sections(fd);
  if (!e) return false;
  const Elf64_Shdr& strtab = e->sh[e->eh.e_shstrndx];
  if (strtab.sh_size > (1u << 20)) return false;
  auto names = read_section(fd, strtab, "section names");
  if (!names) return false;
  constexpr std::string_view kGo = ".go.buildinfo";
  for (const auto& s : e->sh)
    if (s.sh_name + kGo.size() < names->size() && names->compare(s.sh_name, kGo.size() + 1, std::string(kGo) + '\0') == 0)
      return true;
  return false;
}

}  // namespace

Result<bool> exe_is_go(pid_t pid) {
  PW_ASSIGN(UniqueFd exe, open_fd("/proc/" + std::to_string(pid) + "/exe", O_RDONLY));
  return has_go_buildinfo(exe.get());
}

Result<std::string> mapped_go_library(const std::vector<Vma>& vmas, const std::vector<MappedFile>& files,
                                      const struct stat& exe_st) {
  std::set<std::pair<dev_t, ino_t>> looked;
  for (size_t i = 0; i < vmas.size() && i < files.size(); ++i) {
    const Vma& v = vmas[i];
    const struct stat& at = files[i].st;
    // Files by the stat of their path, as the dump saw them: on overlayfs the maps line names
    // the layer's device, a stat of the path the overlay's.
    if (!(v.prot & PROT_EXEC) || v.inode == 0 || !files[i].exists || !S_ISREG(at.st_mode) ||
        (at.st_ino == exe_st.st_ino && at.st_dev == exe_st.st_dev) || !looked.insert({at.st_dev, at.st_ino}).second)
      continue;
    // By path, checked to be the file the dump saw there: a path changed since only hides the
    // app's own runtime from this check, and so breaks only its own restores.
    UniqueFd fd(::open(v.name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_ino != at.st_ino || st.st_dev != at.st_dev)
      return data_error(v.name + ": the mapped file cannot be opened at its path to see whether it holds a Go runtime");
    if (has_go_buildinfo(fd.get())) return v.name;
  }
  return std::string();
}

Result<GoRuntimeSymbols> go_runtime_symbols(pid_t pid, const std::string& auxv) {
  PW_ASSIGN(UniqueFd exe, open_fd("/proc/" + std::to_string(pid) + "/exe", O_RDONLY));
  auto e = read_sections(exe.get());
  if (!e) return data_error("its executable is not a 64-bit ELF file with sections");
  auto symtab = std::find_if(e->sh.begin(), e->sh.end(), [](const Elf64_Shdr& s) { return s.sh_type == SHT_SYMTAB; });
  if (symtab == e->sh.end() || symtab->sh_link >= e->sh.size() || symtab->sh_entsize != sizeof(Elf64_Sym))
    return data_error("its executable has no symbol table (built with -ldflags=-s, or stripped)");
  PW_ASSIGN(std::string syms, read_section(exe.get(), *symtab, "symbol table"));
  PW_ASSIGN(std::string names, read_section(exe.get(), e->sh[symtab->sh_link], "symbol names"));
  PW_ASSIGN(uint64_t bias, load_bias(e->eh, auxv));
  GoRuntimeSymbols out;
  uint64_t allm_size = 0;
  for (size_t off = 0; off + sizeof(Elf64_Sym) <= syms.size(); off += sizeof(Elf64_Sym)) {
    Elf64_Sym s;
    std::memcpy(&s, syms.data() + off, sizeof s);
    if (s.st_name >= names.size() || ELF64_ST_TYPE(s.st_info) != STT_OBJECT) continue;
    const char* name = names.c_str() + s.st_name;
    if (std::strcmp(name, "runtime.allm") == 0) out.allm = s.st_value + bias, allm_size = s.st_size;
    if (std::strcmp(name, "runtime.m0") == 0) out.m0 = s.st_value + bias, out.m_size = s.st_size;
  }
  if (!out.allm || !out.m0) return data_error("its symbol table has no runtime.allm or runtime.m0");
  if (allm_size != 8) return data_error("runtime.allm is " + std::to_string(allm_size) + " bytes, not a pointer");
  return out;
}

Result<std::vector<TidWord>> go_tid_words(const ReadMemory& read, const GoRuntimeSymbols& sym,
                                          const std::vector<pid_t>& tids) {
  if (tids.empty()) return data_error("no threads");
  if (sym.m_size < 64 || sym.m_size > kMaxMBytes || sym.m_size % 8 != 0)
    return data_error("runtime.m0 is " + std::to_string(sym.m_size) + " bytes, not an m of a known size");
  uint64_t allm = 0;
  if (!read(sym.allm, &allm, sizeof allm)) return data_error("runtime.allm at " + hex(sym.allm) + " cannot be read");
  const size_t words = sym.m_size / 8;
  // One word read per step, at most kMaxReads in all: a hostile process's memory cannot make
  // this search large.
  size_t reads = 0;
  auto word_at = [&](uint64_t addr, uint64_t& out) { return ++reads <= kMaxReads && addr % 8 == 0 && read(addr, &out, 8); };

  // The link: the field that leads from allm to m0, whose own is null. The longest such list is
  // the runtime's (another pointer may lead to m0 sooner).
  std::vector<uint64_t> list;
  bool tie = false;
  for (size_t link = 0; link < words && reads <= kMaxReads; ++link) {
    std::vector<uint64_t> chain;
    std::set<uint64_t> seen;
    bool reached = false;
    for (uint64_t cur = allm; cur != 0 && chain.size() < kMaxMs && seen.insert(cur).second;) {
      chain.push_back(cur);
      uint64_t next = 0;
      if (!word_at(cur + link * 8, next)) break;
      if (cur == sym.m0) {
        reached = next == 0;
        break;
      }
      cur = next;
    }
    if (!reached) continue;
    if (chain.size() > list.size()) {
      list = std::move(chain);
      tie = false;
    } else if (chain.size() == list.size() && chain != list) {
      tie = true;
    }
  }
  if (reads > kMaxReads) return data_error("the runtime's list of ms is not found within " + std::to_string(kMaxReads) + " reads");
  if (list.empty()) return data_error("no field of the runtime's m leads from runtime.allm to runtime.m0");
  if (tie) return data_error("two fields of the runtime's m lead from runtime.allm to runtime.m0");

  // The tid fields: the main thread's tid in m0, and in every other m a different thread's, or
  // 0 (an m with no thread: cgo's spare one, or one whose thread is still starting). A thread
  // with no m is one C code started, which the runtime never signals.
  std::vector<uint64_t> m0(words);
  if (!read(sym.m0, m0.data(), sym.m_size)) return data_error("runtime.m0 at " + hex(sym.m0) + " cannot be read");
  const std::set<uint64_t> known(tids.begin(), tids.end());
  std::vector<size_t> fields;
  std::vector<std::vector<uint64_t>> values;  // per field found, per m of the list
  size_t holding = 0;  // the ms with a thread
  for (size_t f = 0; f < words; ++f) {
    if (m0[f] != static_cast<uint64_t>(tids[0])) continue;
    std::set<uint64_t> seen;
    std::vector<uint64_t> vals;
    bool each = true;
    for (uint64_t m : list) {
      uint64_t v = 0;
      if (!word_at(m + f * 8, v))
        return data_error(reads > kMaxReads ? "the runtime's ms hold too many words that equal the pid"
                                            : "the runtime's m at " + hex(m) + " cannot be read");
      each = v == 0 || (known.count(v) && seen.insert(v).second);
      if (!each) break;
      vals.push_back(v);
    }
    if (!each) continue;
    fields.push_back(f);
    values.push_back(std::move(vals));
    holding = seen.size();
  }
  if (fields.empty()) return data_error("no field of the runtime's m holds its thread's id");
  // With one m holding a thread, a field that holds the pid by chance cannot be told from the id.
  if (fields.size() > 1 && holding < 2) return data_error("several fields of the runtime's m0 hold its thread's id");
  std::vector<TidWord> out;
  for (size_t i = 0; i < list.size(); ++i)
    for (size_t k = 0; k < fields.size(); ++k) {
      const size_t f = fields[k];
      const uint64_t tid = values[k][i];
      if (tid == 0) continue;
      const auto index = static_cast<uint32_t>(std::find(tids.begin(), tids.end(), static_cast<pid_t>(tid)) - tids.begin());
      out.push_back(TidWord{list[i] + f * 8, 0xffffffffu, index});
    }
  return out;
}

}  // namespace prewarm
