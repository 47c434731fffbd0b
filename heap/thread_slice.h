/* A shorter scheduler time slice for a thread whose latency matters more
 * than its throughput (see thread_slice.c). */
#ifndef FH_THREAD_SLICE_H_
#define FH_THREAD_SLICE_H_

#include <stdint.h>

/* Give the calling thread a time slice of `ns` (Linux clamps it to
 * 0.1..100 ms), keeping its policy, nice value and reset-on-fork flag.
 * 0 when the kernel took the request (before Linux 6.12 it takes it and
 * ignores the slice); -1 when it refused it (no sched_getattr/setattr,
 * a seccomp filter, EPERM) or the thread's policy is not SCHED_OTHER or
 * SCHED_BATCH, which are left alone.  Never fatal: it only changes when
 * the thread gets a CPU. */
int thread_set_slice(uint64_t ns);

#endif
