/* The collection protocol every collector shares. */
#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "collectors/ms_concurrent.h"
#include "heap/conservative.h"
#include "heap/error.h"
#include "heap/finalizer.h"
#include "heap/gc_events.h"
#include "heap/options.h"

const fh_collector_ops *collector_for(fh_collector c) {
  switch (c) {
  case FH_SEMISPACE:
    return &semi_space_collector;
  case FH_GEN_SEMISPACE:
    return &gen_semi_space_collector;
  case FH_MARK_COMPACT:
    return &mark_compact_collector;
  case FH_CONCURRENT_COMPACT:
    return concurrent_compact_or_fallback();
  case FH_MARK_SWEEP:
    return &mark_sweep_collector;
  case FH_HSPACE_COMPACT:
    return &hspace_compact_collector;
  default:
    fh_error_set("collector %s is not available in this build (available: semispace, "
                 "mark_sweep, hspace_compact)", options_collector_name(c));
    return NULL;
  }
}

static const fh_collector_ops *kind_ops(fh_heap *h, fh_collect_kind kind);

/* A semispace heap whose idle half holds pinned objects left there by a
 * mostly-copying cycle (collectors/semi_fixed.h) is collected by
 * semispace whatever kind is asked for: the other collectors move or
 * sweep the active half only and would neither trace those objects nor
 * keep what they refer to.  Its cycle empties the idle half, but for
 * what is pinned at that moment. */
static const fh_collector_ops *ops_for_kind(fh_heap *h, fh_collect_kind kind) {
  const fh_collector_ops *ops = kind_ops(h, kind);
  bump_space *idle = &h->bump[!h->active];
  if (ops && h->opt.collector == FH_SEMISPACE && ops != &semi_space_collector &&
      atomic_load(&idle->top) > idle->space.begin)
    return &semi_space_collector;
  return ops;
}

static const fh_collector_ops *kind_ops(fh_heap *h, fh_collect_kind kind) {
  /* Homogeneous compaction needs the two malloc spaces that only
   * collector=mark_sweep heaps have; the bump-space collectors, conversely,
   * know nothing of malloc spaces (they would neither trace through nor
   * update references held there). */
  if (kind == FH_COLLECT_HSPACE_COMPACT && !h->has_malloc_spaces) {
    fh_error_set("fh_collect: homogeneous space compaction needs collector=mark_sweep (this heap "
                 "uses %s and has no malloc spaces)", options_collector_name(h->opt.collector));
    return NULL;
  }
  if (h->has_malloc_spaces && (kind == FH_COLLECT_SEMISPACE || kind == FH_COLLECT_MARK_COMPACT ||
                               kind == FH_COLLECT_CONCURRENT_COMPACT)) {
    fh_error_set("fh_collect: a collector=mark_sweep heap keeps movable objects in malloc spaces, "
                 "which only FH_COLLECT_MARK_SWEEP and FH_COLLECT_HSPACE_COMPACT collect");
    return NULL;
  }
  switch (kind) {
  case FH_COLLECT_DEFAULT:
  case FH_COLLECT_TRIGGERED: /* fh_collect turns it into the default kind */
  case FH_COLLECT_YOUNG: /* the collector asks h->gen.request_young */
    return h->collector;
  case FH_COLLECT_SEMISPACE:
    return collector_for(FH_SEMISPACE);
  case FH_COLLECT_MARK_SWEEP:
    return collector_for(FH_MARK_SWEEP);
  case FH_COLLECT_HSPACE_COMPACT:
    return collector_for(FH_HSPACE_COMPACT);
  case FH_COLLECT_MARK_COMPACT:
    return collector_for(FH_MARK_COMPACT);
  case FH_COLLECT_CONCURRENT_COMPACT:
    return collector_for(FH_CONCURRENT_COMPACT);
  }
  fh_error_set("fh_collect: unknown collection kind %d", (int)kind);
  return NULL;
}

void gc_account_pause(fh_heap *h, uint64_t t0) {
  pthread_mutex_lock(&h->stats_lock);
  atomic_store(&h->alloc_since_gc, 0);
  /* A remark pause ends the cycle its initial pause counted. */
  if (!h->pause_is_remark) h->collections++;
  uint64_t now = heap_now_ns(), pause = now - t0;
  if (h->pause_is_remark && !h->pause_is_flip) {
    h->remark_ns_total += pause;
    if (pause > h->remark_ns_max) h->remark_ns_max = pause;
  }
  sizer_pause_end(h, pause, now);
  /* A compaction that moved aside and built (compact_builds grew) flipped
   * the spaces in this pause. */
  fh_pause_kind kind = h->pause_is_flip         ? FH_PAUSE_FLIP
                       : h->pause_is_remark     ? FH_PAUSE_REMARK
                       : h->cm                  ? FH_PAUSE_ROOTS /* began a concurrent marking */
                       : h->gen.collecting_young ? FH_PAUSE_YOUNG
                       : h->compact_builds != h->builds_seen ? FH_PAUSE_FLIP
                                                              : FH_PAUSE_FULL;
  h->builds_seen = h->compact_builds;
  pause_record_locked(h, kind, t0, now);
  /* Young or full (a collector without generations: always full). */
  uint64_t *total = &h->full_pause_ns_total, *max = &h->full_pause_ns_max;
  if (h->gen.collecting_young) {
    h->young_collections++;
    total = &h->young_pause_ns_total, max = &h->young_pause_ns_max;
  }
  h->gen.collecting_young = 0;
  *total += pause;
  if (pause > *max) *max = pause;
  pthread_mutex_unlock(&h->stats_lock);
}

/* The pause of one collection, gc_lock held by the caller (self, or the
 * concurrent marker with self NULL).  A concurrent marking that runs is
 * completed first (collectors/concurrent_mark.h): a collection requested
 * meanwhile waits for that cycle and starts no second marker; when it was
 * asked for by the trigger, an allocation failure or the marker itself
 * (GC_CAUSE_REMARK), finishing the cycle is the whole collection. */
int gc_collect_locked(fh_heap *h, fh_thread *self, const fh_collector_ops *ops, gc_cause cause,
                      int young, gc_watch *watch) {
  /* The previous collection's concurrent phase (compaction) ends first. */
  mc_help_phase(h); /* build pages alongside the worker rather than sleep */
  fh_gc_wait(h);
  if (cause == GC_CAUSE_REMARK && !h->cm) return 1; /* someone finished it */
  int remark_only = h->cm && (cause == GC_CAUSE_REMARK ||
                              ((cause == GC_CAUSE_ALLOC_TRIGGER || cause == GC_CAUSE_ALLOC_FAILURE) &&
                               ops == h->collector));
  pthread_mutex_lock(&h->stats_lock); /* the counters the events report */
  /* A pause that only finishes a concurrent marking is its remark, whoever
   * asked for it. */
  gc_events_start(h, watch, remark_only ? "remark" : ops->name,
                  remark_only ? GC_CAUSE_REMARK : cause);
  pthread_mutex_unlock(&h->stats_lock);
  gc_events_announce(h, watch);
  if (!remark_only && ops->prepare) ops->prepare(h);
  /* A trigger that fired while marking runs lets the marker finish
   * concurrently (mutators then wait here, at gc_lock, as they would for a
   * stop-the-world cycle); an allocation failure finishes it in the pause. */
  if (remark_only && cause != GC_CAUSE_ALLOC_FAILURE) cmark_wait_marker(h);
  /* The last cycle's marker task, which ran its remark and may still be
   * returning: joined before the pause (a descheduled thread made initial
   * pauses of 1-5 ms on a busy machine), not in it. */
  if (!h->cm) cmark_join(h);
  /* The last compaction's end-of-cycle task reads the moving space
   * (mc_gen_fill_walk): joined before another kind of collection moves
   * it, and outside the pause (compactions join it in ops->prepare). */
  mc_quiesce(h);
  uint64_t t0 = heap_now_ns();
  struct rusage usage0; /* the pause's CPU time and faults: fh_stats.gc_sys_ns */
  int measured = gc_pool_usage_begin(&usage0) == 0;
  if (world_stop(h, self) < 0) return -2;
  threads_retire_tlabs(h);
  sizer_pause_start(h, t0);
  /* Holes in the bump space (gaps a compaction left below pinned objects,
   * spaces/bump_space.h) are fillers only until the next collection: any
   * collector may merge or move them.  A pause that only begins a
   * concurrent marking hands them out again (below). */
  size_t nheld, held_bytes;
  bump_hole *held = bump_space_take_holes(&h->bump[h->active], &nheld, &held_bytes);
  /* Pins (fh_pin, conservative stack words) are fixed before anything is
   * traced; without the set, nothing may move. */
  if (pins_gather(h, self) < 0) {
    free(held);
    pins_release(h);
    world_resume(h);
    return -2;
  }
  int rc = 0;
  if (h->cm) {
    pthread_mutex_lock(&h->stats_lock);
    /* A collection that follows in this pause needs the sweep done here. */
    rc = cmark_complete(h, remark_only ? cause : GC_CAUSE_EXPLICIT);
    pthread_mutex_unlock(&h->stats_lock);
  }
  if (!remark_only) {
    /* Verification runs outside stats_lock: on failure it dumps the heap,
     * and the dump reads the statistics. */
    if (h->opt.verify) heap_verify(h, "before collection");
    pthread_mutex_lock(&h->stats_lock);
    h->gen.request_young = young;
    rc = ops->collect(h, self, cause);
    pins_account(h);
    pthread_mutex_unlock(&h->stats_lock);
  }
  /* A marking begun in this pause (any earlier one ended above) moves
   * nothing until its remark: the holes stay free for the mutators
   * meanwhile, if its collector marks what they put there
   * (cmark_ops.keep_holes).  Otherwise, with the stack pinning the newest
   * object at the top, everything allocated while marking ran went above
   * it, and the space grew by that much at every cycle. */
  if (!cmark_keep_holes(h, held, nheld, held_bytes)) free(held);
  pins_release(h);
  /* After a concurrent collection's pause the heap is verified by the next
   * collection's "before" check, once the phase has ended (and marking,
   * which leaves half the marks set, is over). */
  if (h->opt.verify && !mc_phase_open(h) && !h->cm) heap_verify(h, "after collection");
  watch->e.young = h->gen.collecting_young; /* gc_account_pause resets it */
  /* Charged first: the sizer reads the heap threads' CPU time at the
   * pause's end (heap/sizer.c) to tell the pause from what follows it. */
  if (measured) gc_pool_charge(&h->pool, &usage0);
  h->pause_is_remark = remark_only;
  gc_account_pause(h, t0);
  h->pause_is_remark = h->pause_is_flip = 0;
  pthread_mutex_lock(&h->stats_lock);
  gc_events_collected(h, watch, heap_now_ns() - t0);
  pthread_mutex_unlock(&h->stats_lock);
  world_resume(h);
  mc_after_pause(h);         /* a slide's end-of-cycle task */
  mc_start_worker(h);        /* the compaction worker of a flip in this pause */
  mark_sweep_after_pause(h); /* the sweeper a remark deferred */
  cmark_start_task(h);       /* a concurrent marking begun in this pause */
  return rc;
}

/* The collection itself, for gc_run: 1 if none was needed, -2 if it
 * failed before its pause. */
static int gc_run_locked(fh_thread *self, const fh_collector_ops *ops, fh_collect_kind kind,
                         gc_cause cause, uint64_t seen_collections, gc_watch *watch) {
  fh_heap *h = self->heap;
  gc_lock_acquire(self);
  if (cause != GC_CAUSE_EXPLICIT && cause != GC_CAUSE_REMARK &&
      h->collections != seen_collections) {
    gc_lock_release(self); /* another thread collected while we waited */
    return 1;
  }
  int rc = gc_collect_locked(h, self, ops, cause, kind == FH_COLLECT_YOUNG, watch);
  gc_lock_release(self);
  return rc;
}

/* With stack_roots=conservative this thread's scan starts at this frame
 * while it collects or waits to (conservative_enter): every callee-saved
 * register is spilled into it first, and the collector's frames below are
 * left out.  Not while the end event and the finalizer notification run:
 * they are the embedder's code, which may allocate and park, and their
 * frames lie below. */
__attribute__((noinline)) int gc_run(fh_thread *self, fh_collect_kind kind, gc_cause cause,
                                     uint64_t seen_collections) {
  fh_heap *h = self->heap;
  heap_settle_collector(h); /* before h->collector is read */
  const fh_collector_ops *ops = ops_for_kind(h, kind);
  if (!ops) return -1;
  if (self->critical) {
    /* Refused before queueing for the GC lock: a collector already waiting
     * for our critical section to close would otherwise wait for us while
     * we wait for it. */
    fh_error_set("a collection cannot run inside this thread's own critical section "
                 "(fh_critical_begin without fh_critical_end)");
    return -1;
  }
  gc_watch watch;
  __builtin_unwind_init();
  uintptr_t prev = conservative_enter(self);
  int rc = gc_run_locked(self, ops, kind, cause, seen_collections, &watch);
  conservative_leave(self, prev);
  if (rc == 1) return 0;   /* nothing to do */
  if (rc == -2) return -1; /* failed before the pause */
  gc_events_end(h, &watch);
  finalizer_notify_if_filled(h);
  return rc;
}

int fh_collect(fh_thread *t, fh_collect_kind k) {
  if (thread_check(t, "fh_collect") < 0) return -1;
  if (k == FH_COLLECT_TRIGGERED)
    return gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_ALLOC_TRIGGER, t->heap->collections);
  return gc_run(t, k, GC_CAUSE_EXPLICIT, 0);
}
