/* Mark-sweep (ART's non-moving collector, as in its CMS configuration):
 * stop the world, mark everything reachable with side bitmaps, then free
 * every unmarked object of the main malloc space and the non-moving space
 * back to jemalloc.  Nothing moves, so no reference is rewritten.
 *
 * Sweeping the main malloc space (one jemalloc free per dead object) costs
 * more than marking in allocation-heavy programs, so a triggered collection
 * sweeps it after the pause, while the mutators run: the pause turns the
 * mark bitmap into the bitmap of dead objects (new allocations are never
 * in it) and a cursor over its words; a sweeper thread claims words from
 * it, and so do the mutators: a few words before each 4 KiB they allocate
 * (sweep as you allocate, heap/malloc_heap.c), and all that is left before
 * they trigger the next collection.  A mutator frees through
 * its own tcache, so it reuses the regions it frees at once, without a
 * round trip through the arena's bins.
 * The heap's concurrent phase stays open until the sweep ends; the next
 * collection, fh_gc_wait and fh_heap_destroy wait for it.  An explicit
 * fh_collect, or verify=1, sweeps inside the pause: when fh_collect returns
 * every dead object is gone and the freed pages are purged.
 *
 * On a semi-space heap (FH_COLLECT_MARK_SWEEP requested explicitly) objects
 * of the bump space are marked through but not freed: a bump space can only
 * be emptied by copying. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "collectors/collector.h"
#include "collectors/mark.h"
#include "collectors/ms_concurrent.h"
#include "heap/error.h"

/* Words the sweeper thread claims at a time (64 granules each). */
#define SWEEPER_WORDS 256

/* One burst of the sweeper's paced work (heap/gc_pace.h): mutators that
 * allocate sweep for themselves meanwhile, and all that is left before
 * they trigger the next collection, so the sweeper at its share never
 * makes them wait. */
static void sweep_work(void *arg, gc_budget *b) {
  fh_heap *h = arg;
  malloc_space *ms = heap_main_malloc(h); /* stays main until the phase ends */
  /* From the same end as the mutators' slices (heap/malloc_heap.c): taking
   * words from the far end, so that the two never free into the same
   * slabs, measured 2-5% slower on GCBench. */
  while (!gc_budget_over(b) && malloc_space_sweep_step(ms, SWEEPER_WORDS, h->gc_tcache, 1)) {
  }
}

static void *sweeper_main(void *arg) {
  fh_heap *h = arg;
  malloc_space *ms = heap_main_malloc(h);
  gc_pace_run(h, NULL, sweep_work, h);
  /* Mutators may still be sweeping words they claimed; they never block
   * while doing so, so this wait is short. */
  while (atomic_load(&ms->sweep_done) < ms->sweep_total) sched_yield();
  /* (The bytes it freed were counted in the pause: sweep_begin.) */
  pthread_mutex_lock(&h->stats_lock);
  int purge = h->ms_purge_after_sweep;
  size_t spare = h->ms_spare_runs;
  pthread_mutex_unlock(&h->stats_lock);
  if (purge)
    malloc_space_purge(ms); /* see give_back_above_target */
  else
    malloc_runs_trim_empty(ms, spare);
  /* The last touch of the heap: fh_heap_destroy waits for this. */
  heap_phase_close(h);
  return NULL;
}

/* Open the concurrent phase and start the sweeper thread; 0, or -1 when
 * no thread could be started (the caller sweeps at once). */
static int sweep_later(fh_heap *h) {
  /* A concurrent marking's remark starts the sweeper once the world runs
   * again (mark_sweep_after_pause): a pool thread woken in the pause may
   * preempt the one finishing it on a busy machine. */
  if (h->ms_sweeper_deferred) {
    heap_phase_open(h);
    h->ms_sweeper_pending = 1;
    return 0;
  }
  return heap_phase_thread(h, "fh-sweep", sweeper_main, h);
}

void mark_sweep_after_pause(fh_heap *h) {
  if (!h->ms_sweeper_pending) return;
  h->ms_sweeper_pending = 0;
  if (gc_pool_start(&h->pool, NULL, "fh-sweep", sweeper_main, h) != 0)
    sweeper_main(h); /* no thread: sweep here, the world running; closes the phase */
}

/* The main space holds no object after a sweep in the pause: reset its
 * arena (destroy and recreate over the same range).  jemalloc keeps the
 * range it carved as extents it never gives back (our hooks refuse to
 * unmap), cached dirty or retained, and it grows into fresh range in
 * ever larger steps: after the space was full of small objects, the carved
 * part may be in pieces and the uncarved rest too short for one large
 * object, though every byte is free.  A fresh arena has the whole range in
 * one piece.  Every tcache is flushed first, as jemalloc requires (the
 * world is stopped; the threads' budgets were settled at the start).
 * 0, or -1 + error when the arena could not be recreated: the space then
 * has no arena, allocation refuses it (heap/malloc_heap.c: prepay), and
 * the next collection tries to revive it. */
static int reset_empty(fh_heap *h, malloc_space *ms) {
  /* A cache that could not be flushed may still hold regions of the arena
   * that the reset would destroy: then keep the arena as it is.  Harmless:
   * the space is only less able to serve a large object until a later
   * reset or compaction succeeds. */
  if (malloc_heap_flush_tcaches(h) < 0) return 0;
  if (malloc_space_reset(ms) < 0) {
    fh_error_prefix("mark-sweep: resetting the empty main malloc space");
    return -1;
  }
  return 0;
}

/* Memory above the next target goes back to the kernel: when the space
 * held much more before this collection than the next cycle will need
 * (live data fell), its freed pages are purged once the sweep is done,
 * instead of waiting for jemalloc's decay (10 s), so RSS follows live data
 * down.  In steady state (the space fills to about the target each cycle)
 * nothing is purged: the mutators would only fault the pages in again. */
static int give_back_above_target(fh_heap *h, size_t used_before) {
  size_t target = h->live_after_gc + h->gc_trigger;
  return used_before > target + target / 4 + ((size_t)4 << 20);
}

/* How many empty runs a sweep keeps warm for the next cycle: twice what
 * its allocation budget could fill, plus 16 (the next cycle also refills
 * partial runs, and a budget is not an exact forecast).  The rest stay
 * listed with their pages discarded, and past a cap go back to jemalloc
 * (spaces/malloc_runs.c).  A thread that needs a run while the sweeper has
 * claimed the words ahead but not listed their runs yet takes a new one
 * from jemalloc; without the trim those runs stayed listed and resident
 * for good, and a program with 0.1 MiB live on a 512 KiB budget grew to
 * 6-60 MiB over a few thousand cycles, more the longer it ran (fhscheme's
 * test_small_program_rss).  Keeping only the budget's worth warm cost
 * GCBench twice its time in page faults. */
static size_t spare_runs(const fh_heap *h) { return 2 * (h->gc_trigger / MS_RUN_BYTES) + 16; }

/* verify=1: after a sweep in the pause, `used` (set from the marked bytes
 * before the sweep) is exactly what the allocation bits say is left. */
static void check_used(malloc_space *ms) {
  size_t sum = 0, used = atomic_load(&ms->used);
  uintptr_t end = malloc_space_frontier(ms);
  for (uintptr_t p = bitmap_next_set(&ms->alloc_bits, ms->space.begin, end); p;
       p = bitmap_next_set(&ms->alloc_bits, p + MS_GRANULE, end))
    sum += malloc_object_bytes_hd(*(uint64_t *)p);
  if (sum != used) {
    fprintf(stderr, "faultheap verify (mark-sweep): main malloc space used=%zu but its objects "
                    "take %zu bytes\n", used, sum);
    abort();
  }
}

/* The sweep, after marking (in the pause that ended it): `live` is the
 * main space's marked bytes.  Shared by the stop-the-world cycle and the
 * remark of a concurrent one (collectors/ms_concurrent.c), whose marker
 * leaves the runs' cover bits for this sweep to derive. */
int mark_sweep_reclaim(fh_heap *h, marker *m, gc_cause cause, size_t live, int derive_cover) {
  /* A bump space (FH_COLLECT_MARK_SWEEP on a semi-space or compacting
   * heap) keeps its dead objects; they must not keep references to what
   * the sweep below frees. */
  if (m->bump_hi > m->bump_lo) marker_fill_dead_bump(m);
  marker_destroy(m);

  size_t freed = heap_sweep_nonmoving(h);
  if (h->has_malloc_spaces) {
    malloc_space *ms = heap_main_malloc(h);
    size_t used_before = atomic_load(&ms->used);
    ms->derive_cover = derive_cover;
    /* `used` becomes the marked bytes now, whatever the sweep's pace. */
    malloc_space_sweep_begin(ms, malloc_space_frontier(ms), live);
    malloc_heap_rebind_bits(h);
    freed += atomic_load(&ms->sweep_freed);
    /* An allocation that failed waits for the memory anyway: it sweeps
     * in the pause too, so that an empty space can be reset below. */
    int now = cause == GC_CAUSE_EXPLICIT || cause == GC_CAUSE_ALLOC_FAILURE || h->opt.verify ||
              sweep_later(h) < 0;
    int rc = 0;
    if (now) {
      malloc_space_sweep_step(ms, ms->sweep_total, h->gc_tcache, 1);
      if (h->opt.verify) check_used(ms);
    }
    h->bytes_freed += freed;
    /* The next trigger from the live size: what marking found, plus what
     * the other spaces hold. */
    heap_set_trigger(h, now ? heap_used_bytes(h)
                            : live + heap_nonmoving_used(h) +
                                  bump_space_used(&h->bump[h->active]));
    int purge = give_back_above_target(h, used_before);
    if (now) {
      if (atomic_load(&ms->used) == 0)
        rc = reset_empty(h, ms);
      /* An explicit collection asks for memory back now; triggered ones
       * let jemalloc's decay return freed pages over time, so a busy
       * mutator does not re-fault pages it will fill again at once,
       * unless live data fell well below what the space held. */
      else if (cause == GC_CAUSE_EXPLICIT || purge)
        malloc_space_purge(ms);
      else
        malloc_runs_trim_empty(ms, spare_runs(h));
    }
    h->ms_purge_after_sweep = !now && purge; /* the sweeper thread's job */
    h->ms_spare_runs = spare_runs(h);
    return rc;
  }
  h->bytes_freed += freed;
  heap_set_trigger(h, heap_used_bytes(h));
  return 0;
}

static int mark_sweep_collect(fh_heap *h, fh_thread *self, gc_cause cause) {
  (void)self;
  /* `used` and the allocation bits exact.  The mutators' tcaches are not
   * flushed: they hold only free regions (no allocation bit), which hide no
   * object from the sweep, and keeping them saves every mutator a refill
   * from the arena after each collection.  (Compaction, which resets the
   * arena, flushes them.) */
  if (h->has_malloc_spaces) {
    malloc_heap_settle_threads(h, 0);
    /* A reset that failed left the main space without an arena (it was
     * empty then, and nothing has been allocated in it since).  Failing
     * again is reported by the allocations that it refuses. */
    malloc_space_revive(heap_main_malloc(h));
  }
  /* A triggered cycle marks concurrently when it can: this pause only
   * takes the roots (collectors/ms_concurrent.c). */
  if (ms_concurrent_usable(h, cause)) {
    int rc = ms_concurrent_begin(h, cause);
    if (rc <= 0) return rc;
  }
  marker m;
  if (marker_init(&m, h) < 0) {
    fh_error_prefix("mark-sweep");
    return -1;
  }
  /* The listed runs' cover bits go now that marking, which sets them
   * again, cannot fail: a run's cover bits must never miss a live object
   * (spaces/malloc_runs.c), and a collection that fails leaves the lists. */
  if (m.ms) malloc_runs_clear_listed(m.ms);
  marker_run(&m); /* without on_scan, overflow recovery always completes */
  return mark_sweep_reclaim(h, &m, cause, m.ms_live, 0);
}

const fh_collector_ops mark_sweep_collector = {"mark_sweep", mark_sweep_collect, NULL};
