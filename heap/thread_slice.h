/* A shorter scheduler time slice for a thread whose latency matters more
 * than its throughput (see thread_slice.c). */
#ifndef FH_THREAD_SLICE_H_
#define FH_THREAD_SLICE_H_

#include <stdint.h>

/* Give the calling thread a time slice of `ns` (Linux clamps it to
 * 0.1..100 ms), keeping its policy and nice value.  0 on success; -1 where
 * the kernel has no per-thread slice (before 6.12 the request is accepted
 * and ignored, which also returns 0) or the thread is not in the fair
 * class.  Never fatal: it only changes when the thread gets a CPU. */
int thread_set_slice(uint64_t ns);

#endif
