/* Per-thread time slices (Linux 6.12+, EEVDF).
 *
 * Why: a thread that sleeps until it is needed and then must run at once
 * (the compactor's from-space releaser) competes with threads that never
 * sleep (mutators, the GC worker).  With the default slice (~1.4 ms on this
 * 2-CPU VM, scaled with the CPU count) a woken thread waits for the running
 * one to use up its slice; a thread whose slice is shorter than the running
 * thread's may preempt it on wakeup (the scheduler's PREEMPT_SHORT).  The
 * slice is a fair-class attribute set with sched_setattr(sched_runtime):
 * no privilege, no change of policy or nice, and it costs the thread
 * nothing but shorter turns, which a thread that runs for a few hundred
 * microseconds at a time never notices.
 *
 * glibc has no wrapper, and <linux/sched/types.h> clashes with <sched.h>
 * over struct sched_param: the first 48 bytes of the kernel's struct
 * sched_attr (SCHED_ATTR_SIZE_VER0) are declared here. */
#include "heap/thread_slice.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SCHED_FLAG_RESET_ON_FORK 0x01

typedef struct sched_attr_v0 {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime; /* fair class: the slice, in ns */
  uint64_t sched_deadline;
  uint64_t sched_period;
} sched_attr_v0;

int thread_set_slice(uint64_t ns) {
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
  sched_attr_v0 a = {0};
  if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0) return -1;
  if (a.sched_policy != SCHED_OTHER && a.sched_policy != SCHED_BATCH) return -1;
  a.size = sizeof a;
  /* Of the flags sched_getattr reports, only reset-on-fork is a setting to
   * keep (dropping it is refused without privilege); the others would ask
   * for things (keep-params, utilization clamps) not meant here. */
  a.sched_flags &= SCHED_FLAG_RESET_ON_FORK;
  a.sched_runtime = ns;
  return syscall(SYS_sched_setattr, 0, &a, 0) == 0 ? 0 : -1;
#else
  (void)ns;
  return -1;
#endif
}
