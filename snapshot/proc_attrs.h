// Process attributes beyond memory, registers and files: every field of /proc/PID/status and
// stat, oom_score_adj, POSIX timers, file locks, and the prctl/itimer/membarrier state only the
// process can report (read by injected syscalls). The policy (policy/attrs.h) decides for each
// whether it is carried, the launch's own, or refused; nothing read here is dropped unnamed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/proc_fds.h"
#include "snapshot/proc_maps.h"
#include "snapshot/ptrace_freeze.h"
#include "snapshot/result.h"

namespace prewarm {

// One line of /proc/PID/timers: a POSIX timer made by timer_create(2).
struct PosixTimerInfo {
  int id = 0;
  std::string signal;  // "14/0000000000000000" as printed
  std::string notify;  // "signal/pid.123", "thread/...", "none/..."
  std::string clock;   // the ClockID number
  // timer_gettime in the process; `carried` when the lines above parsed into a timer the
  // restore can recreate (SIGEV_SIGNAL or SIGEV_NONE to the process, or to its main thread).
  int64_t value_ns = 0, interval_ns = 0;
  bool carried = false;
  int clock_id = 0, notify_kind = 0, signo = 0;
  uint64_t sigval = 0;
};
// Fills the parsed fields of `t` (carried, clock_id, ...); `pid` is the process's own.
void classify_timer(PosixTimerInfo& t, int pid);

// An fdinfo `lock:` line (flock, POSIX, OFD locks and leases on that fd's file).
struct FdLock {
  int fd = -1;
  std::string line;
  // Parsed from the line: "1: FLOCK  ADVISORY  WRITE 99 00:1a:12 0 EOF".
  std::string kind;    // FLOCK, OFDLCK, POSIX, LEASE, DELEG, ...
  std::string mode;    // ADVISORY, MANDATORY, ACTIVE, BREAKING, ...
  std::string access;  // READ, WRITE, UNLCK, ...
  uint64_t start = 0, end = 0;  // end 0: EOF
  std::string dev_ino;          // "00:1a:12": the file (a POSIX lock shows on each of its fds)
  bool parsed = false;
};
FdLock parse_lock_line(int fd, const std::string& line);

struct ItimerValue {
  int which = 0;                 // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
  int64_t value_us = 0, interval_us = 0;
};

// prctl(PR_GET_*) and friends, run inside the process. `-errno` where the call failed.
struct PrctlState {
  long child_subreaper = 0;
  long thp_disable = 0;
  long pdeathsig = 0;
  long timerslack_ns = 0;
  long dumpable = 1;
  long mce_kill = 2;          // PR_MCE_KILL_DEFAULT
  long tsc = 1;               // PR_TSC_ENABLE
  long io_flusher = 0;
  long memory_merge = 0;
  long mdwe = 0;
  long cpuid = 1;             // arch_prctl(ARCH_GET_CPUID): 1 = cpuid allowed
  long membarrier = 0;        // MEMBARRIER_CMD_GET_REGISTRATIONS
  bool mlock_future = false;  // a fresh mapping comes out locked: mlockall(MCL_FUTURE)
  bool mlock_onfault = false; // ... with MCL_ONFAULT
};

struct ProcAttrs {
  std::vector<std::pair<std::string, std::string>> status;  // every "Key:\tvalue" line, in order
  std::vector<std::string> stat;                             // stat fields; [0] is field 1 (pid)
  int oom_score_adj = 0;
  std::vector<PosixTimerInfo> timers;
  std::vector<FdLock> locks;
  // Keys of the fdinfo lines of every fd, to refuse a key this prewarm does not know.
  std::vector<std::pair<int, std::string>> fdinfo_keys;
  std::vector<ItimerValue> itimers;
  PrctlState prctl;
  // /proc/PID/task/*/children: the process's children, zombies too. A restore makes none.
  std::vector<int> children;
};

// Parsers of the files' text (unit tested).
std::vector<std::pair<std::string, std::string>> parse_status_fields(const std::string& text);
Result<std::vector<std::string>> parse_stat_fields(const std::string& text);
Result<std::vector<PosixTimerInfo>> parse_timers(const std::string& text);
// The keys of an fdinfo file and its `lock:` lines.
void parse_fdinfo_attrs(int fd, const std::string& text, ProcAttrs& out);

// Reads every file above and runs the injected getters. The process must be frozen.
Result<ProcAttrs> collect_attrs(FrozenProcess& proc, int mem_fd, const std::vector<Vma>& vmas,
                                const std::vector<FdInfo>& fds);

// The launcher's own /proc/self/status value of `key`, "" when absent (for match checks).
std::string own_status_field(const std::string& key);

}  // namespace prewarm

namespace prewarm::pb {
class AttrState;
}

namespace prewarm {
// The image's record of the carried attributes; `match_keys` (from the policy) name the status
// fields ("stat:N" for stat fields) a restoring launch must share.
void fill_attr_state(const ProcAttrs& a, const std::vector<std::string>& match_keys, pb::AttrState* out);
}  // namespace prewarm
