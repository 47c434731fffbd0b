/* The heap's malloc spaces (collector=mark_sweep): setup, the allocation
 * slow path that serves fh_alloc from the main malloc space (refilling
 * budgets, sweeping as it allocates, collecting), and the explicit jemalloc
 * tcaches that make allocation fast.
 *
 * Every fh_alloc of a mark-sweep heap leaves the inline bump path (threads
 * keep tlab_cursor == tlab_limit) for fh_alloc_slow, whose common case is
 * the budget path of heap/malloc_alloc.h; it comes here when the budget
 * runs out.  Each thread allocates through its own explicit tcache (created
 * on its first allocation).  A tcache holds free regions only, whose
 * allocation bits are clear, so it never hides an object from the sweeper;
 * compactions flush every tcache first anyway, because they reset the arena
 * (jemalloc requires flushed caches) and because a flushed cache cannot
 * hand out a region of the space that stopped being main. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "collectors/collector.h"
#include "heap/error.h"
#include "heap/heap.h"
#include "heap/malloc_alloc.h"
#include "heap/object.h"
#include "heap/sys.h"

int malloc_heap_init(fh_heap *h, uintptr_t main_begin, uintptr_t backup_begin, size_t capacity) {
  size_t limit = h->opt.heap_max; /* fh_set_heap_max moves it */
  if (malloc_space_init(&h->malloc[0], "main malloc space", main_begin, capacity, limit) < 0)
    return -1;
  if (malloc_space_init(&h->malloc[1], "backup malloc space", backup_begin, capacity, limit) < 0) {
    malloc_space_destroy(&h->malloc[0]);
    return -1;
  }
  h->malloc_main = 0;
  h->has_malloc_spaces = 1;
  h->gc_tcache = arena_tcache_create(); /* -1: the sweeper frees uncached */
  return 0;
}

void malloc_heap_destroy(fh_heap *h) {
  if (!h->has_malloc_spaces) return;
  arena_tcache_destroy(h->gc_tcache);
  h->gc_tcache = -1;
  malloc_space_destroy(&h->malloc[0]);
  malloc_space_destroy(&h->malloc[1]);
  h->has_malloc_spaces = 0;
}

static int thread_tcache(fh_thread *t) {
  if (!t->ms_tcache) {
    int id = arena_tcache_create();
    /* Without a tcache every allocation takes the arena lock: slower, but
     * correct, so a failure here is not an allocation failure. */
    t->ms_tcache = id < 0 ? -1 : id + 1;
  }
  return t->ms_tcache > 0 ? t->ms_tcache - 1 : -1;
}

/* Prepaid budgets.  A thread charges the main space's `used`, the trigger
 * counter and the allocation statistics in chunks, so an allocation that
 * fits its budget touches no shared counter: only jemalloc's tcache and the
 * allocation bit.  The unused rest goes back at every collection (so that
 * `used` is exact before a sweep or a compaction) and at detach. */
#define MS_BUDGET_CHUNK ((size_t)256 << 10)

/* ---- runs and holes ----
 *
 * mallocx with an arena and an explicit tcache never takes jemalloc's
 * inline fast path (~9 ns an allocation here), and batch_alloc, which
 * served small sizes 16 at a time, still cost 7.7 ns an allocation plus a
 * sized free per dead object at the sweep.  So small objects come from
 * runs instead (spaces/malloc_runs.c): a thread bumps through a hole of
 * its run, and when the hole is too short looks for the next one, then for
 * another run.  Sweep as you allocate: while the sweep after a collection
 * is pending, a thread that needs a run claims the next words of the dead
 * bitmap first and sweeps them itself (direct objects through its tcache,
 * runs by clearing bits), keeping the first run there with room: memory
 * just swept is reused while it is still in this CPU's cache.  Then the
 * lists that the sweeper fills, then a new run from jemalloc. */
#define MS_CLAIM_WORDS (MS_RUN_WORDS) /* a run's worth of the dead bitmap */
#define MS_CLAIMS 8                   /* claims before giving up on the sweep */

static uintptr_t acquire_run(malloc_space *m, int tc, int empty_first) {
  uintptr_t run = empty_first ? malloc_run_pop_empty(m) : 0;
  for (int i = 0; i < MS_CLAIMS && !run; i++)
    if (!malloc_space_sweep_step_adopt(m, MS_CLAIM_WORDS, tc, 0, &run)) break;
  if (!run) run = malloc_run_pop(m);
  if (!run) run = malloc_run_new(m);
  return run;
}

static void drop_pos(fh_thread *t, struct ms_runpos *r) {
  /* The hole's rest is free memory; the run is swept at the next sweep,
   * and its cover bits must be clear for the marking before it.  (A
   * thread only ever holds runs of the current main space: every
   * collection that could change it drops the runs first.) */
  if (r->run) malloc_run_clear_cover(heap_main_malloc(t->heap), r->run);
  *r = (struct ms_runpos){0, 0, 0, 0};
}

static void drop_run(fh_thread *t) {
  drop_pos(t, &t->ms_main);
  drop_pos(t, &t->ms_ovf);
}

/* The next hole of r's run that fits `bytes`, or of another run: a new or
 * empty run fits any small object, a partial one may have no hole long
 * enough (its room is counted in free granules): a few tries. */
static void *fill_from(fh_thread *t, malloc_space *m, struct ms_runpos *r, size_t bytes,
                       int empty_first) {
  for (int tries = 0; tries < 4; tries++) {
    if (r->run) {
      uintptr_t end = r->run + MS_RUN_BYTES, hole_end;
      uintptr_t p = malloc_run_hole(m, r->scan, end, bytes, &hole_end);
      if (p) {
        r->scan = hole_end;
        r->cur = p + bytes;
        r->end = hole_end;
        return (void *)p;
      }
      drop_pos(t, r);
    }
    uintptr_t run = acquire_run(m, t->ms_tcache > 0 ? t->ms_tcache - 1 : -1, empty_first);
    if (!run) break;
    r->run = r->scan = run;
  }
  return NULL;
}

/* Objects above this go to the overflow run when they miss the hole
 * (Immix's medium objects). */
#define MS_MEDIUM 128u

void *malloc_heap_next_hole(fh_thread *t, size_t bytes) {
  malloc_space *m = heap_main_malloc(t->heap);
  void *p;
  if (bytes > MS_MEDIUM) {
    /* Searching ms_main's run for a hole this long would skip the shorter
     * ones before it, lost to the small objects for the rest of the cycle
     * (mt-gcbench's heap then ran out at 89-93% of its objects' bytes). */
    struct ms_runpos *o = &t->ms_ovf;
    if (bytes <= o->end - o->cur) {
      o->cur += bytes;
      return (void *)(o->cur - bytes);
    }
    p = fill_from(t, m, o, bytes, 1);
  } else {
    p = fill_from(t, m, &t->ms_main, bytes, 0);
  }
  /* No run: one object straight from jemalloc, as for larger ones. */
  return p ? p : sys_mallocx(bytes, t->ms_flags);
}

static void thread_settle(fh_thread *t) {
  fh_heap *h = t->heap;
  if (t->ms_budget || t->ms_reserve) {
    atomic_fetch_sub_explicit(&heap_main_malloc(h)->used, t->ms_budget + t->ms_reserve,
                              memory_order_relaxed);
    t->ms_budget = 0;
    t->ms_reserve = 0;
  }
  if (t->ms_unposted) {
    atomic_fetch_add_explicit(&h->bytes_allocated, t->ms_unposted, memory_order_relaxed);
    t->ms_unposted = 0;
  }
}

/* Allocation bits.  Setting a bit with an atomic OR per allocation was a
 * fifth of GCBench's time (and worse with a concurrent sweeper clearing
 * bits in the same words), so a thread accumulates the bits of one bitmap
 * word and sets them with one atomic OR when it moves to another word:
 * consecutive allocations of a tcache come from the same slab, usually the
 * same 1 KiB.  While mutators run, only the concurrent sweep reads
 * allocation bits, and only those of objects that existed at the pause
 * (spaces/malloc_space.c: malloc_space_take_dead), which are never held
 * back; every collection publishes the held-back bits before it looks
 * (world_stop). */
void malloc_heap_publish_pending(fh_thread *t) {
  if (t->ms_pending_word)
    atomic_fetch_or_explicit(t->ms_pending_word, t->ms_pending_mask, memory_order_relaxed);
  t->ms_pending_word = NULL;
  t->ms_pending_mask = 0;
}

/* Release orders: a marker that finds the bit (acquire: the card it
 * cleared, collectors/concurrent_mark.c) reads the zeroed payload and the
 * header written before it. */
void malloc_heap_alloc_black(fh_thread *t, _Atomic uint64_t *word, uint64_t bit, size_t bytes) {
  malloc_heap_publish_pending(t);
  atomic_fetch_or_explicit(word, bit, memory_order_release);
  malloc_space *m = heap_main_malloc(t->heap);
  _Atomic uint64_t *mark = &m->mark_bits.words[word - t->ms_bits_words];
  if (!(atomic_fetch_or_explicit(mark, bit, memory_order_release) & bit))
    t->cm_black_bytes += bytes;
}

void heap_alloc_black_other(fh_heap *h, void *obj) {
  if (los_contains(&h->los, obj))
    bitmap_set(&h->los.marks, obj_start(obj));
  else if (space_contains(&h->non_moving.space, obj))
    bitmap_set(&h->non_moving.mark_bits, obj_start(obj));
}

int malloc_heap_settle_threads(fh_heap *h, int flush_tcaches) {
  fh_thread *t;
  int rc = 0;
  cds_list_for_each_entry(t, &h->threads, link) {
    malloc_heap_publish_pending(t);
    thread_settle(t);
    drop_run(t); /* the sweep or reset after this may free its run */
    if (flush_tcaches && t->ms_tcache > 0 && arena_tcache_flush(t->ms_tcache - 1) < 0) rc = -1;
  }
  return rc;
}

void malloc_heap_rebind_bits(fh_heap *h) {
  malloc_space *m = heap_main_malloc(h);
  fh_thread *t;
  cds_list_for_each_entry(t, &h->threads, link) {
    /* Settled before the swap: nothing held back points at the old words. */
    if (t->ms_bits_base == m->alloc_bits.base) t->ms_bits_words = m->alloc_bits.words;
  }
}

int malloc_heap_flush_tcaches(fh_heap *h) {
  if (malloc_heap_settle_threads(h, 1) < 0 || arena_tcache_flush(h->gc_tcache) < 0) {
    fh_error_prefix("cannot empty the jemalloc thread caches");
    return -1;
  }
  return 0;
}

void malloc_heap_thread_detach(fh_thread *t) {
  /* Called with gc_lock held, after the thread left the list: no collection
   * can be flushing this tcache now.  Destroying flushes it. */
  malloc_heap_publish_pending(t);
  if (t->heap->has_malloc_spaces) thread_settle(t);
  drop_run(t);
  if (t->ms_tcache > 0) arena_tcache_destroy(t->ms_tcache - 1);
  t->ms_tcache = 0;
}

void malloc_heap_thread_forget(fh_thread *t) {
  /* A fork child, for a thread that stayed in the parent: its objects'
   * held-back allocation bits become real (the world was stopped for the
   * fork, and the allocation path orders the bits after the header), its
   * prepaid bytes go back to `used`, its unposted bytes to the statistics.
   * Its explicit tcache is deliberately leaked, never flushed or destroyed:
   * the tcache is that thread's, unlocked, and a thread caught inside
   * jemalloc with it (a fork can catch one anywhere the world stop does not
   * cover) leaves it mid-update; flushing it is how the child used to crash.
   * What it caches are free regions (allocation bits clear), so leaking
   * loses at most one tcache's worth of space per absent thread per fork,
   * and nothing will ever use the id again.  Its run is dropped: the rest
   * of its hole is free memory, found again by the next sweep. */
  fh_heap *h = t->heap;
  malloc_heap_publish_pending(t);
  drop_run(t);
  if (h->has_malloc_spaces) {
    if (t->ms_budget || t->ms_reserve)
      atomic_fetch_sub_explicit(&heap_main_malloc(h)->used, t->ms_budget + t->ms_reserve,
                                memory_order_relaxed);
    if (t->ms_unposted)
      atomic_fetch_add_explicit(&h->bytes_allocated, t->ms_unposted, memory_order_relaxed);
    t->ms_budget = t->ms_reserve = t->ms_unposted = 0;
  }
  t->ms_tcache = 0;
}

/* Move the reserve into the budget.  1 when the budget then covers
 * `bytes`.  (The reserve used to come out a 4 KiB slice at a time, each
 * sweeping 4 KiB of the range first; mutators now sweep when they need a
 * run, heap/malloc_heap.c: acquire_run.) */
static int release_slice(fh_thread *t, size_t bytes, int tc) {
  (void)tc;
  t->ms_budget += t->ms_reserve;
  t->ms_reserve = 0;
  return bytes <= t->ms_budget;
}

/* Prepay at least `bytes` (a chunk when there is room for one) against the
 * space's limit and heap_max, into the reserve, and release the first
 * slice.  0, or -1 when a collection is due first (trigger reached, unless
 * ignore_trigger) or there is no room. */
static int prepay(fh_thread *t, size_t bytes, int ignore_trigger, int tc) {
  fh_heap *h = t->heap;
  malloc_space *m = heap_main_malloc(h);
  /* A space whose arena could not be recreated (a reset that failed) has
   * no arena: MALLOCX_ARENA of its zeroed index would be jemalloc's
   * default arena, outside the heap.  Refuse; the collection this leads to
   * revives the arena, or the allocation fails with its error. */
  if (FH__UNLIKELY(!m->arena.end)) return -1;
  if (!ignore_trigger &&
      atomic_load_explicit(&h->alloc_since_gc, memory_order_relaxed) >= h->gc_trigger)
    return -1;
  thread_settle(t);
  size_t nm = heap_nonmoving_used(h);
  size_t lim = heap_limit(h), cap = lim > nm ? lim - nm : 0;
  if (cap > m->limit) cap = m->limit;
  size_t old = atomic_load_explicit(&m->used, memory_order_relaxed), want;
  do {
    if (old > cap || cap - old < bytes) return -1;
    want = cap - old >= MS_BUDGET_CHUNK && bytes < MS_BUDGET_CHUNK ? MS_BUDGET_CHUNK : bytes;
  } while (!atomic_compare_exchange_weak_explicit(&m->used, &old, old + want,
                                                  memory_order_relaxed, memory_order_relaxed));
  t->ms_reserve = want; /* settled above: the budget is 0 */
  t->ms_flags = MALLOCX_ARENA(m->arena.index) |
                (tc < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE((unsigned)tc));
  t->ms_bits_base = m->alloc_bits.base;
  t->ms_bits_words = m->alloc_bits.words;
  atomic_fetch_add_explicit(&h->alloc_since_gc, want, memory_order_relaxed);
  release_slice(t, bytes, tc); /* want >= bytes: the budget covers it */
  return 0;
}

/* Did the last failure come from fragmentation (the space has the bytes in
 * total, but jemalloc found no room in the range)? */
static int failed_for_fragmentation(fh_thread *t, size_t bytes) {
  fh_heap *h = t->heap;
  malloc_space *m = heap_main_malloc(h);
  thread_settle(t);
  return atomic_load(&m->used) + bytes <= m->limit &&
         heap_used_bytes(h) + bytes <= heap_limit(h);
}

void *malloc_heap_alloc_slow(fh_thread *t, uint32_t type, size_t n) {
  size_t bytes = malloc_object_bytes(n);
  fh_heap *h = t->heap;
  int tc = thread_tcache(t);
  int purged = 0, purged_undue = 0, recovered = 0;
  unsigned oom_calls = 0;
  /* Attempt 0 honours the trigger; attempts 1 and 2 follow a collection
   * (a second one in case other threads filled the space meanwhile).  A
   * failure for fragmentation (the space's limit has room, jemalloc found
   * no extent in the range) then gets, in turn:
   *  - a purge of the arena: jemalloc keeps freed extents in its dirty
   *    cache uncoalesced (it merges them lazily, as they decay), so even an
   *    empty arena may hold its range in pieces too small for a large
   *    object; a purge merges them into one retained extent;
   *  - a homogeneous compaction (hspace_compact_on_oom=1; never refused
   *    for its rate limit, which governs background ones only), or else a
   *    mark-sweep that sweeps in the pause, after which an empty space's
   *    arena is reset (collectors/mark_sweep.c).  Either leaves an empty
   *    space with its whole range in one piece: any object up to the limit
   *    fits (spaces/arena.h sizes the range for it). */
  int critical = t->critical != 0; /* no collection possible: capacity only */
  /* A budget's refill is a safepoint: programs that poll rarely (or a
   * single-threaded one that never does) still let the concurrent
   * marker's remark pause run within a budget (256 KiB) of allocation. */
  if (FH__UNLIKELY(atomic_load_explicit(&t->fast.safepoint_requested, memory_order_relaxed)) &&
      !critical)
    thread_park_if_stopping(t);
  for (int attempt = 0;; attempt++) {
    uint64_t seen = h->collections;
    if (bytes <= t->ms_budget || (t->ms_reserve && release_slice(t, bytes, tc)) ||
        prepay(t, bytes, attempt > 0 || critical, tc) == 0) {
      void *obj = malloc_heap_alloc_budget(t, type, n, bytes);
      if (obj) return obj;
    }
    /* Due also when this allocation would cross the trigger: at a heap
     * limit that caps the trigger (heap_set_trigger), the last refill
     * before it finds less room than `bytes` and fails, but the collection
     * it needs is the triggered one (mt-gcbench at 2x: 18 of its 75
     * collections were called allocation failures for that). */
    int due = attempt == 0 && !critical &&
              atomic_load_explicit(&h->alloc_since_gc, memory_order_relaxed) + bytes >
                  h->gc_trigger;
    /* Finish the last sweep before asking for the next collection (which
     * would wait for it): freed memory may make the collection unneeded. */
    malloc_space *m = heap_main_malloc(h);
    if (atomic_load(&m->sweep_done) < m->sweep_total) {
      while (malloc_space_sweep_step(m, 256, tc, 0)) {
      }
      /* And the words the sweeper thread claimed last: the runs it sweeps
       * there reach the lists only when it is done (it never blocks while
       * sweeping, so this is short).  Retrying before that failed at
       * random, a collection for nothing. */
      while (atomic_load(&m->sweep_done) < m->sweep_total) sched_yield();
      if (!due) continue;
    }
    if (critical) {
      /* Sweeping (above) was the only way to make room. */
      if (attempt == 0) continue;
      /* A purge needs no collection either (see above). */
      if (!purged && failed_for_fragmentation(t, bytes)) {
        purged = 1;
        malloc_space_purge(m);
        continue;
      }
      return alloc_fail_critical(t, "fh_alloc", n);
    }
    /* Not due, yet no room: the limit has the bytes but jemalloc found no
     * extent for them (pages the last sweep freed, not merged yet: how far
     * jemalloc got depends on timing).  A purge merges them, as after a
     * collection below; collecting for it was an "allocation failure"
     * collection that came and went with the load
     * (test_trigger_is_deterministic: 1 run in 40 under load). */
    if (!due && !purged_undue && failed_for_fragmentation(t, bytes)) {
      purged_undue = 1;
      malloc_space_purge(m);
      continue;
    }
    if (attempt < 2) {
      gc_cause cause = due ? GC_CAUSE_ALLOC_TRIGGER : GC_CAUSE_ALLOC_FAILURE;
      if (gc_run(t, FH_COLLECT_DEFAULT, cause, seen) < 0) {
        fh_error_prefix("fh_alloc: collection failed");
        return NULL;
      }
      continue;
    }
    if (!failed_for_fragmentation(t, bytes)) {
      /* Out of room under heap_max: the embedder's handler may make some. */
      if (oom_retry(t, bytes, &oom_calls)) {
        attempt = 0;
        continue;
      }
      break;
    }
    if (!purged) {
      purged = 1;
      malloc_space_purge(m);
      continue;
    }
    if (!recovered) {
      recovered = 1;
      int compact = h->opt.hspace_compact_on_oom;
      /* A refused or failed compaction leaves the heap as it was; the
       * allocation then fails with the reason below. */
      if (gc_run(t, compact ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_MARK_SWEEP,
                 GC_CAUSE_ALLOC_FAILURE, seen) == 0)
        continue;
      fh_error_prefix(compact ? "fh_alloc: heap full, and homogeneous compaction did not help"
                              : "fh_alloc: heap full, and the collection failed");
      return NULL;
    }
    break;
  }
  malloc_space *m = heap_main_malloc(h);
  if (failed_for_fragmentation(t, bytes))
    fh_error_set("fh_alloc: no room for %zu bytes in the main malloc space although %zu of its "
                 "%zu bytes are free (fragmentation; hspace_compact_on_oom=%d)",
                 n, m->limit - atomic_load(&m->used), m->limit, h->opt.hspace_compact_on_oom);
  else
    fh_error_set("fh_alloc: heap full: %zu bytes requested, %zu of %zu bytes live after "
                 "collecting", n, heap_used_bytes(h), heap_limit(h));
  return NULL;
}
