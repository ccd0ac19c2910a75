// The one argument block handed from the launcher to the restorer blob. Plain data only: the blob
// is freestanding and reads it in place. Arrays are (offset from the plan's start, count).
//
// Address space during the handoff (the "hole" is free in both the launcher's layout and the
// snapshot's, chosen by the launcher):
//
//   launcher mappings ......... unmapped by the blob (PwPlan.unmap ranges)
//   [vvar][vvar_vclock][vdso] . moved to the hop slot, then to the snapshot's addresses
//   hole: +------------------+
//         | blob code (r-x)  |  stays mapped after restore (the one documented leftover page)
//         | plan + stacks(rw)|  -+ unmapped by the blob's last syscalls (self_start/len): the
//         |                  |   | main thread's stack and one small stack per other thread
//         | vdso hop slot    |   | staged mappings (anon/CoW contents, read and verified by the
//         | staged mappings  |  -+ launcher) were mremapped out, the rest is reservation
//         +------------------+
//   snapshot mappings ......... file mappings mmapped from fds the launcher opened; staged
//                               ones moved in; anonymous mappings without data mapped fresh
#pragma once

#ifdef __cplusplus
#include <asm-generic/mman-common.h>  // MADV_*: the kernel's own, as the blob has no libc
#include <cstddef>
#include <cstdint>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#define PW_PLAN_MAGIC 0x6e6c706d72777270ull /* "prwrmpln" */
#define PW_PLAN_VERSION 6u
#define PW_RESTORER_EXIT_CODE 125 /* the blob failed past the point of no return */

enum PwOpKind : uint32_t {
  PW_OP_MAP_FILE = 1,     // mmap(start, len, prot, flags | MAP_FIXED, fd, file_offset)
  PW_OP_MAP_ANON = 2,     // mmap(start, len, prot, flags | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
  PW_OP_MOVE_STAGED = 3,  // mremap(staged, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, start)
};

struct PwVmaOp {
  uint64_t start;
  uint64_t len;
  uint64_t staged;
  uint64_t file_offset;
  int32_t fd;
  uint32_t kind;
  uint32_t prot;
  uint32_t flags;
  uint32_t advice;  // PW_ADVISE_* bits, applied after the mapping is in place
  uint32_t pad;
};

// madvise state carried from the snapshot (VmFlags hg, nh, dc, wf, dd).
#define PW_ADVISE_HUGEPAGE 0x1u
#define PW_ADVISE_NOHUGEPAGE 0x2u
#define PW_ADVISE_DONTFORK 0x4u
#define PW_ADVISE_WIPEONFORK 0x8u
#define PW_ADVISE_DONTDUMP 0x10u
#define PW_ADVISE_MLOCK 0x20u          /* mlock2(start, len, 0): VmFlags lo */
#define PW_ADVISE_MLOCK_ONFAULT 0x40u  /* mlock2(start, len, MLOCK_ONFAULT): lo lf */
#define PW_ADVISE_SEQUENTIAL 0x80u
#define PW_ADVISE_RANDOM 0x100u
#define PW_ADVISE_MERGEABLE 0x200u     /* KSM */

#ifdef __cplusplus
// Each madvise(2) bit and its advice, for the blob and the in-process staging alike (the mlock
// bits go to mlock2 instead).
struct PwAdviceBit {
  uint32_t bit;
  int advice;
};
inline constexpr PwAdviceBit kPwAdviceBits[] = {
    {PW_ADVISE_HUGEPAGE, MADV_HUGEPAGE},   {PW_ADVISE_NOHUGEPAGE, MADV_NOHUGEPAGE},
    {PW_ADVISE_DONTFORK, MADV_DONTFORK},   {PW_ADVISE_WIPEONFORK, MADV_WIPEONFORK},
    {PW_ADVISE_DONTDUMP, MADV_DONTDUMP},   {PW_ADVISE_SEQUENTIAL, MADV_SEQUENTIAL},
    {PW_ADVISE_RANDOM, MADV_RANDOM},       {PW_ADVISE_MERGEABLE, MADV_MERGEABLE}};
#endif

struct PwRange {
  uint64_t start;
  uint64_t len;
};

struct PwFdMove {
  int32_t from;
  int32_t to;
  uint32_t cloexec;
  uint32_t pad;
};

struct PwMove {
  uint64_t from;
  uint64_t to;
  uint64_t len;
};

// The kernel's struct sigaction for rt_sigaction(2) on x86-64.
struct PwKSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

// struct prctl_mm_map (include/uapi/linux/prctl.h).
struct PwMmMap {
  uint64_t start_code, end_code, start_data, end_data;
  uint64_t start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv;  // pointer
  uint32_t auxv_size;
  uint32_t exe_fd;
};

// epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data}) once every fd is at its number (an
// epoll registration is keyed by the target's fd number, so it cannot be made earlier).
struct PwEpollAdd {
  int32_t epfd;
  int32_t fd;
  uint32_t events;
  uint32_t pad;
  uint64_t data;
};

// fcntl(fd, F_SETLK, {write ? F_WRLCK : F_RDLCK, SEEK_SET, start, len}) once the launcher's fds
// are closed: a POSIX lock is the process's, and any close of an fd on its file drops it.
struct PwPosixLock {
  int32_t fd;
  int32_t write;
  int64_t start;
  int64_t len;  // 0: to the end of the file
};

#define PW_NSIG 64

/* ---- threads ---- */
// One thread other than the main one. The blob clones it onto its own stack (stack_top, inside
// the plan region); it sets up its kernel state, counts itself in PwPlan.threads_ready, switches
// to its frame on the app's stack and waits at the gate until the main thread has dropped the
// plan region, then returns into the app through rt_sigreturn.
struct PwThread {
  uint64_t frame_off;   // its rt_sigframe + fpstate, copied by the main thread to frame_dest
  uint64_t frame_len;
  uint64_t frame_dest;
  uint64_t final_sp;
  uint64_t stack_top;   // the blob's stack for this thread (16-byte aligned)
  uint64_t fs_base;
  uint64_t gs_base;
  uint64_t rseq_area;
  uint32_t rseq_size;   // 0: none
  uint32_t rseq_signature;
  uint64_t robust_list;
  uint64_t robust_list_len;
  uint64_t clear_child_tid;
  uint32_t tid_cached;  // write the new tid at clear_child_tid
  uint32_t pad;
  char comm[16];        // PR_SET_NAME; NUL-terminated
};

// A word of app memory that held thread `thread`'s tid (0: the main thread, i + 1: PwThread i):
// that thread writes its new tid into the bits of mask before reaching the gate.
struct PwTidWord {
  uint64_t addr;
  uint32_t mask;
  uint32_t thread;
};
/* ---- end threads ---- */

struct PwPlan {
  uint64_t magic;
  uint32_t version;
  uint32_t size;  // bytes of the whole plan block including its arrays

  uint64_t self_start;  // plan + stack region, unmapped at the very end
  uint64_t self_len;

  uint64_t moves_off;   // PwMove[]: vDSO pair to the hop slot, then to the snapshot's addresses
  uint32_t moves_count;
  uint32_t unmap_count;
  uint64_t unmap_off;   // PwRange[]: everything of the launcher outside the hole
  uint64_t ops_off;     // PwVmaOp[]
  uint32_t ops_count;
  uint32_t fd_moves_count;
  uint64_t fd_moves_off;   // PwFdMove[]: dup3 the app's files into place
  uint64_t fd_close_off;   // PwRange[] of fd numbers: closed after the moves
  uint32_t fd_close_count;
  uint32_t rseq_size;      // 0: the app had no rseq registration
  uint64_t rseq_area;
  uint32_t rseq_signature;
  uint32_t pad0;
  uint64_t robust_list;
  uint64_t robust_list_len;
  uint64_t clear_child_tid;

  struct PwMmMap mm;
  uint64_t auxv_off;    // the auxv bytes (mm.auxv points here)

  // rt_sigaction for signal n+1 when bit n of sigaction_mask is set.
  uint64_t sigaction_mask;
  struct PwKSigaction sigactions[PW_NSIG];

  uint64_t fs_base;
  uint64_t gs_base;

  uint64_t frame_off;   // the rt_sigframe + fpstate bytes, built by the launcher for frame_dest
  uint64_t frame_len;
  uint64_t frame_dest;  // where the blob copies it (on the app's stack)
  uint64_t final_sp;    // frame_dest + 8: rt_sigreturn reads its frame at rsp - 8

  // A datagram socket, already connected, that gets notify_len bytes at notify_off (sd_notify's
  // "READY=1") once the app is in place, then is closed; -1 for none. Failure to send is not
  // fatal: the app runs either way.
  int32_t notify_fd;
  uint32_t notify_len;
  uint64_t notify_off;
  // Offsets into that message of two PW_STAMP_DIGITS-wide decimal slots: the blob writes its
  // CLOCK_MONOTONIC ns once the mappings are in place and right before it resumes the app.
  uint32_t notify_mapped_off;
  uint32_t notify_resumed_off;

  uint64_t epoll_off;   // PwEpollAdd[]: after the fd moves, before the closes
  uint32_t epoll_count;
  uint32_t pad_epoll;

  /* ---- threads ---- */
  uint64_t threads_off;      // PwThread[]
  uint32_t threads_count;
  uint32_t main_tid_cached;  // write the main thread's new tid at clear_child_tid
  char main_comm[16];        // PR_SET_NAME for the main thread; "" leaves it
  uint32_t threads_ready;    // futex: threads set up and at the gate (written by the threads)
  uint32_t threads_gate;     // futex the threads wait on; never written, woken after the unmap
  uint64_t tid_words_off;    // PwTidWord[]
  uint32_t tid_words_count;
  uint32_t pad_tid_words;
  /* ---- end threads ---- */

  /* ---- lazy ---- */
  int32_t lazy_uffd;          // -1: eager restore (the other lazy fields are unused)
  uint32_t lazy_ranges_count;
  uint64_t lazy_ranges_off;   // PwRange[]: mapped empty, MADV_DONTFORK'ed and registered by the blob
  uint64_t lazy_region;       // the server's PwLazyHeader (outside self_start/len: it outlives the plan)
  /* ---- end lazy ---- */

  uint64_t posix_locks_off;   // PwPosixLock[]: after the fd closes
  uint32_t posix_locks_count;
  uint32_t pad_posix_locks;
};

#define PW_STAMP_DIGITS 20

/* ---- lazy ---- */
// Lazy restore: private anonymous mappings with stored pages are mapped empty and registered
// with a userfaultfd (missing mode); a server thread of the app, cloned by the blob without
// CLONE_FILES (the uffd and pages.img live only in its fd table), fills faulting runs first and
// every other run in the background, each verified (XXH3) before any of its pages goes in, then
// closes the uffd, unmaps its region and exits. Its region, laid out by the launcher:
//
//   PwLazyHeader | PwLazyRun[runs_count] | PwLazySeg[segs_cap] | pending bitmap | buffer | stack
//
// A segment is a piece of a run at its current address (mremap moves and splits them) or a
// registered mapping, MADV_DOFORK'ed again at the end unless the app had it DONTFORK: while
// pages are missing, a fork's child gets no copy of these mappings (it would read zeros there).
// The runs come in the order the server fills them: the working set (runs earlier launches
// faulted on) first, then pages.img order.
#define PW_LAZY_MAGIC 0x797a616c72777270ull /* "prwrlazy" */
#define PW_SEG_PIECE 1u
#define PW_SEG_REGION 2u

struct PwLazyRun {
  uint64_t addr;         // at the snapshot, for messages
  uint64_t file_offset;  // in pages.img
  uint64_t len;
  uint64_t xxh3;
  uint64_t first_bit;    // its first page's bit in the pending bitmap
  uint32_t pending;      // its pages still to fill
  uint32_t image_index;  // in the image's page_runs: what the working set records
};

struct PwLazySeg {
  uint64_t addr;
  uint64_t len;          // 0: gone (unmapped)
  uint64_t run_off;      // PIECE: offset of addr within its run
  uint32_t kind;
  uint32_t run;          // PIECE: index into the runs
  uint32_t keep_dontfork;  // REGION: the app had MADV_DONTFORK there
  uint32_t pad;
};

struct PwLazyHeader {
  uint64_t magic;
  uint64_t region_len;
  uint64_t runs_off;
  uint32_t runs_count;
  uint32_t segs_count;
  uint64_t segs_off;
  uint32_t segs_cap;
  uint32_t trace;        // a summary line on stderr when done (PREWARM_TRACE)
  uint64_t bitmap_off;
  uint64_t pending;      // pages still to fill, all runs
  uint64_t buf_off;
  uint64_t buf_len;      // at least the longest run
  uint64_t stack_top;
  int32_t uffd;
  int32_t pages_fd;
  uint64_t faults, zero_faults, fault_pages, background_pages;  // counters for the trace line
  int32_t notify_fd;     // the readiness socket (-1: none): told why, if the server kills the app
  int32_t ws_fd;         // the working set file (-1: none): each run filled on a fault, appended
};
/* ---- end lazy ---- */

#ifdef __cplusplus
static_assert(sizeof(PwVmaOp) == 56, "PwVmaOp layout");
static_assert(sizeof(PwFdMove) == 16, "PwFdMove layout");
static_assert(sizeof(PwEpollAdd) == 24, "PwEpollAdd layout");
static_assert(sizeof(PwPosixLock) == 24, "PwPosixLock layout");
static_assert(offsetof(PwPlan, posix_locks_off) % 8 == 0, "aligned POSIX locks offset");
static_assert(sizeof(PwMmMap) == 104, "struct prctl_mm_map is 104 bytes");
static_assert(sizeof(PwKSigaction) == 32, "kernel sigaction layout");
static_assert(offsetof(PwPlan, mm) % 8 == 0, "aligned mm map");
static_assert(sizeof(PwThread) == 120, "PwThread layout");
static_assert(sizeof(PwTidWord) == 16, "PwTidWord layout");
static_assert(offsetof(PwPlan, tid_words_off) % 8 == 0, "aligned tid words offset");
static_assert(offsetof(PwPlan, threads_ready) % 4 == 0 && offsetof(PwPlan, threads_gate) % 4 == 0,
              "futex words are 32-bit aligned");
static_assert(sizeof(PwLazyRun) == 48 && sizeof(PwLazySeg) == 40 && sizeof(PwLazyHeader) == 136, "lazy layouts");
static_assert(offsetof(PwPlan, lazy_ranges_off) % 8 == 0, "aligned lazy fields");
#endif
