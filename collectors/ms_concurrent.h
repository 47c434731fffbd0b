/* Mark-sweep's concurrent cycle (ART's concurrent mark-sweep) on the
 * concurrent-marking driver (collectors/concurrent_mark.h). */
#ifndef FH_MS_CONCURRENT_H_
#define FH_MS_CONCURRENT_H_

#include "collectors/mark.h"

/* 1 when this collection may mark concurrently: concurrent_mark=1, a
 * triggered cycle of a collector=mark_sweep heap, no bump-space objects,
 * no gc_stress.  (h->cm_off_why says why not, for fh_dump.) */
int ms_concurrent_usable(fh_heap *h, gc_cause cause);
/* World stopped, threads settled: take the roots, start the marker.  0
 * (the cycle runs), 1 (could not start: mark in this pause instead), or
 * the result of finishing in this pause. */
int ms_concurrent_begin(fh_heap *h, gc_cause cause);
/* mark_sweep.c: the sweep after marking. */
int mark_sweep_reclaim(fh_heap *h, marker *m, gc_cause cause, size_t live, int derive_cover);
/* After a remark pause, the world running (gc_lock held): start the
 * sweeper its reclaim deferred. */
void mark_sweep_after_pause(fh_heap *h);

#endif
