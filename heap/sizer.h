/* Adaptive heap sizing (heap_policy=adaptive): the MemBalancer rule
 * (Kirisame, Shenoy and Panchekha, OOPSLA 2022).  The allocation budget
 * until the next collection is
 *     extra = sqrt(live * expansiveness * (allocation rate / collection speed))
 * clamped to [min_alloc_trigger, (growth_factor_pct - 100)% of live]
 * (large objects counted there: heap_policy=fixed's budget, 2x live by
 * default, so adaptive never holds more than fixed) and by heap_max: a
 * heap whose
 * mutator allocates fast relative to how fast the collector gets through
 * its live data gets more room, and room grows with the square root of
 * the live size rather than in proportion.  Both rates are measured:
 *   - allocation rate: bytes allocated between two collections over the
 *     mutator time between them (end of one pause to start of the next);
 *   - collection cost: a collection's pause plus the CPU time the heap's
 *     threads spent until the next one (its concurrent phase, a sweeper),
 *     per byte it left live, large objects aside;
 * each smoothed (half the old value, half the new).  The cost and the live
 * bytes are smoothed apart and divided (as Whippet's adaptive-heap-sizer.h
 * does), so a collection weighs by its size: the one that finds live data
 * fallen from 256 to 16 MiB walks the big heap's pages for little live
 * data (fhbench phases: 173 ms for 16 MiB, 10 ns per byte against 0.5-1),
 * and smoothing the per-byte ratios let that figure, halved at each
 * collection, quadruple the budget of the next several.  Memory above the next
 * target goes back to the kernel after each collection (the collectors
 * keep resident only what the next cycle needs: collectors/semi_space.c's
 * keep, compaction's moved-away pages), so RSS follows live data down. */
#ifndef FH_SIZER_H_
#define FH_SIZER_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct heap_sizer {
  /* Written only by the collecting thread with the world stopped (gc_run);
   * fh_dump reads the rates and the budget under stats_lock, which the
   * writes of those hold. */
  double cost_ns;            /* smoothed collection cost (ns) ... */
  double cost_live;          /* ... and the live bytes it was paid for */
  double gc_ns_per_byte;     /* their ratio: the collection cost per live byte */
  double alloc_bytes_per_ns; /* smoothed allocation rate */
  uint64_t last_end_ns;      /* end of the last pause (0: none yet) */
  uint64_t pause_start_ns;   /* the current pause's start */
  uint64_t cpu_at_end;       /* the heap threads' CPU time at the last pause's end */
  uint64_t cpu_at_start;     /* ... and at the current pause's start */
  uint64_t pending_cost_ns;  /* the last collection's pause, not yet folded in */
  size_t pending_live;       /* the live bytes it left */
  int folded;                /* this pause has folded its measurements in */
  size_t last_extra;         /* the last budget (fh_dump) */
  size_t last_live;          /* the live bytes it was computed for (large objects aside) */
} heap_sizer;

struct fh_heap;
void sizer_init(heap_sizer *s);
/* World stopped, before the collector runs (gc_run, fh_prefork). */
void sizer_pause_start(struct fh_heap *h, uint64_t t0);
/* After the pause (gc_account_pause): its length. */
void sizer_pause_end(struct fh_heap *h, uint64_t pause_ns, uint64_t now);
/* heap_policy=adaptive: the allocation budget after a collection that
 * left `live` bytes it traces and moves (large objects aside) among
 * `all_live` (the sqrt rule uses the first, fixed's bound the second;
 * heap_set_trigger clamps the result by heap_max). */
size_t sizer_extra(struct fh_heap *h, size_t live, size_t all_live);
/* May a compacting cycle copy rather than slide in place?  A flip keeps
 * the old pages (`old_used` bytes of the moving space) resident while it
 * builds the `live` bytes it moves elsewhere, and gives them back only as
 * the build proceeds, while the mutators allocate new pages: 1 when the
 * old pages, the copy and another cycle's allocation (old_used - live)
 * fit under heap_max beside the non-moving objects (heap_max covers the
 * collector's reserve), else 0 and the cycle slides, which needs no
 * second copy.  Policy for collectors/concurrent_compact.c. */
int sizer_flip_fits(struct fh_heap *h, size_t old_used, size_t live);
/* How much of the next allocation window (gc_trigger bytes above the new
 * top) a compacting collector keeps resident after a cycle: the slid-away
 * pages it does not discard, the pages its worker faults in ahead of the
 * mutators.  A quarter of the window, at most 32 MiB: keeping all of it
 * held the heap at live + budget for the whole cycle instead of rising
 * from live to it (fhbench phases after the fall: 3.3x live once the
 * first collection had finished, with a budget of 2x live), which costs
 * half the budget in mean resident memory; a quarter costs 1/32 of it,
 * and the mutators fault in the rest as they reach it.  Policy for
 * collectors/mark_compact.c. */
size_t sizer_resident_window(struct fh_heap *h);
/* The allocation a compacting collector (mark_compact, concurrent_compact)
 * may let its moving space take before the next collection, when the space
 * holds `occupied` bytes after this one (from its start to the new top:
 * a young cycle's old generation counts whole, dead objects included) and
 * `other` bytes of heap_max hold the other spaces' objects.  heap_max
 * covers the objects and the collector's side tables: the mark and live
 * bitmaps (a bit per 8-byte word each) and the forwarding chunks (16 bytes
 * per 512), 1/16 of the space, all resident over every page a cycle marks
 * or moves, as Whippet's heap size covers its mark bytes.  With `thp` (the
 * space is MADV_HUGEPAGE) the room ends where a huge page does, when that
 * costs at most half of it: the mutators' first touch of a huge page
 * faults all 2 MiB of it in, so a window ending inside one held up to
 * 2 MiB that nothing used.  Counted apart (heap_max for the objects
 * alone, a window ending anywhere), Whippet's shapes at 2x (mt-gcbench,
 * quads) ran with the moving space at heap_max's room, 1.2-1.3 MiB of
 * tables and the last huge page on top. */
size_t sizer_moving_room(struct fh_heap *h, size_t occupied, size_t other, int thp);
/* fh_dump's line (nothing under heap_policy=fixed). */
void sizer_dump(struct fh_heap *h, FILE *out);

#endif
