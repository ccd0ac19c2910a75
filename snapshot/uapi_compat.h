// Kernel constants newer than Debian 12's UAPI headers (linux-libc-dev 6.1), in one place: each
// is defined only where the installed headers lack it, so newer headers give the kernel's own.
#pragma once

#include <linux/fs.h>
#include <linux/membarrier.h>
#include <linux/types.h>
#include <linux/version.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#ifndef PR_GET_MDWE
#define PR_GET_MDWE 66  // Linux 6.3
#endif
#ifndef PR_GET_MEMORY_MERGE
#define PR_GET_MEMORY_MERGE 68  // Linux 6.4
#endif
#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77  // Linux 6.17
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5
#endif
// PAGEMAP_SCAN (Linux 6.7): the ioctl, its argument, its result and the page categories.
#ifndef PAGEMAP_SCAN
struct page_region {
  __u64 start, end, categories;
};
struct pm_scan_arg {
  __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
  __u64 category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
static_assert(sizeof(struct pm_scan_arg) == 96 && sizeof(struct page_region) == 24, "PAGEMAP_SCAN's structures");
// An enumerator, not a macro, so the headers' version says whether it is there.
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)  // Linux 6.3
#endif
