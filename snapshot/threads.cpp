// Collecting each thread's state while the process is frozen.
#include "snapshot/threads.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "snapshot/inject_syscall.h"
#include "snapshot/proc_stat.h"
#include "snapshot/proc_state.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

constexpr size_t kMaxRobustEntries = 4096;

template <typename T>
Result<T> read_word(int mem_fd, uint64_t addr) {
  T v{};
  auto r = pread_all(mem_fd, &v, sizeof v, static_cast<off_t>(addr));
  if (!r) return make_error(r.error().code, "read thread memory at " + std::to_string(addr));
  return v;
}

// struct robust_list_head { next; long futex_offset; list_op_pending; }: every entry on the
// list is a robust mutex the thread holds, and its futex word holds the thread's tid.
Result<void> read_robust_list(int mem_fd, ThreadInfo& t) {
  if (t.robust_list == 0) return ok();
  PW_ASSIGN(uint64_t next, read_word<uint64_t>(mem_fd, t.robust_list));
  PW_ASSIGN(uint64_t pending, read_word<uint64_t>(mem_fd, t.robust_list + 16));
  t.robust_op_pending = pending != 0;
  while (next != t.robust_list && next != 0) {
    if (t.robust_held.size() == kMaxRobustEntries) return data_error("robust futex list too long or cyclic");
    t.robust_held.push_back(next);
    PW_ASSIGN(next, read_word<uint64_t>(mem_fd, next));
  }
  return ok();
}

}  // namespace

std::string credential_lines(const std::string& status_text) {
  static const char* const keys[] = {"Uid",    "Gid",    "Groups", "CapInh",     "CapPrm",   "CapEff",
                                     "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"};
  std::istringstream in(status_text);
  std::string line, out;
  while (std::getline(in, line)) {
    const std::string key = line.substr(0, line.find(':'));
    for (const char* k : keys)
      if (key == k) out += line + "\n";
  }
  return out;
}

std::string scheduling_summary(const std::string& stat_text, const std::string& status_text) {
  const auto stat = parse_proc_stat(stat_text);
  auto field = [&](size_t n) {
    auto f = stat ? stat->field(n) : std::nullopt;
    return f ? std::string(*f) : std::string("?");
  };
  std::string cpus = "?";
  std::istringstream st(status_text);
  for (std::string line; std::getline(st, line);)
    if (line.starts_with("Cpus_allowed_list:")) cpus = line.substr(line.find_first_not_of(" \t", 18));
  return "nice=" + field(19) + " policy=" + field(41) + " rtprio=" + field(40) + " cpus=" + cpus;
}

Result<ThreadInfo> collect_thread(FrozenProcess& proc, pid_t tid, int mem_fd, const std::vector<Vma>& vmas) {
  ThreadInfo t;
  t.tid = tid;
  const std::string dir = "/proc/" + std::to_string(proc.pid()) + "/task/" + std::to_string(tid) + "/";
  PW_ASSIGN(std::string status_text, read_file(dir + "status"));
  PW_ASSIGN(ProcStatus st, parse_status(status_text));
  t.blocked = st.sig_blocked;
  t.pending = st.sig_pending;
  t.credentials = credential_lines(status_text);
  PW_ASSIGN(std::string stat_text, read_file(dir + "stat"));
  t.scheduling = scheduling_summary(stat_text, status_text);
  PW_ASSIGN(t.placement, read_thread_placement(proc.pid(), tid));
  PW_ASSIGN(t.comm, read_file(dir + "comm"));
  if (!t.comm.empty() && t.comm.back() == '\n') t.comm.pop_back();
  PW_ASSIGN(t.cpu, proc.read_cpu_state(tid));

  __ptrace_rseq_configuration rseq{};
  const long got = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof rseq, &rseq);
  // Without the request (Linux before 5.13) a registration cannot be seen, so it would be lost.
  if (got != static_cast<long>(sizeof rseq))
    t.rseq_unreadable = got < 0 ? std::string("PTRACE_GET_RSEQ_CONFIGURATION: ") + std::strerror(errno)
                                : "PTRACE_GET_RSEQ_CONFIGURATION gave " + std::to_string(got) + " bytes";
  else if (rseq.rseq_abi_pointer != 0) {
    t.rseq_area = rseq.rseq_abi_pointer;
    t.rseq_size = rseq.rseq_abi_size;
    t.rseq_signature = rseq.signature;
  }
  void* head = nullptr;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) != 0) return errno_error("get_robust_list");
  t.robust_list = reinterpret_cast<uint64_t>(head);
  t.robust_list_len = len;
  PW_TRY(read_robust_list(mem_fd, t));

  // Only the thread can report these: run the syscalls inside it.
  PW_ASSIGN(SyscallInjector inj, SyscallInjector::attach(proc, mem_fd, vmas, tid));
  const uint64_t buf = inj.scratch();
  PW_ASSIGN(long rc, inj.call(SYS_sigaltstack, 0, buf));
  if (rc != 0) return make_error(static_cast<int>(-rc), "sigaltstack in thread " + std::to_string(tid));
  PW_ASSIGN(std::string ss, inj.read(buf, sizeof(stack_t)));
  stack_t alt{};
  std::memcpy(&alt, ss.data(), sizeof alt);
  t.altstack_sp = reinterpret_cast<uint64_t>(alt.ss_sp);
  t.altstack_size = alt.ss_size;
  t.altstack_flags = alt.ss_flags;
  PW_ASSIGN(rc, inj.call(SYS_prctl, PR_GET_TID_ADDRESS, buf));
  if (rc != 0) return make_error(static_cast<int>(-rc), "prctl(PR_GET_TID_ADDRESS) in thread " + std::to_string(tid));
  PW_ASSIGN(std::string ctid, inj.read(buf, 8));
  std::memcpy(&t.clear_child_tid, ctid.data(), 8);
  // glibc keeps the tid of each thread in its struct pthread, and that is where
  // clear_child_tid points: a word there that holds the tid is a cache the restore rewrites.
  if (t.clear_child_tid != 0 && t.clear_child_tid % 4 == 0) {
    auto word = read_word<int32_t>(mem_fd, t.clear_child_tid);
    t.tid_cached = word && *word == tid;
  }
  return t;
}

namespace {
// glibc's struct __pthread_mutex_s and __pthread_rwlock_arch_t on x86-64, whole: a held lock's
// tid lies among fields that are zero or small, which data that merely holds a tid-sized number
// (a JIT's tables, in a pid namespace whose tids are small) rarely matches.
struct MutexBytes {
  int32_t lock;
  uint32_t count;
  int32_t owner;
  uint32_t nusers;
  int32_t kind;
  int16_t spins, elision;
  uint64_t list_prev, list_next;  // only robust mutexes are listed, and those are refused
};
static_assert(sizeof(MutexBytes) == 40);
struct RwlockBytes {
  uint32_t readers, writers, wrphase_futex, writers_futex, pad3, pad4;
  int32_t cur_writer, shared;
  int8_t rwelision;
  std::array<uint8_t, 7> pad1;
  uint64_t pad2;
  uint32_t flags, tail;  // tail: the union's padding, zeroed by init and by the initializer
};
static_assert(sizeof(RwlockBytes) == 56);
constexpr size_t kMutexBytes = sizeof(MutexBytes), kRwlockBytes = sizeof(RwlockBytes), kLongest = kRwlockBytes;
constexpr int32_t kRecursive = 1, kErrorCheck = 2, kPrioInherit = 0x20, kPrioProtect = 0x40,
                  kPshared = 0x80, kNoElision = 0x200;
constexpr uint32_t kRwlockWrPhase = 1, kRwlockWrLocked = 2, kFutexUsed = 2;
constexpr uint32_t kCeilingShift = 19;  // a PP mutex's lock word: ceiling << 19 | 1 or 2
constexpr size_t kMaxLookalikes = 64;

enum class Held { no, pi, owner_checked, plain_owner_checked };

// How a held mutex of this shape records its holder (owner: a tid of the process, checked by the
// caller). Only kinds whose owner glibc reads: a normal or adaptive mutex's __owner never is (the
// restored holder releases it as it is), and a robust one held makes the dump refuse.
Held mutex_hold(const MutexBytes& m, size_t threads) {
  if (m.owner <= 0 || m.nusers < 1 || m.nusers > threads) return Held::no;  // holders and condvar waiters
  if (m.list_prev != 0 || m.list_next != 0 || m.spins != 0 || m.elision != 0) return Held::no;
  if ((m.kind & ~(3 | kPrioInherit | kPrioProtect | kPshared | kNoElision)) != 0) return Held::no;
  const int32_t type = m.kind & 3;
  const auto lock = static_cast<uint32_t>(m.lock);
  const bool pi = m.kind & kPrioInherit, pp = m.kind & kPrioProtect;
  // __count: a recursive one's holds; glibc sets it to 1 at every PI or PP acquire, whatever the type.
  const bool count = type == kRecursive ? m.count >= 1 : m.count <= (pi || pp ? 1u : 0u);
  if (pi) {
    // The futex word is the holder's tid, with the waiters bit if contended.
    const bool word = (lock & FUTEX_TID_MASK) == static_cast<uint32_t>(m.owner) && (lock & ~(FUTEX_TID_MASK | FUTEX_WAITERS)) == 0;
    return word && count && !pp ? Held::pi : Held::no;
  }
  if (type != kRecursive && type != kErrorCheck) return Held::no;
  if (pp) {
    const bool word = (lock & 3) != 0 && (lock & 3) != 3 && ((lock >> 2) & ((1u << (kCeilingShift - 2)) - 1)) == 0;
    return word && count ? Held::owner_checked : Held::no;
  }
  return (lock == 1 || lock == 2) && !(m.kind & kNoElision) && count ? Held::plain_owner_checked : Held::no;
}

bool write_held(const RwlockBytes& r) {
  const bool phase = (r.readers & (kRwlockWrPhase | kRwlockWrLocked)) == (kRwlockWrPhase | kRwlockWrLocked);
  const bool futexes = (r.wrphase_futex & ~kFutexUsed) == 1 && (r.writers_futex & ~kFutexUsed) == 1;
  const bool zeros = r.pad3 == 0 && r.pad4 == 0 && r.pad1 == std::array<uint8_t, 7>{} && r.pad2 == 0 && r.tail == 0;
  return phase && futexes && zeros && r.cur_writer > 0 && (r.shared == 0 || r.shared == 1) && r.flags <= 2;
}
}  // namespace

TidWordFinder::TidWordFinder(const std::vector<ThreadInfo>& threads, const std::vector<Vma>& vmas) : threads_(threads) {
  auto is_glibc_data = [](const Vma& v) {
    const std::string base = v.name.substr(v.name.rfind('/') + 1);
    return (v.prot & PROT_WRITE) && !v.shared && (base.starts_with("ld-linux") || base.starts_with("libc.so"));
  };
  for (size_t i = 0; i < vmas.size(); ++i) {
    const bool bss = i > 0 && is_glibc_data(vmas[i - 1]) && vmas[i].name.empty() && vmas[i].start == vmas[i - 1].end &&
                     (vmas[i].prot & PROT_WRITE);
    if (is_glibc_data(vmas[i]) || bss) glibc_data_.emplace_back(vmas[i].start, vmas[i].end);
  }
  uint32_t lo = ~0u, hi = 0;
  for (const auto& t : threads) lo = std::min(lo, static_cast<uint32_t>(t.tid)), hi = std::max(hi, static_cast<uint32_t>(t.tid));
  min_tid_ = lo;
  tid_span_ = threads.empty() ? 0 : hi - lo;
  if (threads.empty()) min_tid_ = 1, tid_span_ = 0;  // tid 1 is never a thread of an app dumped
}

bool TidWordFinder::in_glibc_data(uint64_t at) const {
  return std::any_of(glibc_data_.begin(), glibc_data_.end(), [&](const auto& r) { return r.first <= at && at < r.second; });
}

// The thread whose tid this is; a word inside the thread's own struct pthread (its tid cache,
// rewritten on its own) is not a lock.
int TidWordFinder::thread_of(int32_t tid, uint64_t at) const {
  for (size_t i = 0; i < threads_.size(); ++i)
    if (threads_[i].tid == tid) return at + 8 == threads_[i].clear_child_tid ? -1 : static_cast<int>(i);
  return -1;
}

void TidWordFinder::scan(uint64_t addr, const char* data, size_t len, uint64_t zeros_until) {
  if (len == 0) return;
  if (!tail_.empty() && tail_end_ == addr) {
    std::string joined = tail_;
    joined.append(data, std::min(len, kLongest));
    // Only the locks that cross into the new bytes: the others were seen already.
    scan_window(addr - tail_.size(), joined.data(), tail_.size(), joined.size(), tail_.size());
  } else {
    scan_tail_against_zeros();
  }
  scan_window(addr, data, len, len, 0);
  const size_t keep = std::min(len, kLongest);
  tail_.assign(data + len - keep, keep);
  tail_end_ = addr + len;
  zeros_until_ = zeros_until;
}

void TidWordFinder::finish() {
  scan_tail_against_zeros();
  tail_.clear();
}

// Stored pages are separated by at least a page, longer than any lock: zeros are all that follow.
void TidWordFinder::scan_tail_against_zeros() {
  if (tail_.empty() || zeros_until_ <= tail_end_) return;
  std::string joined = tail_;
  joined.append(static_cast<size_t>(std::min<uint64_t>(kLongest, zeros_until_ - tail_end_)), '\0');
  scan_window(tail_end_ - tail_.size(), joined.data(), tail_.size(), joined.size(), tail_.size());
}

// Looks for locks at 8-aligned addresses that start in the first `starts` bytes of data (which is
// at base), lie whole within its `len` bytes and end past `min_end`.
void TidWordFinder::scan_window(uint64_t base, const char* data, size_t starts, size_t len, size_t min_end) {
  for (size_t off = (8 - base % 8) % 8; off < starts && off + kMutexBytes <= len; off += 8) {
    const uint64_t at = base + off;
    // Both layouts hold a tid of this process at +8 or +24: almost all memory fails this test.
    uint32_t owner_word, writer_word = 0;
    std::memcpy(&owner_word, data + off + 8, sizeof owner_word);
    const bool may_rwlock = off + kRwlockBytes <= len;
    if (may_rwlock) std::memcpy(&writer_word, data + off + 24, sizeof writer_word);
    if (owner_word - min_tid_ > tid_span_ && writer_word - min_tid_ > tid_span_) continue;
    MutexBytes m;
    std::memcpy(&m, data + off, sizeof m);
    const Held held = mutex_hold(m, threads_.size());
    const int holder = held != Held::no && off + kMutexBytes > min_end ? thread_of(m.owner, at) : -1;
    // A plain recursive or error-checking one's shape is still weak outside ld.so's and libc's
    // own data (the JVM keeps per-thread records of it, and rewriting those crashed it): it is
    // recorded for the dump to look at again, not rewritten.
    if (holder >= 0 && held == Held::plain_owner_checked && !in_glibc_data(at)) {
      if (lookalikes_.size() < kMaxLookalikes) {
        HeldLookalike h{at, {}};
        std::memcpy(h.bytes.data(), data + off, h.bytes.size());
        lookalikes_.push_back(h);
      }
    } else if (holder >= 0) {
      words_.push_back({at + 8, 0xffffffffu, static_cast<uint32_t>(holder)});
      if (held == Held::pi) words_.push_back({at, FUTEX_TID_MASK, static_cast<uint32_t>(holder)});
      continue;
    }
    if (!may_rwlock || writer_word - min_tid_ > tid_span_) continue;
    RwlockBytes r;
    std::memcpy(&r, data + off, sizeof r);
    const int writer = write_held(r) && off + kRwlockBytes > min_end ? thread_of(r.cur_writer, at) : -1;
    if (writer >= 0) words_.push_back({at + 24, 0xffffffffu, static_cast<uint32_t>(writer)});
  }
}

}  // namespace prewarm
