// What a Go program's runtime keeps of its threads' ids, so a restore can give them the new ones.
// Every Go thread is an m; the runtime caches the thread's id in it (m.procid) and signals it with
// tgkill on that id to preempt a busy goroutine (and arms per-thread profiling timers for it).
// Restored with the old ids, those signals would reach no thread, and a goroutine in a loop
// without calls could never be stopped for a garbage collection: the program would hang.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "snapshot/dump.h"
#include "snapshot/proc_maps.h"
#include "snapshot/result.h"
#include "snapshot/threads.h"

namespace prewarm {

// Whether the process runs a Go program: its executable (read through /proc/PID/exe, never by
// path) has the ELF section .go.buildinfo that every Go toolchain since 1.13 writes.
Result<bool> exe_is_go(pid_t pid);

// The first library the process maps (not its executable) that holds a Go runtime (a Go
// c-shared or c-archive build loaded by a C program), or "". `files`: parallel to vmas, what
// the dump found at each mapping's path (ProcessState::vma_files).
Result<std::string> mapped_go_library(const std::vector<Vma>& vmas, const std::vector<MappedFile>& files,
                                      const struct stat& exe_st);

// Where the runtime's list of ms is, in the process's memory.
struct GoRuntimeSymbols {
  uint64_t allm = 0;    // runtime.allm: the newest m; each links to the one made before it
  uint64_t m0 = 0;      // runtime.m0: the main thread's m, the list's last
  uint64_t m_size = 0;  // runtime.m0's size: an m's
};

// Reads the symbols from the executable's symbol table (through /proc/PID/exe), placed where
// the kernel loaded it (`auxv`: /proc/PID/auxv's bytes). An error says why not (a stripped
// binary has no symbol table).
Result<GoRuntimeSymbols> go_runtime_symbols(pid_t pid, const std::string& auxv);

// Reads `len` bytes of the process's memory at `addr`; false if they cannot be read.
using ReadMemory = std::function<bool(uint64_t addr, void* out, size_t len)>;

// The words of every m that hold its thread's tid, found without knowing the m's layout (it
// changes between Go releases): the list's link is the field that leads from allm to m0, and a
// tid field is one that holds the main thread's tid in m0 and, in each other m, a different
// thread's or 0 (an m without a thread: cgo's spare one). An error says why the ids cannot be
// found, and the dump is then refused. `tids`: main first.
Result<std::vector<TidWord>> go_tid_words(const ReadMemory& read, const GoRuntimeSymbols& sym,
                                          const std::vector<pid_t>& tids);

}  // namespace prewarm
