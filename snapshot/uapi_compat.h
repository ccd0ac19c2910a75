// Kernel constants newer than Debian 12's UAPI headers (linux-libc-dev 6.1), in one place: each
// is defined only where the installed headers lack it, so newer headers give the kernel's own.
#pragma once

#include <linux/membarrier.h>
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
// An enumerator, not a macro, so the headers' version says whether it is there.
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)  // Linux 6.3
#endif
