// Collecting each thread's state while the process is frozen.
#include "snapshot/threads.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "snapshot/inject_syscall.h"
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

Result<ThreadInfo> collect_thread(FrozenProcess& proc, pid_t tid, int mem_fd, const std::vector<Vma>& vmas) {
  ThreadInfo t;
  t.tid = tid;
  const std::string dir = "/proc/" + std::to_string(proc.pid()) + "/task/" + std::to_string(tid) + "/";
  PW_ASSIGN(std::string status_text, read_file(dir + "status"));
  PW_ASSIGN(ProcStatus st, parse_status(status_text));
  t.blocked = st.sig_blocked;
  t.pending = st.sig_pending;
  t.credentials = credential_lines(status_text);
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

Result<void> find_owned_locks(int mem_fd, const std::vector<Vma>& vmas, std::vector<ThreadInfo>& threads) {
  auto is_glibc_data = [](const Vma& v) {
    const std::string base = v.name.substr(v.name.rfind('/') + 1);
    return (v.prot & PROT_WRITE) && !v.shared && (base.starts_with("ld-linux") || base.starts_with("libc.so"));
  };
  for (size_t i = 0; i < vmas.size(); ++i) {
    const bool data = is_glibc_data(vmas[i]);
    const bool bss = !data && i > 0 && is_glibc_data(vmas[i - 1]) && vmas[i].name.empty() &&
                     vmas[i].start == vmas[i - 1].end && (vmas[i].prot & PROT_WRITE);
    if ((!data && !bss) || vmas[i].size() > (64u << 20)) continue;
    std::string bytes(vmas[i].size(), '\0');
    PW_TRY(pread_all(mem_fd, bytes.data(), bytes.size(), static_cast<off_t>(vmas[i].start)));
    // struct __pthread_mutex_s: int __lock, unsigned __count, int __owner, unsigned __nusers,
    // int __kind; 8-byte aligned. A held one has __nusers >= 1 and a kind glibc can make.
    constexpr int32_t kKindBits = 0x3 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200;
    for (size_t off = 0; off + 20 <= bytes.size(); off += 8) {
      int32_t m[5];
      std::memcpy(m, bytes.data() + off, sizeof m);
      const int32_t lock = m[0], owner = m[2], nusers = m[3], kind = m[4];
      if (lock == 0 || owner <= 0 || nusers < 1 || nusers > 0xffff || (kind & ~kKindBits) != 0) continue;
      for (auto& t : threads) {
        const uint64_t at = vmas[i].start + off;
        // The tid glibc caches in the thread's own struct pthread is not a lock.
        if (owner == t.tid && at + 8 != t.clear_child_tid) t.owned_locks.push_back(at);
      }
    }
  }
  return ok();
}

}  // namespace prewarm
