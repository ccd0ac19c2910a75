// Describes an image for people (table) and scripts (--json).
#include "prewarmd/cmd_inspect.h"

#include <sys/mman.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "prewarmd/cmd_dump.h"
#include "prewarmd/protocol.h"
#include "snapshot/image.h"

namespace prewarm::cli {
namespace {

using nlohmann::json;

const char* kind_name(pb::Mapping::Kind k) {
  switch (k) {
    case pb::Mapping::ANON: return "anon";
    case pb::Mapping::FILE: return "file";
    case pb::Mapping::VDSO: return "vdso";
    case pb::Mapping::VVAR: return "vvar";
    case pb::Mapping::VVAR_VCLOCK: return "vvar_vclock";
    case pb::Mapping::SHARED_ANON: return "shared_anon";
    default: return "unknown";
  }
}

std::string prot_text(uint32_t prot, bool shared) {
  std::string s = "---p";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  if (shared) s[3] = 's';
  return s;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%lx", static_cast<unsigned long>(v));
  return b;
}

json describe(const pb::Snapshot& s, const std::string& dir) {
  // Stored bytes and runs per mapping (runs are sorted like mappings).
  std::vector<uint64_t> stored(static_cast<size_t>(s.mappings_size()), 0);
  std::vector<int> runs(stored.size(), 0);
  std::map<std::string, int> run_sizes;
  size_t mi = 0;
  for (const auto& r : s.page_runs()) {
    while (mi < stored.size() && s.mappings(static_cast<int>(mi)).end() <= r.addr()) ++mi;
    if (mi < stored.size()) stored[mi] += r.len(), runs[mi] += 1;
    uint64_t pages = r.len() / kPageSize;
    run_sizes[pages == 1 ? "1" : pages < 16 ? "2-15" : pages < 256 ? "16-255" : "256+"] += 1;
  }
  json maps = json::array();
  for (int i = 0; i < s.mappings_size(); ++i) {
    const auto& m = s.mappings(i);
    maps.push_back({{"start", hex(m.start())},
                    {"end", hex(m.end())},
                    {"size", m.end() - m.start()},
                    {"perms", prot_text(m.prot(), m.shared())},
                    {"kind", kind_name(m.kind())},
                    {"name", m.name()},
                    {"offset", m.file_offset()},
                    {"vm_flags", m.vm_flags()},
                    {"stored_bytes", stored[static_cast<size_t>(i)]},
                    {"runs", runs[static_cast<size_t>(i)]}});
  }
  json fds = json::array();
  for (const auto& f : s.files())
    fds.push_back({{"fd", f.fd()}, {"path", f.path()}, {"flags", f.flags()}, {"pos", f.pos()},
                   {"cloexec", f.cloexec()}, {"kind", pb::FdKind_Name(f.kind())}});
  json handlers = json::array();
  for (const auto& a : s.signals().actions())
    handlers.push_back({{"signo", a.signo()}, {"handler", hex(a.handler())}, {"flags", hex(a.flags())}});
  // The main thread first (its state is the process's), then the others in /proc/PID/task order.
  json threads = json::array();
  threads.push_back({{"tid", s.process().pid()},
                     {"comm", s.process().comm()},
                     {"syscall", pb::SyscallState::Action_Name(s.regs().syscall().action())},
                     {"syscall_nr", s.regs().syscall().nr()},
                     {"blocked", hex(s.signals().blocked())}});
  for (const auto& th : s.threads())
    threads.push_back({{"tid", th.tid()},
                       {"comm", th.comm()},
                       {"syscall", pb::SyscallState::Action_Name(th.regs().syscall().action())},
                       {"syscall_nr", th.regs().syscall().nr()},
                       {"blocked", hex(th.blocked())}});
  const auto& t = s.task();
  return {{"images", dir},
          {"format_version", s.format_version()},
          {"process",
           {{"pid", s.process().pid()},
            {"comm", s.process().comm()},
            {"exe", s.process().exe_path()},
            {"dump_time_ns", s.process().dump_time_ns()}}},
          {"compat",
           {{"kernel_release", s.compat().kernel_release()},
            {"xfeatures", hex(s.compat().xfeatures())},
            {"xsave_size", s.compat().xsave_size()}}},
          {"pages_img_bytes", s.pages_img_size()},
          {"page_runs", s.page_runs_size()},
          {"page_run_sizes_in_pages", run_sizes},
          {"mappings", maps},
          {"files", fds},
          {"threads", threads},
          {"tid_words", s.tid_words_size()},
          {"signals",
           {{"blocked", hex(s.signals().blocked())},
            {"ignored", hex(s.signals().ignored())},
            {"handlers", handlers}}},
          {"task",
           {{"cwd", t.cwd()},
            {"umask", t.umask()},
            {"rseq", t.rseq_area() != 0},
            {"syscall", pb::SyscallState::Action_Name(s.regs().syscall().action())},
            {"syscall_nr", s.regs().syscall().nr()}}}};
}

}  // namespace

int run_inspect(const std::string& dir, bool as_json) {
  auto img = load_image(dir);
  if (!img) {
    std::fprintf(stderr, "prewarm inspect: %s\n", img.error().describe().c_str());
    return kExitError;
  }
  json d = describe(img->snap, dir);
  if (as_json) {
    std::printf("%s\n", proto::json_text(d, 2).c_str());
    return kExitOk;
  }
  std::printf("image %s (format %u)\n", dir.c_str(), img->snap.format_version());
  std::printf("  process   pid %d (%s), %s\n", img->snap.process().pid(),
              img->snap.process().comm().c_str(), img->snap.process().exe_path().c_str());
  std::printf("  kernel    %s\n", img->snap.compat().kernel_release().c_str());
  std::printf("  pages     %.1f MiB in %d runs\n", img->snap.pages_img_size() / 1048576.0,
              img->snap.page_runs_size());
  std::printf("  syscall   %s (nr %ld)\n", d["task"]["syscall"].get<std::string>().c_str(),
              static_cast<long>(img->snap.regs().syscall().nr()));
  std::printf("  files     %d open besides stdio; cwd %s\n", img->snap.files_size(),
              img->snap.task().cwd().c_str());
  std::printf("  signals   %zu handlers, blocked %s\n", d["signals"]["handlers"].size(),
              d["signals"]["blocked"].get<std::string>().c_str());
  std::printf("  threads   %zu; %d held locks get their holder's new tid\n", d["threads"].size(),
              img->snap.tid_words_size());
  for (const auto& t : d["threads"])
    std::printf("    %-8d %-16s %s (nr %ld)\n", t["tid"].get<int>(), t["comm"].get<std::string>().c_str(),
                t["syscall"].get<std::string>().c_str(), static_cast<long>(t["syscall_nr"].get<int64_t>()));
  std::printf("  mappings  %d\n", img->snap.mappings_size());
  std::printf("    %-25s %-4s %-11s %10s %10s  %s\n", "range", "perm", "kind", "size", "stored", "name");
  for (const auto& m : d["mappings"])
    std::printf("    %12s-%-12s %-4s %-11s %9luK %9luK  %s\n", m["start"].get<std::string>().c_str(),
                m["end"].get<std::string>().c_str(), m["perms"].get<std::string>().c_str(),
                m["kind"].get<std::string>().c_str(), m["size"].get<uint64_t>() / 1024,
                m["stored_bytes"].get<uint64_t>() / 1024, m["name"].get<std::string>().c_str());
  return kExitOk;
}

}  // namespace prewarm::cli
