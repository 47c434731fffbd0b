/* Mark-sweep's concurrent cycle: the marker of collectors/mark.c run by
 * the concurrent-marking driver.
 *
 * Initial pause: the roots are pushed, black allocation and the SATB
 * barrier start.  Concurrently: drain, then mark what mutators logged
 * (every reference they overwrite or read from an ephemeron: the snapshot
 * at the beginning).  Remark: the rest of the log (each thread's partial
 * buffer), the roots again (objects reachable only from roots that were
 * read through a weak path, conservative words), drain, weak processing,
 * then mark_sweep_reclaim (the sweep runs after the pause, as before).
 *
 * No card is cleared or read for the collected spaces: the log bounds the
 * remark instead (docs/architecture.md says why).  The image and zygote
 * spaces' cards are their remembered sets, scanned at both pauses by
 * roots_visit, never cleared here; large objects' cards keep their
 * meaning for the quiet-object settle. */
#include "collectors/ms_concurrent.h"

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

static void ms_drain(void *tracer, gc_budget *b) {
  ms_cycle *c = tracer;
  marker_drain_until(&c->m, b);
  mark_stack_trim(&c->m.stack); /* when empty: not in the remark pause */
}

static size_t ms_step(void *tracer, size_t n) {
  ms_cycle *c = tracer;
  return marker_step(&c->m, n);
}

static void ms_mark(void *tracer, void **slot) {
  ms_cycle *c = tracer;
  marker_visit(slot, &c->m);
}

static void ms_rescan_card(void *tracer, uintptr_t lo, uintptr_t hi) {
  (void)tracer, (void)lo, (void)hi; /* no card ranges (nranges 0) */
}

/* The remark, world stopped, the marker stopped. */
static int ms_finish(fh_heap *h, cmark *cm, gc_cause cause) {
  ms_cycle *c = (ms_cycle *)cm;
  marker *m = &c->m;
  /* Threads' runs dropped, budgets settled (their black objects' bits are
   * all set: a black allocation holds none back). */
  malloc_heap_settle_threads(h, 0);
  size_t black = cmark_black_bytes(h, cm);
  int failed = cm->satb_failed;
  cmark_satb_drain(cm, 1);
  marker_mark_roots(m);
  int bad = marker_finish(m) < 0;
  h->cm_logged += cm->logged;
  pthread_mutex_destroy(&cm->satb_lock);
  size_t live = m->ms_live + (m->recounted ? 0 : black);
  h->cm_marked_bytes += m->ms_live;
  if (bad || failed) {
    /* The log is incomplete (no memory for a buffer): mark again, world
     * stopped, from scratch; objects allocated meanwhile are then only as
     * live as they are reachable. */
    marker_destroy(m);
    free(c);
    malloc_space *ms = heap_main_malloc(h);
    uintptr_t end = malloc_space_frontier(ms);
    if (end > ms->space.begin) bitmap_clear_range(&ms->mark_bits, ms->space.begin, end);
    bitmap_clear_range(&h->non_moving.mark_bits, h->non_moving.space.begin,
                       h->non_moving.space.end);
    if (h->los.space.ops) los_clear_marks(&h->los);
    marker fresh;
    if (marker_init(&fresh, h) < 0) return -1;
    fresh.concurrent = 1; /* leave the runs' cover bits to the sweep */
    marker_run(&fresh);
    return mark_sweep_reclaim(h, &fresh, cause, fresh.ms_live, 1);
  }
  h->ms_sweeper_deferred = 1;
  int rc = mark_sweep_reclaim(h, m, cause, live, 1);
  h->ms_sweeper_deferred = 0;
  free(c);
  return rc;
}

static void ms_abandon(fh_heap *h, cmark *cm) {
  ms_cycle *c = (ms_cycle *)cm;
  malloc_heap_settle_threads(h, 0);
  (void)cmark_black_bytes(h, cm); /* forget them */
  cmark_satb_forget(h, cm);
  pthread_mutex_destroy(&cm->satb_lock);
  malloc_space *ms = heap_main_malloc(h);
  uintptr_t end = malloc_space_frontier(ms);
  if (end > ms->space.begin) bitmap_clear_range(&ms->mark_bits, ms->space.begin, end);
  bitmap_clear_range(&h->non_moving.mark_bits, h->non_moving.space.begin, h->non_moving.space.end);
  if (h->los.space.ops) los_clear_marks(&h->los);
  marker_destroy(&c->m);
  free(c);
}

static const cmark_ops ms_cmark_ops = {ms_mark, ms_drain, ms_step, ms_rescan_card, ms_finish,
                                       ms_abandon, NULL, NULL, NULL};

int ms_concurrent_begin(fh_heap *h, gc_cause cause) {
  ms_cycle *c = calloc(1, sizeof *c);
  if (!c) return 1;
  if (marker_init(&c->m, h) < 0) {
    free(c);
    return 1;
  }
  c->m.concurrent = 1;
  marker_start(&c->m);
  marker_mark_roots(&c->m);
  c->cm.ops = &ms_cmark_ops;
  c->cm.collector = &mark_sweep_collector;
  c->cm.tracer = c;
  c->cm.nranges = 0; /* SATB: no card pre-cleaning */
  if (cmark_begin(h, &c->cm) < 0) return cmark_complete(h, cause);
  return 0;
}
