/* concurrent_compact's concurrent marking (issue 16): mc_mark.c's tracer
 * run by the concurrent-marking driver (collectors/concurrent_mark.h), on
 * ART CMC's plan (MarkingPhase / MarkingPause, black_allocations_begin_).
 *
 * Initial pause (a triggered full cycle): the tables are set up below the
 * current top, the boundary; the roots are pushed; black allocation and
 * the SATB barrier start.  Black allocation in the moving space is the
 * boundary itself: every object above it (allocated while marking runs)
 * is live for the cycle, so the inline fh_alloc is unchanged; large and
 * non-moving objects get their mark bit at allocation (heap_alloc_black_other).
 * Concurrently: the marker drains, then marks what the barrier logged.
 * Remark (world stopped): the threads' partial logs, the roots again,
 * drain with overflow recovery, weak processing, then every object in
 * [boundary, top) is marked live (mc_mark_black) and the cycle goes on as
 * a stop-the-world one does after marking: pinned ranges, the non-moving
 * sweep, forwarding, then slide or flip (mc_cc_compact).
 *
 * Cards are not touched by marking: they stay the remembered set of
 * generations and of the image and zygote spaces.  A young collection
 * requested while marking runs is a triggered collection, which the driver
 * turns into this cycle's remark (the full collection). */
#include <stdio.h>
#include <stdlib.h>

#include "collectors/concurrent_mark.h"
#include "collectors/mc.h"
#include "heap/large_objects.h"

typedef struct cc_cycle {
  cmark cm; /* first: the driver's cycle */
  mc_state *mc;
  mc_cmarker *mk;
  uintptr_t boundary; /* the top at the initial pause */
  int populated;      /* the marker faulted the bitmaps in */
} cc_cycle;

int cc_concurrent_usable(fh_heap *h, gc_cause cause) {
  const char *why = NULL;
  if (!h->opt.concurrent_mark)
    why = "concurrent_mark=0";
  else if (h->opt.gc_stress)
    why = "gc_stress collections stop the world";
  else if (h->collector != &concurrent_compact_collector)
    why = "the stop-the-world fallback of concurrent_compact marks in the pause";
  h->cm_off_why = why;
  return !why && cause == GC_CAUSE_ALLOC_TRIGGER;
}

static void cc_mark(void *tracer, void **slot) {
  cc_cycle *c = tracer;
  mc_cmark_visit(c->mk, *slot);
}

static void cc_drain(void *tracer, const _Atomic int *stop) {
  cc_cycle *c = tracer;
  /* The marker, first: the bitmaps below the boundary faulted in with one
   * call each (1/32 of the used space; 10 ms of a 256 MiB heap's initial
   * pause when done there).  Pages the roots' bits already touched stay
   * as they are. */
  if (!c->populated) {
    c->populated = 1;
    fwd_prepare_marking(&c->mc->t);
  }
  mc_cmark_drain(c->mk, stop);
}

static size_t cc_step(void *tracer, size_t n) {
  cc_cycle *c = tracer;
  return mc_cmark_step(c->mk, n);
}

static void cc_rescan_card(void *tracer, uintptr_t lo, uintptr_t hi) {
  (void)tracer, (void)lo, (void)hi; /* SATB: no card ranges */
}

static void forget_marks(fh_heap *h, mc_state *m) {
  fwd_reset(&m->t);
  bitmap_clear_all(&h->non_moving.mark_bits);
  if (h->los.space.ops) los_clear_marks(&h->los);
}

static void cc_abandon(fh_heap *h, cmark *cm) {
  cc_cycle *c = (cc_cycle *)cm;
  (void)cmark_black_bytes(h, cm);
  cmark_satb_forget(h, cm);
  pthread_mutex_destroy(&cm->satb_lock);
  mc_cmark_abandon(c->mk);
  forget_marks(h, c->mc);
  free(c);
}

/* The remark, world stopped (TLABs retired, pins gathered), the marker
 * stopped. */
static int cc_finish(fh_heap *h, cmark *cm, gc_cause cause) {
  cc_cycle *c = (cc_cycle *)cm;
  mc_state *m = c->mc;
  if (cause == GC_CAUSE_EXPLICIT) {
    /* Another collection follows in this pause (an explicit one, or one
     * of another kind): it marks from scratch anyway. */
    h->cm_abandoned++;
    cc_abandon(h, cm);
    return 0;
  }
  uint64_t t0 = heap_now_ns();
  (void)cmark_black_bytes(h, cm); /* a malloc-space figure: none here */
  cmark_satb_drain(cm, 1);
  h->cm_logged += cm->logged;
  int failed = cm->satb_failed;
  pthread_mutex_destroy(&cm->satb_lock);
  uintptr_t boundary = c->boundary;
  mc_cmarker *mk = c->mk;
  uint64_t marker_cpu = cm->marker_cpu_ns, marker_wall = cm->marker_ns;
  free(c);
  if (failed) {
    /* A log buffer could not be allocated: the log is incomplete, mark
     * again from scratch with the world stopped. */
    mc_cmark_abandon(mk);
    forget_marks(h, m);
    if (mc_prepare_forward(m) < 0) return -1;
    int rc = mc_cc_compact(m);
    m->gen.at = h->collections; /* as below */
    return rc;
  }
  uint64_t t1 = heap_now_ns();
  mc_cmark_finish(mk);
  uint64_t t2 = heap_now_ns();
  fwd_tables *t = &m->t;
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  size_t black = mc_mark_black(t, boundary, top);
  t->old_top = top;
  m->old_used = top - t->begin;
  uint64_t t3 = heap_now_ns();
  if (mc_forward_marked(m, NULL, t0) < 0) return -1;
  h->cm_marked_bytes += t->live_bytes;
  uint64_t t4 = heap_now_ns(), fwd = m->forward_ns;
  /* The next trigger from what marking found live, not from the objects
   * allocated while it ran: they are live for this cycle only (floating
   * garbage, mostly), and counted in the budget they grew the heap by a
   * trigger's worth per cycle whenever marking took longer than that much
   * allocation (GCBench with conservative roots: 221 MiB peak against 55).
   * mc_account reads it, before a flip starts the threads that read the
   * trigger. */
  m->black_bytes = black;
  int rc = mc_cc_compact(m);
  /* mc_gen_end counted this pause as a collection; a remark is not one
   * (the initial pause was): the generations stay valid. */
  m->gen.at = h->collections;
  /* FH_MC_TRACE: where the remark pause goes (docs/architecture.md). */
  if (getenv("FH_MC_TRACE")) {
    uint64_t end = heap_now_ns(), compact = end - t4, ledger = m->forward_ns - fwd;
    const cc_large_set *ls = &m->large;
    /* The flip's parts, when it flipped: accounting and the uffd's
     * registration up to cc_large_flip, it, then the worker's start. */
    int timed = !m->slid && ls->at_flip_begin > ls->at_updated && ls->at_flip_end <= end;
    uint64_t f_reg = timed ? ls->at_flip_begin - ls->at_updated : 0;
    uint64_t f_start = timed ? end - ls->at_flip_end : 0;
    uint64_t known = ledger + m->mremap_ns + m->update_ns;
    fprintf(stderr,
            "faultheap cc remark: log %.3f mark %.3f black %.3f (%zu KiB) forward %.3f "
            "(sweep %.3f fwd_compute %.3f) ledger %.3f mremap %.3f update %.3f flip %.3f "
            "(register %.3f of %.3f, large aside %.3f, pinned pages and worker start %.3f) ms (%s); marker "
            "%.1f ms wall %.1f ms CPU, "
            "%.0f MB per CPU-s\n",
            (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6, (size_t)(top - boundary) >> 10,
            (t4 - t3) / 1e6, m->sweep_ns / 1e6, m->fwd_compute_ns / 1e6, ledger / 1e6,
            m->mremap_ns / 1e6, m->update_ns / 1e6, (compact > known ? compact - known : 0) / 1e6,
            m->register_ns / 1e6, f_reg / 1e6, timed ? ls->last_flip_ns / 1e6 : 0.0,
            f_start / 1e6,
            m->slid ? "slid" : "flipped",
            marker_wall / 1e6, marker_cpu / 1e6,
            marker_cpu ? (double)(t->live_bytes - black) / 1e6 / (marker_cpu / 1e9) : 0.0);
  }
  return rc;
}

static const cmark_ops cc_cmark_ops = {cc_mark, cc_drain, cc_step, cc_rescan_card, cc_finish,
                                       cc_abandon};

int cc_concurrent_begin(mc_state *m) {
  fh_heap *h = m->h;
  cc_cycle *c = calloc(1, sizeof *c);
  if (!c) return 1;
  mc_forward_setup(m, 0);
  c->mc = m;
  c->boundary = m->t.old_top;
  c->mk = mc_cmark_begin(h, &m->t);
  if (!c->mk) {
    free(c);
    return 1; /* the caller marks in the pause (its setup is the same) */
  }
  c->cm.ops = &cc_cmark_ops;
  c->cm.collector = &concurrent_compact_collector;
  c->cm.tracer = c;
  c->cm.nranges = 0; /* SATB: no card pre-cleaning */
  h->gc_how = "concurrent marking begun (roots)";
  return cmark_begin(h, &c->cm);
}
