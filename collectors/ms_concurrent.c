/* Mark-sweep's concurrent cycle: the marker of collectors/mark.c run by
 * the concurrent-marking driver.
 *
 * Initial pause: the cards of the main malloc space and the non-moving
 * space are cleared (between cycles nothing reads them on a mark-sweep
 * heap: they only serve the concurrent marker), the roots are pushed,
 * black allocation starts.  Concurrently: drain, pre-clean the main
 * space's cards.  Remark: the roots again, the main space's dirty cards,
 * the marked non-moving and large objects whose card is dirty, drain,
 * weak processing, then mark_sweep_reclaim (the sweep runs after the
 * pause, as before).
 *
 * Cards of the large-object space are not cleared: they say "written
 * since its last settle" (heap/large_objects.h: quiet objects) and the
 * settle after each sweep clears them; the remark rescans the marked
 * large objects whose card is dirty.  The image and zygote spaces' cards
 * are their remembered sets: never cleared here, scanned at both pauses
 * (roots_visit). */
#include "collectors/ms_concurrent.h"

#include <stdio.h>
#include <stdlib.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "heap/barrier.h"
#include "heap/error.h"

typedef struct ms_cycle {
  cmark cm;
  marker m;
} ms_cycle;

int ms_concurrent_usable(fh_heap *h, gc_cause cause) {
  const char *why = NULL;
  if (!h->opt.concurrent_mark)
    why = "concurrent_mark=0";
  else if (h->collector != &mark_sweep_collector)
    why = "only collector=mark_sweep marks concurrently";
  else if (h->opt.gc_stress)
    why = "gc_stress collections stop the world";
  h->cm_off_why = why;
  return !why && h->has_malloc_spaces && cause == GC_CAUSE_ALLOC_TRIGGER &&
         !bump_space_used(&h->bump[h->active]);
}

static void ms_drain(void *tracer, const _Atomic int *stop) {
  ms_cycle *c = tracer;
  marker_drain_until(&c->m, stop);
}

static size_t ms_step(void *tracer, size_t n) {
  ms_cycle *c = tracer;
  return marker_step(&c->m, n);
}

/* Marked objects of the main space whose payload pointer lies in [lo, hi)
 * (fh_write_ref dirties the card of the object's payload pointer): their
 * starts lie in [lo - 8, hi - 8), and being 16-byte aligned, in
 * [lo, hi - 8).  Allocation bits are read with acquire: a bit set by a
 * black allocation (release) publishes the object's header and zeroed
 * payload. */
static void ms_rescan_card(void *tracer, uintptr_t lo, uintptr_t hi) {
  ms_cycle *c = tracer;
  malloc_space *ms = c->m.ms;
  uintptr_t b = lo, e = hi - FH_HEADER_BYTES;
  if (b < ms->space.begin) b = ms->space.begin;
  for (uintptr_t a = b; a < e;) {
    size_t i = bitmap_index(&ms->alloc_bits, a);
    uint64_t w = atomic_load_explicit(&ms->alloc_bits.words[i >> 6], memory_order_acquire);
    w >>= i & 63;
    if (!w) {
      a += (64 - (i & 63)) << MS_GRANULE_SHIFT;
      continue;
    }
    a += (uintptr_t)__builtin_ctzll(w) << MS_GRANULE_SHIFT;
    if (a >= e) break;
    if (bitmap_test(&ms->mark_bits, a)) marker_rescan(&c->m, obj_from_start(a));
    a += MS_GRANULE;
  }
}

typedef struct dirty_walk {
  fh_heap *h;
  marker *m;
  size_t n;
} dirty_walk;

static void rescan_if_dirty(void *obj, void *ctx) {
  dirty_walk *d = ctx;
  if (atomic_load_explicit((_Atomic uint8_t *)card_for(d->h, (uintptr_t)obj), memory_order_relaxed) &&
      marker_is_marked(d->m, obj)) {
    marker_rescan(d->m, obj);
    d->n++;
  }
}

/* The remark, world stopped, the marker stopped. */
static int ms_finish(fh_heap *h, cmark *cm, gc_cause cause) {
  ms_cycle *c = (ms_cycle *)cm;
  marker *m = &c->m;
  /* Threads' runs dropped, budgets settled (their black objects' bits are
   * all set: a black allocation holds none back). */
  uint64_t t0 = heap_now_ns();
  malloc_heap_settle_threads(h, 0);
  size_t black = cmark_black_bytes(h, cm);
  marker_mark_roots(m);
  uint64_t t1 = heap_now_ns();
  size_t cards = cmark_preclean(cm);
  uint64_t t2 = heap_now_ns();
  dirty_walk d = {h, m, 0};
  h->non_moving.space.ops->walk(&h->non_moving.space, rescan_if_dirty, &d);
  if (h->los.space.ops) los_walk_marked(&h->los, rescan_if_dirty, &d);
  h->cm_cards_remarked += cards + d.n;
  int bad = marker_finish(m) < 0;
  uint64_t t3 = heap_now_ns();
  if (getenv("FH_CM_DEBUG"))
    fprintf(stderr, "remark: roots %.3f cards %zu %.3f drain+weak %.3f ms; marker %.1f ms rounds %zu "
            "precleaned %zu done %d black %zu MiB\n", (t1 - t0) / 1e6, cards, (t2 - t1) / 1e6,
            (t3 - t2) / 1e6, cm->marker_ns / 1e6, cm->rounds, cm->precleaned,
            (int)atomic_load(&cm->marker_done), black >> 20);
  if (bad) { /* only a marker with on_scan fails */
    marker_destroy(m);
    free(c);
    return -1;
  }
  size_t live = m->ms_live + (m->recounted ? 0 : black);
  h->cm_marked_bytes += m->ms_live;
  int rc = mark_sweep_reclaim(h, m, cause, live, 1);
  free(c);
  return rc;
}

static void ms_abandon(fh_heap *h, cmark *cm) {
  ms_cycle *c = (ms_cycle *)cm;
  malloc_heap_settle_threads(h, 0);
  (void)cmark_black_bytes(h, cm); /* forget them */
  malloc_space *ms = heap_main_malloc(h);
  uintptr_t end = malloc_space_frontier(ms);
  if (end > ms->space.begin) bitmap_clear_range(&ms->mark_bits, ms->space.begin, end);
  bitmap_clear_range(&h->non_moving.mark_bits, h->non_moving.space.begin, h->non_moving.space.end);
  if (h->los.space.ops) los_clear_marks(&h->los);
  marker_destroy(&c->m);
  free(c);
}

static const cmark_ops ms_cmark_ops = {ms_drain, ms_step, ms_rescan_card, ms_finish, ms_abandon};

int ms_concurrent_begin(fh_heap *h, gc_cause cause) {
  ms_cycle *c = calloc(1, sizeof *c);
  if (!c) return 1;
  if (marker_init(&c->m, h) < 0) {
    free(c);
    return 1;
  }
  c->m.concurrent = 1;
  malloc_space *ms = heap_main_malloc(h);
  uintptr_t end = malloc_space_frontier(ms);
  if (end > ms->space.begin) cards_clear_range(h, ms->space.begin, end);
  cards_clear_range(h, h->non_moving.space.begin, h->non_moving.space.end);
  marker_start(&c->m);
  marker_mark_roots(&c->m);
  c->cm.ops = &ms_cmark_ops;
  c->cm.collector = &mark_sweep_collector;
  c->cm.tracer = c;
  c->cm.lo[0] = ms->space.begin;
  c->cm.hi[0] = 0; /* the frontier, as it grows */
  c->cm.nranges = 1;
  if (cmark_begin(h, &c->cm) < 0) return cmark_complete(h, cause);
  return 0;
}
