#include "snapshot/go_runtime.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr uint64_t kMaxSectionBytes = 256u << 20;  // a symbol table larger than this is not read
constexpr uint64_t kMaxMBytes = 64u << 10;         // an m is about 1 KiB in every release so far

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

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
  if (s.sh_size > kMaxSectionBytes) return data_error(std::string("its ") + what + " is larger than 256 MiB");
  std::string bytes(s.sh_size, '\0');
  PW_TRY(pread_all(fd, bytes.data(), bytes.size(), static_cast<off_t>(s.sh_offset)));
  return bytes;
}

// Where the executable's first byte is in memory, minus its first segment's address: 0 for a
// fixed-address executable, the load address of a position-independent one.
Result<uint64_t> load_bias(int fd, const Elf64_Ehdr& eh, const struct stat& st, const std::vector<Vma>& vmas) {
  if (eh.e_type == ET_EXEC) return uint64_t{0};
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 1024) return data_error("its program headers are malformed");
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  PW_TRY(pread_all(fd, ph.data(), ph.size() * sizeof(Elf64_Phdr), static_cast<off_t>(eh.e_phoff)));
  auto first = std::find_if(ph.begin(), ph.end(), [](const Elf64_Phdr& p) { return p.p_type == PT_LOAD && p.p_offset == 0; });
  if (first == ph.end()) return data_error("it has no segment that loads its first page");
  for (const Vma& v : vmas)
    if (v.inode == st.st_ino && makedev(v.dev_major, v.dev_minor) == st.st_dev && v.offset == 0)
      return v.start - (first->p_vaddr & ~uint64_t{0xfff});
  return data_error("its first page is not mapped");
}

}  // namespace

Result<bool> exe_is_go(pid_t pid) {
  PW_ASSIGN(UniqueFd exe, open_fd("/proc/" + std::to_string(pid) + "/exe", O_RDONLY));
  auto e = read_sections(exe.get());
  if (!e) return false;  // not a 64-bit ELF with sections: not a Go build
  const Elf64_Shdr& strtab = e->sh[e->eh.e_shstrndx];
  if (strtab.sh_size > (1u << 20)) return false;
  auto names = read_section(exe.get(), strtab, "section names");
  if (!names) return false;
  constexpr std::string_view kGo = ".go.buildinfo";
  for (const auto& s : e->sh)
    if (s.sh_name + kGo.size() < names->size() && names->compare(s.sh_name, kGo.size() + 1, std::string(kGo) + '\0') == 0)
      return true;
  return false;
}

Result<GoRuntimeSymbols> go_runtime_symbols(pid_t pid, const std::vector<Vma>& vmas) {
  PW_ASSIGN(UniqueFd exe, open_fd("/proc/" + std::to_string(pid) + "/exe", O_RDONLY));
  struct stat st {};
  if (::fstat(exe.get(), &st) != 0) return errno_error("fstat of its executable");
  auto e = read_sections(exe.get());
  if (!e) return data_error("its executable is not a 64-bit ELF file with sections");
  auto symtab = std::find_if(e->sh.begin(), e->sh.end(), [](const Elf64_Shdr& s) { return s.sh_type == SHT_SYMTAB; });
  if (symtab == e->sh.end() || symtab->sh_link >= e->sh.size() || symtab->sh_entsize != sizeof(Elf64_Sym))
    return data_error("its executable has no symbol table (built with -ldflags=-s, or stripped)");
  PW_ASSIGN(std::string syms, read_section(exe.get(), *symtab, "symbol table"));
  PW_ASSIGN(std::string names, read_section(exe.get(), e->sh[symtab->sh_link], "symbol names"));
  PW_ASSIGN(uint64_t bias, load_bias(exe.get(), e->eh, st, vmas));
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
  std::map<uint64_t, std::vector<uint64_t>> ms;  // each m's words, read once
  auto m_at = [&](uint64_t addr) -> const std::vector<uint64_t>* {
    if (auto it = ms.find(addr); it != ms.end()) return it->second.empty() ? nullptr : &it->second;
    std::vector<uint64_t> w(words);
    if (addr % 8 != 0 || !read(addr, w.data(), sym.m_size)) w.clear();
    auto& slot = ms[addr] = std::move(w);
    return slot.empty() ? nullptr : &slot;
  };

  // The link: the field that leads from allm to m0, whose own is null, through at most one m per
  // thread. The longest such list is the runtime's (another pointer may lead to m0 sooner).
  std::vector<uint64_t> list;
  bool tie = false;
  for (size_t link = 0; link < words; ++link) {
    std::vector<uint64_t> chain;
    bool reached = false;
    for (uint64_t cur = allm; cur != 0 && chain.size() < tids.size();) {
      const auto* m = m_at(cur);
      if (!m || std::find(chain.begin(), chain.end(), cur) != chain.end()) break;
      chain.push_back(cur);
      if (cur == sym.m0) {
        reached = (*m)[link] == 0;
        break;
      }
      cur = (*m)[link];
    }
    if (!reached) continue;
    if (chain.size() > list.size()) {
      list = std::move(chain);
      tie = false;
    } else if (chain.size() == list.size() && chain != list) {
      tie = true;
    }
  }
  if (list.empty())
    return data_error("no field of the runtime's m leads from runtime.allm to runtime.m0 through at most " +
                      std::to_string(tids.size()) + " ms (one per thread)");
  if (tie) return data_error("two fields of the runtime's m lead from runtime.allm to runtime.m0");
  if (list.size() != tids.size())
    return data_error("the runtime has " + std::to_string(list.size()) + " ms for " + std::to_string(tids.size()) +
                      " threads (a thread it did not start, or one starting or ending)");

  // The tid fields: in each m a different thread's tid, the main thread's in m0.
  const std::set<uint64_t> known(tids.begin(), tids.end());
  std::vector<size_t> fields;
  const auto& m0 = *m_at(sym.m0);
  for (size_t f = 0; f < words; ++f) {
    if (m0[f] != static_cast<uint64_t>(tids[0])) continue;
    std::set<uint64_t> seen;
    bool each = true;
    for (uint64_t m : list) each = each && known.count((*m_at(m))[f]) && seen.insert((*m_at(m))[f]).second;
    if (each) fields.push_back(f);
  }
  if (fields.empty()) return data_error("no field of the runtime's m holds its thread's id");
  // With one thread a field that holds the pid by chance cannot be told from the id.
  if (fields.size() > 1 && tids.size() == 1) return data_error("several fields of the runtime's only m hold its thread's id");
  std::vector<TidWord> out;
  for (uint64_t m : list)
    for (size_t f : fields) {
      const uint64_t tid = (*m_at(m))[f];
      const auto index = static_cast<uint32_t>(std::find(tids.begin(), tids.end(), static_cast<pid_t>(tid)) - tids.begin());
      out.push_back(TidWord{m + f * 8, 0xffffffffu, index});
    }
  return out;
}

}  // namespace prewarm
