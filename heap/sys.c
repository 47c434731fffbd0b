/* The system-call seam's fault injection (heap/sys.h).  Off in production:
 * sys_seam_active stays 0 and no wrapper calls in here. */
#include "heap/sys.h"

#include <string.h>

_Atomic int sys_seam_active;
_Atomic int sys_jemalloc_started;
pthread_mutex_t sys_jemalloc_start_lock = PTHREAD_MUTEX_INITIALIZER;

void sys_jemalloc_start(void) {
  pthread_mutex_lock(&sys_jemalloc_start_lock);
  /* Any call starts jemalloc whole (its fork handlers registered too);
   * nallocx allocates nothing.  A start-up that fails (mmap refused) is
   * tried again by jemalloc's next call, which reports the failure. */
  if (!atomic_load_explicit(&sys_jemalloc_started, memory_order_relaxed) && nallocx(1, 0))
    atomic_store_explicit(&sys_jemalloc_started, 1, memory_order_release);
  pthread_mutex_unlock(&sys_jemalloc_start_lock);
}

static const char *const names[SYS_NCALLS] = {
    [SYS_MMAP] = "mmap",           [SYS_MUNMAP] = "munmap",
    [SYS_MREMAP] = "mremap",       [SYS_MADVISE] = "madvise",
    [SYS_MPROTECT] = "mprotect",   [SYS_UFFD_IOCTL] = "uffd_ioctl",
    [SYS_USERFAULTFD] = "userfaultfd", [SYS_THREAD_CREATE] = "pthread_create",
    [SYS_JEMALLOC] = "jemalloc",   [SYS_OPEN] = "open",
    [SYS_READ] = "read",           [SYS_WRITE] = "write",
    [SYS_RENAME] = "rename",
};

/* The plan (written by sys_fault_arm before sys_seam_active is set, read
 * after it: release/acquire on the flag orders them). */
static sys_call plan_call;
static uint64_t plan_nth;
static int plan_persistent, plan_err;
static _Atomic uint64_t calls[SYS_NCALLS];
static _Atomic uint64_t injected;

const char *sys_call_name(sys_call c) {
  return (unsigned)c < SYS_NCALLS ? names[c] : "?";
}

int sys_call_by_name(const char *name) {
  for (int i = 0; i < SYS_NCALLS; i++)
    if (strcmp(names[i], name) == 0) return i;
  return -1;
}

void sys_fault_arm(sys_call c, uint64_t nth, int persistent, int err) {
  atomic_store(&sys_seam_active, 0);
  for (int i = 0; i < SYS_NCALLS; i++) atomic_store(&calls[i], 0);
  atomic_store(&injected, 0);
  plan_call = c;
  plan_nth = nth;
  plan_persistent = persistent;
  plan_err = err ? err : ENOMEM;
  atomic_store_explicit(&sys_seam_active, 1, memory_order_release);
}

void sys_fault_disarm(void) { atomic_store(&sys_seam_active, 0); }

uint64_t sys_fault_calls(sys_call c) {
  return (unsigned)c < SYS_NCALLS ? atomic_load(&calls[c]) : 0;
}

uint64_t sys_fault_injected(void) { return atomic_load(&injected); }

int sys_fault_hit(sys_call c) {
  if (!atomic_load_explicit(&sys_seam_active, memory_order_acquire)) return 0;
  uint64_t n = atomic_fetch_add_explicit(&calls[c], 1, memory_order_relaxed) + 1;
  if (c != plan_call || plan_nth == 0) return 0;
  if (n == plan_nth || (plan_persistent && n > plan_nth)) {
    atomic_fetch_add_explicit(&injected, 1, memory_order_relaxed);
    return plan_err;
  }
  return 0;
}
