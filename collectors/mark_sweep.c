/* Mark-sweep (ART's non-moving collector, as in its CMS configuration, but
 * stop-the-world): mark everything reachable with side bitmaps, then free
 * every unmarked object of the main malloc space and the non-moving space
 * back to jemalloc.  Nothing moves, so no reference is rewritten.
 *
 * On a semi-space heap (FH_COLLECT_MARK_SWEEP requested explicitly) objects
 * of the bump space are marked through but not freed: a bump space can only
 * be emptied by copying. */
#include "collectors/collector.h"
#include "collectors/mark.h"
#include "heap/error.h"

static int mark_sweep_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self;
  /* Cached free regions go back to their bins before the sweep frees more
   * into them (and so a reset never meets a stale cache). */
  if (h->has_malloc_spaces) malloc_heap_flush_tcaches(h);
  marker m;
  if (marker_init(&m, h) < 0) {
    fh_error_prefix("mark-sweep");
    return -1;
  }
  marker_run(&m); /* without on_scan, overflow recovery always completes */
  marker_destroy(&m);

  size_t freed = non_moving_space_sweep(&h->non_moving);
  if (h->has_malloc_spaces) {
    malloc_space *ms = heap_main_malloc(h);
    freed += malloc_space_sweep(ms, h->gc_tcache);
    /* An explicit collection asks for memory back now; triggered ones let
     * jemalloc's decay return freed pages over time, so a busy mutator does
     * not re-fault pages it will fill again at once. */
    if (cause == GC_CAUSE_EXPLICIT) arena_purge(&ms->arena);
  }
  h->bytes_freed += freed;
  heap_set_trigger(h, heap_used_bytes(h));
  return 0;
}

const fh_collector_ops mark_sweep_collector = {"mark_sweep", mark_sweep_collect};
