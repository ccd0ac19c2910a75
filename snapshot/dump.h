// The dump side: collect the state of a frozen process and write it as an image.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "snapshot/fd_objects.h"
#include "snapshot/proc_attrs.h"
#include "snapshot/proc_fds.h"
#include "snapshot/proc_maps.h"
#include "snapshot/proc_state.h"
#include "snapshot/ptrace_freeze.h"
#include "snapshot/result.h"
#include "snapshot/snapshot.pb.h"
#include "snapshot/threads.h"

namespace prewarm {

struct MappedFile {
  bool exists = false;
  struct stat st {};
};

// Everything read from /proc and ptrace while the process is frozen.
struct ProcessState {
  pid_t pid = -1;
  ProcStatus status;
  int threads = 0;
  std::vector<ThreadInfo> thread_infos;  // every thread held, the main thread first
  MmLayout mm;
  std::vector<Vma> vmas;
  std::vector<MappedFile> vma_files;  // parallel to vmas: stat of the mapped path, if a path
  CpuState cpu;  // the main thread's (thread_infos[0].cpu)
  std::string auxv;
  std::string exe_path;
  struct stat exe_st {};
  pb::TaskState task;                   // cwd, umask, rlimits, rseq, robust list, ...
  std::vector<pb::SigAction> sigactions;  // for every caught signal
  uint64_t altstack_sp = 0, altstack_size = 0;  // the main thread's
  int altstack_flags = 0;
  std::vector<FdInfo> fds;
  ListenEnv listen;  // the sockets its launch passed (LISTEN_FDS), from its exec-time environment
  ProcAttrs attrs;  // classified by policy/attrs.h; the carried ones go into task.attrs
  std::vector<TidWord> runtime_tid_words;  // a runtime's own cache of its threads' ids (Go's m.procid)
};

// Reads everything; runs a few injected syscalls in the process (its registers are put back).
Result<ProcessState> collect_state(FrozenProcess& proc);

// What the image keeps of an open descriptor (after the policy accepted it).
pb::OpenFile open_file_record(const FdInfo& fd, bool directory, bool char_device);

struct DumpStats {
  uint64_t pages_stored = 0;
  uint64_t zero_pages_skipped = 0;
  uint64_t bytes_stored = 0;
  size_t mappings = 0;
  const char* page_finder = "";  // "PAGEMAP_SCAN" or "pagemap" (the fallback), see present_pages.h
  std::vector<HeldLookalike> held_lookalikes;  // see TidWordFinder
};

// Writes the image; `before_publish` (if any) can still veto it once everything is read. With
// `max_bytes`, the write stops (EFBIG, nothing published) as soon as the pages exceed it. `kinds` is parallel to state.vmas: nullopt leaves a mapping out (only for
// mappings outside the user address space). Mappings must already have passed the policy.
Result<DumpStats> write_image(const ProcessState& state,
                              const std::vector<std::optional<pb::Mapping::Kind>>& kinds,
                              const std::vector<pb::OpenFile>& files, const std::string& dir,
                              const std::function<Result<void>()>& before_publish = {},
                              uint64_t max_bytes = 0);

}  // namespace prewarm
