// The lazy restore's page server: a thread of the restored app, started by the blob, that fills
// the registered mappings from pages.img through the userfaultfd (faulting runs first, the rest
// in the background), then closes the uffd, unmaps its region and exits. Included by
// restorer.cpp only; freestanding like it. The invariant: every page gets the snapshot's
// verified bytes (or zeros where the snapshot had none, or where the app dropped it since), or
// the whole app is killed. The server dies only with its thread group (it blocks every signal,
// any error is exit_group), so nothing can unregister the ranges while pages are missing.
#pragma once

#include <linux/errno.h>
#include <linux/ioctl.h>
#include <linux/mman.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/time_types.h>
#include <linux/userfaultfd.h>

#define XXH_INLINE_ALL
#define XXH_NO_STREAM
#define XXH_FORCE_MEMORY_ACCESS 1  // packed loads: no memcpy calls (the blob has no libc)
#include <xxhash.h>

#include "plan_abi.h"
#include "syscalls.h"

namespace pw_lazy {

constexpr uint64_t kPage = 4096;
// A thread of the app, but with a private fd table (no CLONE_FILES): an app that closes every fd
// cannot drop the uffd. No CLONE_SETTLS: the server uses no TLS.
constexpr long kServerCloneFlags = CLONE_VM | CLONE_FS | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;

template <typename T>
T* in_region(PwLazyHeader* h, uint64_t off) {
  return reinterpret_cast<T*>(reinterpret_cast<uint64_t>(h) + off);
}

void append(char* msg, unsigned long& n, unsigned long cap, const char* s) {
  for (unsigned long i = 0; s[i] && n < cap; ++i) msg[n++] = s[i];
}
void append_num(char* msg, unsigned long& n, unsigned long cap, uint64_t v) {
  char d[20];
  int k = 0;
  do d[k++] = static_cast<char>('0' + v % 10), v /= 10; while (v && k < 20);
  while (k > 0 && n < cap) msg[n++] = d[--k];
}
void append_hex(char* msg, unsigned long& n, unsigned long cap, uint64_t v) {
  append(msg, n, cap, "0x");
  char d[16];
  int k = 0;
  do d[k++] = "0123456789abcdef"[v & 15], v >>= 4; while (v && k < 16);
  while (k > 0 && n < cap) msg[n++] = d[--k];
}

// "prewarm lazy restore: <what> (errno N) at 0x...: the app is killed ..." on stderr, then the
// whole thread group ends: the app never runs on with a page it should have and does not.
// With a readiness socket, prewarmd is told first (PREWARM_LAZY_FAILED=), so that it drops the
// image and the next launch is cold; the kill waits a moment for it to read that.
[[noreturn]] void kill_app(int notify_fd, const char* what, long err, uint64_t addr) {
  if (notify_fd >= 0) {
    char note[160];
    unsigned long k = 0;
    append(note, k, sizeof note - 1, "PREWARM_LAZY_FAILED=");
    append(note, k, sizeof note - 1, what);
    note[k++] = '\n';
    (void)pw_sys::write(notify_fd, note, k);
    const __kernel_timespec pause{0, 100000000};
    (void)pw_sys::nanosleep(&pause);
  }
  char msg[256];
  unsigned long n = 0;
  append(msg, n, sizeof msg, "prewarm lazy restore: ");
  append(msg, n, sizeof msg, what);
  if (err) {
    append(msg, n, sizeof msg, " (errno ");
    append_num(msg, n, sizeof msg, static_cast<uint64_t>(err < 0 ? -err : err));
    append(msg, n, sizeof msg, ")");
  }
  append(msg, n, sizeof msg, " at ");
  append_hex(msg, n, sizeof msg, addr);
  append(msg, n, sizeof msg, ": the app is killed rather than run on with memory it does not have\n");
  pw_sys::write(2, msg, n);
  pw_sys::exit_group(PW_RESTORER_EXIT_CODE);
}

struct Server {
  PwLazyHeader* h;
  PwLazyRun* runs;
  PwLazySeg* segs;
  uint64_t* bits;
  char* buf;

  [[noreturn]] void fail(const char* what, long err, uint64_t addr) const { kill_app(h->notify_fd, what, err, addr); }
  bool pending_bit(uint64_t b) const { return (bits[b / 64] >> (b % 64)) & 1; }
  // Clears the bits of `pages` pages of `seg` from `page` on; counts what was still pending.
  void clear(const PwLazySeg& s, uint64_t page, uint64_t pages) {
    PwLazyRun& r = runs[s.run];
    uint64_t b = r.first_bit + s.run_off / kPage + page;
    for (uint64_t i = 0; i < pages; ++i, ++b) {
      if (!pending_bit(b)) continue;
      bits[b / 64] &= ~(1ull << (b % 64));
      --r.pending;
      --h->pending;
    }
  }
  bool pending_at(const PwLazySeg& s, uint64_t page) const {
    return pending_bit(runs[s.run].first_bit + s.run_off / kPage + page);
  }

  // A segment ends at `a` if one spans it (mremap and munmap act on page ranges, not on ours).
  void split_at(uint64_t a) {
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      PwLazySeg& s = segs[i];
      if (!(s.addr < a && a < s.addr + s.len)) continue;
      if (h->segs_count == h->segs_cap) fail("too many mremap/munmap splits of lazily restored memory", 0, a);
      PwLazySeg& t = segs[h->segs_count++];
      t = s;
      t.addr = a;
      t.len = s.addr + s.len - a;
      if (s.kind == PW_SEG_PIECE) t.run_off = s.run_off + (a - s.addr);
      s.len = a - s.addr;
    }
  }

  // munmap: the pages are gone, nothing is owed there any more.
  void on_unmap(uint64_t start, uint64_t end) {
    split_at(start);
    split_at(end);
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      PwLazySeg& s = segs[i];
      if (s.len == 0 || s.addr < start || s.addr + s.len > end) continue;
      if (s.kind == PW_SEG_PIECE) clear(s, 0, s.len / kPage);
      s.len = 0;
    }
  }
  // MADV_DONTNEED/MADV_REMOVE: from now on those pages read zeros, never the snapshot's bytes.
  void on_remove(uint64_t start, uint64_t end) {
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      const PwLazySeg& s = segs[i];
      if (s.kind != PW_SEG_PIECE || s.len == 0) continue;
      const uint64_t lo = start > s.addr ? start : s.addr, hi = end < s.addr + s.len ? end : s.addr + s.len;
      if (lo < hi) clear(s, (lo - s.addr) / kPage, (hi - lo) / kPage);
    }
  }
  // mremap: what was owed at [from, from+len) is now owed at [to, to+len).
  void on_remap(uint64_t from, uint64_t to, uint64_t len) {
    split_at(from);
    split_at(from + len);
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      PwLazySeg& s = segs[i];
      if (s.len != 0 && s.addr >= from && s.addr + s.len <= from + len) s.addr = s.addr - from + to;
    }
  }

  // Reads and verifies run `ri`, then copies its still-pending pages wherever its pieces are now.
  // false: the mm is changing (an event is queued); read the events, then try again.
  bool fill_run(uint32_t ri, bool on_fault) {
    PwLazyRun& r = runs[ri];
    if (r.pending == 0) return true;
    // The working set: runs the app needed before the server got to them (4 bytes: one write).
    if (on_fault && h->ws_fd >= 0) (void)pw_sys::write(h->ws_fd, &r.image_index, sizeof r.image_index);
    for (uint64_t got = 0; got < r.len;) {
      long n = pw_sys::pread(h->pages_fd, buf + got, r.len - got, r.file_offset + got);
      if (n == -EINTR) continue;
      if (n < 0) fail("reading pages.img failed", n, r.addr);
      if (n == 0) fail("pages.img ended early (truncated since the restore began)", 0, r.addr);
      got += static_cast<uint64_t>(n);
    }
    if (XXH3_64bits(buf, r.len) != r.xxh3) fail("pages.img is corrupted: checksum mismatch in the run", 0, r.addr);
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      PwLazySeg& s = segs[i];
      if (s.kind != PW_SEG_PIECE || s.run != ri || s.len == 0) continue;
      const uint64_t pages = s.len / kPage;
      // A copy must lie within one VMA (else ENOENT): after an mprotect or a partial munmap split
      // the piece, its pages go one at a time, and ENOENT for one page means it is not ours.
      uint64_t most = pages;
      for (uint64_t p = 0; p < pages;) {
        if (!pending_at(s, p)) {
          ++p;
          continue;
        }
        uint64_t q = p;
        while (q < pages && q - p < most && pending_at(s, q)) ++q;
        uffdio_copy c{};
        c.dst = s.addr + p * kPage;
        c.src = reinterpret_cast<uint64_t>(buf + s.run_off + p * kPage);
        c.len = (q - p) * kPage;
        long rc = pw_sys::ioctl(h->uffd, UFFDIO_COPY, &c);
        const uint64_t done = c.copy > 0 ? static_cast<uint64_t>(c.copy) / kPage : 0;
        clear(s, p, done);
        (on_fault ? h->fault_pages : h->background_pages) += done;
        p += done;
        if (rc == 0) continue;
        if (rc == -EAGAIN) return false;
        if (rc == -EEXIST) {
          clear(s, p, 1);  // present already: the app's own write got there first
          ++p;
        } else if (rc == -ENOENT && q - p > 1) {
          most = 1;
        } else if (rc == -ENOENT || rc == -ESRCH) {
          clear(s, p, 1);  // no mapping of ours there any more (or no mm: the app is exiting)
          ++p;
        } else {
          fail("UFFDIO_COPY failed", rc, c.dst);
        }
      }
    }
    return true;
  }

  // A fault at `addr`: its run if a page is owed there, else a zero page. false: try again later.
  bool serve_fault(uint64_t addr) {
    const uint64_t page = addr & ~(kPage - 1);
    ++h->faults;
    for (uint32_t i = 0; i < h->segs_count; ++i) {
      const PwLazySeg& s = segs[i];
      if (s.kind != PW_SEG_PIECE || s.len == 0 || page < s.addr || page >= s.addr + s.len) continue;
      if (!pending_at(s, (page - s.addr) / kPage)) break;
      if (!fill_run(s.run, true)) return --h->faults, false;
      uffdio_range w{page, kPage};
      (void)pw_sys::ioctl(h->uffd, UFFDIO_WAKE, &w);  // an EEXIST page is not woken by the copy
      return true;
    }
    uffdio_zeropage z{};
    z.range = {page, kPage};
    long rc = pw_sys::ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
    if (rc == -EAGAIN) return --h->faults, false;
    if (rc < 0 && rc != -EEXIST && rc != -ENOENT && rc != -ESRCH) fail("UFFDIO_ZEROPAGE failed", rc, page);
    uffdio_range w{page, kPage};
    (void)pw_sys::ioctl(h->uffd, UFFDIO_WAKE, &w);
    ++h->zero_faults;
    return true;
  }
};

void trace_line(const PwLazyHeader* h, uint64_t ns) {
  char msg[256];
  unsigned long n = 0;
  append(msg, n, sizeof msg, "prewarm lazy: every page in after ");
  append_num(msg, n, sizeof msg, ns / 1000000);
  append(msg, n, sizeof msg, ".");
  append_num(msg, n, sizeof msg, ns / 100000 % 10);
  append(msg, n, sizeof msg, " ms: ");
  append_num(msg, n, sizeof msg, h->faults);
  append(msg, n, sizeof msg, " faults (");
  append_num(msg, n, sizeof msg, h->zero_faults);
  append(msg, n, sizeof msg, " zero), ");
  append_num(msg, n, sizeof msg, h->fault_pages);
  append(msg, n, sizeof msg, " pages filled on a fault, ");
  append_num(msg, n, sizeof msg, h->background_pages);
  append(msg, n, sizeof msg, " in the background\n");
  pw_sys::write(2, msg, n);
}

uint64_t now_ns() {
  __kernel_timespec ts{};
  (void)pw_sys::clock_gettime(pw_sys::kClockMonotonic, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Closes every fd of the server's own table but the ones it needs (it got a copy of the
// launcher's table at the clone: app files, the readiness socket, stdio).
void keep_only(int a, int b, int c, int d, int e) {
  int k[5] = {a, b, c, d < 0 ? c : d, e < 0 ? c : e};
  for (int i = 0; i < 5; ++i)
    for (int j = i + 1; j < 5; ++j)
      if (k[j] < k[i]) {
        int t = k[i];
        k[i] = k[j];
        k[j] = t;
      }
  long lo = 0;
  for (int i = 0; i < 5; ++i) {
    if (k[i] > lo) (void)pw_sys::close_range(static_cast<unsigned>(lo), static_cast<unsigned>(k[i] - 1));
    lo = k[i] + 1;
  }
  (void)pw_sys::close_range(static_cast<unsigned>(lo), ~0u);
}

// The server's last steps: nothing is owed, so the uffd can go (closing it unregisters every
// range; a later fault there gets what the kernel gives an unregistered page, which is now
// right), then the region with this stack, then the thread. In one asm block: after the munmap
// there is no stack.
[[noreturn]] void leave(uint64_t start, uint64_t len) {
  asm volatile(
      "mov %0, %%rdi\n\t"
      "mov %1, %%rsi\n\t"
      "mov %[munmap], %%eax\n\t"  // munmap(region); its result cannot be acted on
      "syscall\n\t"
      "xor %%edi, %%edi\n\t"
      "mov %[exit], %%eax\n\t"  // exit(0): this thread only
      "syscall\n\t"
      "hlt\n\t"
      :
      : "r"(start), "r"(len), [munmap] "i"(__NR_munmap), [exit] "i"(__NR_exit)
      : "rax", "rdi", "rsi", "rcx", "r11", "memory");
  __builtin_unreachable();
}

extern "C" [[noreturn]] __attribute__((used)) void lazy_server_main(PwLazyHeader* h) {
  const uint64_t t0 = now_ns();
  keep_only(h->uffd, h->pages_fd, 2, h->notify_fd, h->ws_fd);
  (void)pw_sys::prctl(PR_SET_NAME, reinterpret_cast<long>("prewarm-lazy"), 0, 0);
  Server s{h, in_region<PwLazyRun>(h, h->runs_off), in_region<PwLazySeg>(h, h->segs_off),
           in_region<uint64_t>(h, h->bitmap_off), in_region<char>(h, h->buf_off)};
  constexpr int kDeferCap = 64;
  uint64_t deferred[kDeferCap];
  int ndeferred = 0;
  uint32_t cursor = 0;  // background order: pages.img order
  uffd_msg msgs[16];
  for (;;) {
    // 1. Everything the kernel has queued: faults and mm events.
    bool more = ndeferred < kDeferCap;
    while (more) {
      long n = pw_sys::read(h->uffd, msgs, sizeof msgs);
      if (n == -EAGAIN) break;
      if (n == -EINTR) continue;
      if (n < 0 || n % sizeof(uffd_msg)) s.fail("reading the userfaultfd failed", n, 0);
      for (long i = 0; i < n / static_cast<long>(sizeof(uffd_msg)); ++i) {
        const uffd_msg& m = msgs[i];
        if (m.event == UFFD_EVENT_PAGEFAULT) {
          if (!s.serve_fault(m.arg.pagefault.address)) deferred[ndeferred++] = m.arg.pagefault.address;
        } else if (m.event == UFFD_EVENT_REMOVE) {
          s.on_remove(m.arg.remove.start, m.arg.remove.end);
        } else if (m.event == UFFD_EVENT_UNMAP) {
          s.on_unmap(m.arg.remove.start, m.arg.remove.end);
        } else if (m.event == UFFD_EVENT_REMAP) {
          s.on_remap(m.arg.remap.from, m.arg.remap.to, m.arg.remap.len);
        } else {
          s.fail("unexpected userfaultfd event", m.event, 0);
        }
      }
      more = ndeferred + 16 <= kDeferCap;
    }
    // 2. Faults that met a changing mm, now that its events are read.
    int kept = 0;
    for (int i = 0; i < ndeferred; ++i)
      if (!s.serve_fault(deferred[i])) deferred[kept++] = deferred[i];
    ndeferred = kept;
    if (h->pending == 0 && ndeferred == 0) break;
    // 3. One run in the background. Nothing waits in poll: while pages are owed there is work.
    while (cursor < h->runs_count && s.runs[cursor].pending == 0) ++cursor;
    if (cursor < h->runs_count) {
      (void)s.fill_run(cursor, false);
    } else if (ndeferred != 0 || h->pending != 0) {
      pollfd p{h->uffd, POLLIN, 0};
      (void)pw_sys::poll(&p, 1, 1);
    }
  }
  // Everything is in: a fork's child may have these mappings again (unless the app said not).
  for (uint32_t i = 0; i < h->segs_count; ++i) {
    const PwLazySeg& g = s.segs[i];
    if (g.kind == PW_SEG_REGION && g.len && !g.keep_dontfork) (void)pw_sys::madvise(g.addr, g.len, MADV_DOFORK);
  }
  (void)pw_sys::close(h->uffd);
  (void)pw_sys::close(h->pages_fd);
  if (h->notify_fd >= 0) (void)pw_sys::close(h->notify_fd);
  if (h->ws_fd >= 0) (void)pw_sys::close(h->ws_fd);
  if (h->trace) trace_line(h, now_ns() - t0);
  (void)pw_sys::close(2);
  leave(reinterpret_cast<uint64_t>(h), h->region_len);
}

// Called by the blob's main thread once every mapping is in place, before it touches app
// memory: registers the lazy ranges and starts the server on its own stack.
void start(PwPlan* plan) {
  auto* h = reinterpret_cast<PwLazyHeader*>(plan->lazy_region);
  if (h->magic != PW_LAZY_MAGIC) kill_app(-1, "lazy region check failed", -EINVAL, plan->lazy_region);
  const auto* ranges = reinterpret_cast<const PwRange*>(reinterpret_cast<uint64_t>(plan) + plan->lazy_ranges_off);
  for (uint32_t i = 0; i < plan->lazy_ranges_count; ++i) {
    long rc = pw_sys::madvise(ranges[i].start, ranges[i].len, MADV_DONTFORK);
    if (rc < 0) kill_app(-1, "MADV_DONTFORK of a lazy mapping failed", rc, ranges[i].start);
    uffdio_register reg{};
    reg.range = {ranges[i].start, ranges[i].len};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    rc = pw_sys::ioctl(plan->lazy_uffd, UFFDIO_REGISTER, &reg);
    if (rc < 0) kill_app(-1, "UFFDIO_REGISTER of a lazy mapping failed", rc, ranges[i].start);
    const uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
    if ((reg.ioctls & need) != need) kill_app(-1, "the userfaultfd cannot fill a lazy mapping", 0, ranges[i].start);
  }
  uint64_t* sp = reinterpret_cast<uint64_t*>(h->stack_top) - 2;
  sp[0] = reinterpret_cast<uint64_t>(h);
  long ret;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "mov 0(%%rsp), %%rdi\n\t"  // the server: its argument is on its new stack
      "call lazy_server_main\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(static_cast<long>(__NR_clone)), "D"(kServerCloneFlags), "S"(sp), "d"(0L)
      : "rcx", "r11", "r10", "r8", "memory");
  if (ret < 0) kill_app(-1, "starting the page server failed", ret, 0);
}

}  // namespace pw_lazy
