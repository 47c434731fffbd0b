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
#include "heap/identity_hash.h"
#include "heap/large_objects.h"

typedef struct cc_cycle {
  cmark cm; /* first: the driver's cycle */
  mc_state *mc;
  mc_cmarker *mk;     /* NULL once the marking is over */
  uintptr_t boundary; /* the top at the initial pause */
  int populated;      /* the marker faulted the bitmaps in */
  /* A split remark (cc_remark): the top then (below it the marking is
   * over), whether it had pins (the forwarding below the cut is then left
   * to the flip), what was marked black (done: [boundary, cut)), and its
   * figures. */
  uintptr_t cut;
  int remark_pins;
  size_t black;
  size_t black_early;     /* of it, claims the marker marked (black_complete_claims) */
  size_t black_early_top; /* of those, the claims above the boundary */
  int claims_cover_top;   /* every claim above the boundary is recorded (unless lost) */
  int black_done;
  uint64_t t0, t1, remark_log_ns, remark_mark_ns, remark_black_ns, between_ns, between_black_ns;
  uintptr_t between_done; /* how far fwd_compute_below got */
  size_t vacate_room;     /* growers found when the marker last made room for their records */
} cc_cycle;

/* The collected space from which a remark leaves the forwarding to the
 * marker (a second, short pause then flips): fwd_compute takes about
 * 4 us a MiB of it here, below this less than the second pause's own
 * stopping and resuming (FH_CC_SPLIT_MIN: tests, measurements; 0 never).
 * The same for what mutators allocated while marking ran: marking it
 * black walks its headers, 0.2-0.3 ms a MiB (fhscheme's programs
 * allocated up to 110 MiB while the marker ran). */
#define CC_SPLIT_MIN_DEFAULT ((size_t)32 << 20)
#define CC_SPLIT_BLACK_MIN ((size_t)1 << 20)

static size_t split_min(void) {
  const char *e = getenv("FH_CC_SPLIT_MIN"); /* once a cycle, in its remark */
  return e ? (size_t)strtoull(e, NULL, 0) : CC_SPLIT_MIN_DEFAULT;
}

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

/* The claims recorded while marking ran (cc_keep_holes), detached. */
static bump_claim *take_claims(fh_heap *h, size_t *n) {
  return bump_space_take_claims(&h->bump[h->active], n);
}

/* The cycle ends without black marking: the claims are forgotten. */
static void drop_claims(fh_heap *h) {
  size_t n;
  free(take_claims(h, &n));
}

/* The marker, while marking runs: the claims their threads have left
 * (each claimed again since: its objects written, its tail a filler) are
 * marked black now rather than in the remark pause (fhscheme's threads:
 * 1.2-1.5 ms of its remark for the 8-10 MiB four threads allocated).  A
 * mutator may still hash an object there: the first hash logs it
 * (heap/identity_hash.c), and mc_cmark_visit sets its grows bit. */
static void black_complete_claims(cc_cycle *c) {
  bump_space *b = &c->mc->h->bump[c->mc->h->active];
  bump_hole got[16];
  for (size_t n; (n = bump_space_take_complete(b, got, 16)) > 0;)
    for (size_t i = 0; i < n; i++) {
      size_t k = mc_mark_black(&c->mc->t, got[i].lo, got[i].hi);
      c->black_early += k;
      if (got[i].lo >= c->boundary) c->black_early_top += k;
    }
}

/* The marker: room for the records of the growers it found (objects
 * hashed at their addresses: heap/identity_hash.h), made now rather than
 * in the remark, which records them. */
static void vacate_room(cc_cycle *c) {
  size_t g = atomic_load_explicit(&c->mc->t.grows_marked, memory_order_relaxed);
  if (g <= c->vacate_room) return;
  idhash_reserve_vacated(c->mc->h, g);
  c->vacate_room = g;
}

static void cc_mark(void *tracer, void **slot) {
  cc_cycle *c = tracer;
  mc_cmark_visit(c->mk, *slot);
}

static void cc_drain(void *tracer, gc_budget *b) {
  cc_cycle *c = tracer;
  /* The marker, first: the bitmaps below the boundary faulted in with one
   * call each (1/32 of the used space; 10 ms of a 256 MiB heap's initial
   * pause when done there).  Pages the roots' bits already touched stay
   * as they are. */
  if (!c->populated) {
    c->populated = 1;
    fwd_prepare_marking(&c->mc->t);
  }
  black_complete_claims(c);
  mc_cmark_drain(c->mk, b);
  black_complete_claims(c); /* those left meanwhile: the last drain ends the marking */
  vacate_room(c);
}

static size_t cc_step(void *tracer, size_t n) {
  cc_cycle *c = tracer;
  black_complete_claims(c);
  size_t done = mc_cmark_step(c->mk, n);
  vacate_room(c);
  return done;
}

static void cc_rescan_card(void *tracer, uintptr_t lo, uintptr_t hi) {
  (void)tracer, (void)lo, (void)hi; /* SATB: no card ranges */
}

static void forget_marks(fh_heap *h, mc_state *m) {
  fwd_reset(&m->t);
  bitmap_clear_all(&h->non_moving.mark_bits);
  if (h->los.space.ops) los_clear_marks(&h->los);
}

static void cycle_free(cc_cycle *c) {
  pthread_mutex_destroy(&c->cm.satb_lock);
  mc_cmark_abandon(c->mk);
  free(c);
}

static void cc_abandon(fh_heap *h, cmark *cm) {
  cc_cycle *c = (cc_cycle *)cm;
  drop_claims(h); /* marked again from scratch, if at all */
  (void)cmark_black_bytes(h, cm);
  cmark_satb_forget(h, cm);
  if (cm->remarked) {
    const uintptr_t *objs;
    size_t n;
    (void)idhash_window_close(h, &objs, &n);
  }
  forget_marks(h, c->mc);
  cycle_free(c);
}

/* An object of [lo, cut) hashed since the split remark has no hash word
 * in the forwarding computed meanwhile: mark it a grower.  Returns how many
 * were (then the forwarding is computed again). */
static size_t late_growers(fh_heap *h, cc_cycle *c) {
  fwd_tables *t = &c->mc->t;
  const uintptr_t *objs;
  size_t n, found = 0;
  if (idhash_window_close(h, &objs, &n)) {
    /* One was not recorded: every marked object below the cut. */
    for (uintptr_t a = bitmap_next_set(&t->mark, t->lo, c->cut); a;
         a = bitmap_next_set(&t->mark, a + FWD_WORD, c->cut))
      if (hdr_hash_grows(*(const uint64_t *)a) && !bitmap_test(&t->grows, a)) {
        fwd_mark_grows(t, a);
        found++;
      }
    return found;
  }
  for (size_t i = 0; i < n; i++) {
    uintptr_t a = obj_start((void *)objs[i]);
    if (a < t->lo || a >= c->cut || !bitmap_test(&t->mark, a)) continue;
    if (hdr_hash_grows(*(const uint64_t *)a) && !bitmap_test(&t->grows, a)) {
      fwd_mark_grows(t, a);
      found++;
    }
  }
  return found;
}

/* Whether to split this remark (cmark_ops.remark): a large enough space
 * (its forwarding) or enough allocated while marking (its black marking).
 * Not with conservative stack roots: the flip's stack words pin the
 * objects allocated in between, at the top of the space, and the space
 * ratcheted up behind them faster than it does unsplit (a 128 MiB heap
 * ran out with 1 MiB live; docs/architecture.md, "The split remark"). */
static int split_worth(const fh_heap *h, const cc_cycle *c) {
  size_t min = split_min();
  const fwd_tables *t = &c->mc->t;
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  size_t black_min = min < CC_SPLIT_BLACK_MIN ? min : CC_SPLIT_BLACK_MIN;
  return min && !c->cm.satb_failed && !t->young &&
         h->opt.stack_roots != FH_STACK_ROOTS_CONSERVATIVE &&
         (top - t->lo >= min || top - c->boundary >= black_min);
}

/* The remark's marking: the threads' logs, the roots again, drain and
 * weak processing, and (`black`) the objects allocated since the initial
 * pause marked black; a split remark leaves those to the marker.  World
 * stopped (TLABs retired, pins gathered), marker stopped. */
static void end_marking(fh_heap *h, cc_cycle *c, int black) {
  cmark *cm = &c->cm;
  mc_state *m = c->mc;
  c->t0 = heap_now_ns();
  fwd_tables *t = &m->t;
  /* What the mutators allocated while marking ran (the recorded claims,
   * in holes and above the top, cc_keep_holes) is black before the remark
   * traces: the logs and the roots lead there, and tracing those objects
   * marked again most of it (their referents are black too, or were
   * reachable when marking began: SATB), 2.7-3.4 ms of fhscheme's threads
   * remark pauses.  The marker marked the complete claims already. */
  /* Above the boundary the claims cover everything allocated unless one
   * went unrecorded: then the range is walked whole, as without them. */
  int cover = c->claims_cover_top && !h->bump[h->active].claims_lost;
  size_t in_claims = c->black_early, n;
  bump_claim *cl = black ? take_claims(h, &n) : NULL;
  for (size_t i = 0; cl && i < n; i++)
    if (cl[i].state != BUMP_CLAIM_MARKED && (cover || cl[i].lo < c->boundary))
      in_claims += mc_mark_black(t, cl[i].lo, cl[i].hi);
  free(cl);
  uint64_t t0 = heap_now_ns();
  (void)cmark_black_bytes(h, cm); /* a malloc-space figure: none here */
  cmark_satb_drain(cm, 1);
  h->cm_logged += cm->logged;
  uint64_t t1 = heap_now_ns();
  mc_cmark_finish(c->mk);
  c->mk = NULL;
  uint64_t t2 = heap_now_ns();
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  if (black) {
    /* (A walk re-marks the early claims above the boundary: counted once.) */
    size_t above = cover ? 0 : mc_mark_black(t, c->boundary, top);
    if (!cover) above -= above < c->black_early_top ? above : c->black_early_top;
    c->black = in_claims + above;
    c->black_done = 1;
  }
  c->cut = t->old_top = top;
  m->old_used = top - t->begin;
  c->t1 = heap_now_ns();
  c->remark_log_ns = t1 - t0, c->remark_mark_ns = t2 - t1;
  c->remark_black_ns = (t0 - c->t0) + (c->t1 - t2);
}

/* FH_MC_TRACE: where the remark pause (and a split one's flip) goes
 * (docs/architecture.md). */
static void trace_remark(const cc_cycle *c, uint64_t t4, uint64_t fwd, int split) {
  mc_state *m = c->mc; /* its tables may be cleared already (a slide ended in its pause) */
  uint64_t end = heap_now_ns(), compact = end - t4, ledger = m->forward_ns - fwd;
  const cc_large_set *ls = &m->large;
  /* The flip's parts, when it flipped: accounting and the uffd's
   * registration up to cc_large_flip, it, then the worker's start. */
  int timed = !m->slid && ls->at_flip_begin > ls->at_updated && ls->at_flip_end <= end;
  uint64_t f_reg = timed ? ls->at_flip_begin - ls->at_updated : 0;
  uint64_t f_start = timed ? end - ls->at_flip_end : 0;
  uint64_t known = ledger + m->mremap_ns + m->update_ns;
  if (split)
    fprintf(stderr,
            "faultheap cc remark (split): log %.3f mark %.3f sweep %.3f ms; after it: black "
            "%.3f (%zu KiB), forwarding below the cut %.3f ms (%s); flip pause: black, pins "
            "%.3f forward %.3f (fwd_compute %.3f) ",
            c->remark_log_ns / 1e6, c->remark_mark_ns / 1e6, m->sweep_ns / 1e6,
            c->between_black_ns / 1e6, (size_t)(c->cut - c->boundary) >> 10,
            (c->between_ns - c->between_black_ns) / 1e6,
            c->remark_pins                                  ? "left to the flip: pins"
            : c->between_done >= c->cut - FWD_RANGE_ALIGN ? "whole"
                                                            : "partial",
            (c->t1 - c->t0) / 1e6, (t4 - c->t1) / 1e6, m->fwd_compute_ns / 1e6);
  else
    fprintf(stderr,
            "faultheap cc remark: log %.3f mark %.3f black %.3f (%zu KiB) forward %.3f "
            "(sweep %.3f fwd_compute %.3f) ",
            c->remark_log_ns / 1e6, c->remark_mark_ns / 1e6, c->remark_black_ns / 1e6,
            (size_t)(c->cut - c->boundary) >> 10, (t4 - c->t1) / 1e6, m->sweep_ns / 1e6,
            m->fwd_compute_ns / 1e6);
  fprintf(stderr,
          "ledger %.3f mremap %.3f update %.3f flip %.3f "
          "(register %.3f of %.3f, large aside %.3f, pinned pages and worker start %.3f) ms (%s); "
          "marker %.1f ms wall %.1f ms CPU, %.0f MB per CPU-s\n",
          ledger / 1e6, m->mremap_ns / 1e6, m->update_ns / 1e6,
          (compact > known ? compact - known : 0) / 1e6, m->register_ns / 1e6, f_reg / 1e6,
          timed ? ls->last_flip_ns / 1e6 : 0.0, f_start / 1e6, m->slid ? "slid" : "flipped",
          c->cm.marker_ns / 1e6, c->cm.marker_cpu_ns / 1e6,
          c->cm.marker_cpu_ns
              ? (double)(m->live_bytes > c->black ? m->live_bytes - c->black : 0) / 1e6 /
                    (c->cm.marker_cpu_ns / 1e9)
              : 0.0);
}

/* After the forwarding: slide or flip, and the cycle's figures. */
static int compact(fh_heap *h, cc_cycle *c, uint64_t t4, int split) {
  mc_state *m = c->mc;
  uint64_t fwd = m->forward_ns;
  h->cm_marked_bytes += m->t.live_bytes;
  /* The next trigger from what marking found live, not from the objects
   * allocated while it ran: they are live for this cycle only (floating
   * garbage, mostly), and counted in the budget they grew the heap by a
   * trigger's worth per cycle whenever marking took longer than that much
   * allocation (GCBench with conservative roots: 221 MiB peak against 55).
   * mc_account reads it, before a flip starts the threads that read the
   * trigger. */
  m->black_bytes = c->black;
  m->cmarked = 1;
  int rc = mc_cc_compact(m);
  m->cmarked = 0;
  /* mc_gen_end counted this pause as a collection; a remark is not one
   * (the initial pause was): the generations stay valid. */
  m->gen.at = h->collections;
  if (getenv("FH_MC_TRACE")) trace_remark(c, t4, fwd, split);
  cycle_free(c);
  return rc;
}

/* A split remark (cmark_ops.remark), world stopped: marking ends here,
 * with the non-moving sweep.  Once the world runs, the marker marks black
 * what was allocated while it marked (below the cut) and computes the
 * forwarding below the cut (cc_between); the flip pause (cc_finish)
 * marks black what was allocated since, makes the pinned ranges and
 * computes the rest of the forwarding: the objects above the cut slide
 * as one more run of live words. */
static int cc_remark(fh_heap *h, cmark *cm) {
  cc_cycle *c = (cc_cycle *)cm;
  if (!split_worth(h, c)) return 0;
  end_marking(h, c, 0);
  mc_sweep_outside(c->mc);
  /* Pins now: the forwarding below the cut is computed without pinned
   * ranges only when there is none now (fh_pin is rare with precise
   * roots, and conservative ones do not split). */
  c->remark_pins = h->pins.gathered && h->pins.n;
  idhash_window_open(h);
  return 1;
}

/* Called again after each burst of paced work: the black marking is done
 * once, the forwarding goes on from its cursor. */
static void cc_between(void *tracer, gc_budget *b) {
  cc_cycle *c = tracer;
  fwd_tables *t = &c->mc->t;
  uint64_t t0 = heap_now_ns();
  if (!c->black_done) {
    /* Mutators allocate above the cut only (their TLABs were retired in
     * the remark): [boundary, cut) is parseable and stays so. */
    c->black = mc_mark_black(t, c->boundary, c->cut);
    c->black_done = 1;
    c->between_black_ns = heap_now_ns() - t0;
  }
  if (!c->remark_pins) c->between_done = fwd_compute_below(t, c->cut, b);
  c->between_ns += heap_now_ns() - t0;
}

/* The flip pause of a split remark, world stopped: black marking of what
 * was allocated since the cut (and below it, if the marker did not get
 * to it), the pinned ranges of this pause, then the forwarding completed,
 * or computed again from the floor when the marks below the cut changed
 * (an object hashed there since the remark, or pinned ranges the marker
 * computed without), then slide or flip. */
static int flip_after_split(fh_heap *h, cc_cycle *c) {
  mc_state *m = c->mc;
  fwd_tables *t = &m->t;
  uint64_t t1 = heap_now_ns();
  cmark_satb_forget(h, &c->cm); /* none since the remark: the barrier was off */
  if (!c->black_done) {
    c->black = mc_mark_black(t, c->boundary, c->cut);
    c->black_done = 1;
  }
  uintptr_t top = atomic_load(&h->bump[h->active].top);
  c->black += mc_mark_black(t, c->cut, top);
  t->old_top = top;
  m->old_used = top - t->begin;
  int redo = late_growers(h, c) > 0;
  if (mc_forward_pins(m, NULL) < 0) { /* the marks are forgotten */
    cycle_free(c);
    return -1;
  }
  if (t->nranges) redo = 1;
  if (redo && t->cur.started) {
    h->cm_split_redone++;
    fwd_compute_restart(t);
  }
  c->t1 = heap_now_ns(); /* the trace's "black, pins" of this pause: up to here */
  c->t0 = t1;
  mc_forward_finish(m, NULL, t1, heap_now_ns());
  return compact(h, c, heap_now_ns(), 1);
}

/* The remark, world stopped (TLABs retired, pins gathered), the marker
 * stopped; or the flip pause of a split one. */
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
  /* The cause that finishes the cycle, not the one that started it: an
   * allocation that failed wants the holes now (mc_cc_compact slides for
   * them, mc_gen_end hands them out). */
  m->gen.alloc_failure = cause == GC_CAUSE_ALLOC_FAILURE;
  if (cm->remarked) return flip_after_split(h, c);
  if (cm->satb_failed) {
    /* A log buffer could not be allocated: the log is incomplete, mark
     * again from scratch with the world stopped. */
    drop_claims(h); /* their objects are traced as any */
    cmark_satb_forget(h, cm);
    forget_marks(h, m);
    cycle_free(c);
    if (mc_prepare_forward(m) < 0) return -1;
    int rc = mc_cc_compact(m);
    m->gen.at = h->collections; /* as in compact() */
    return rc;
  }
  end_marking(h, c, 1);
  if (mc_forward_marked(m, NULL, c->t0) < 0) {
    cycle_free(c);
    return -1;
  }
  return compact(h, c, heap_now_ns(), 0);
}

/* The pause that began the marking, conservative stack roots: the holes
 * stay free for the mutators while marking runs.  The stacks pin one of
 * the newest objects at the top of the space at nearly every cycle; with
 * the holes withdrawn, everything allocated while marking ran went above
 * it, and the space's range grew by that much per cycle (fhscheme's
 * rewrite: 70 MiB for 0.7 MiB live, the remark's forwarding computed over
 * all of it).  Every claim while marking runs is recorded, in a hole or
 * above the top; the marker marks the complete ones black
 * (black_complete_claims), the remark the rest.  Not with precise
 * roots: their remark may split, after which what is allocated is marked
 * from the cut up only (their holes come from fh_pin, few and low). */
static int cc_keep_holes(fh_heap *h, cmark *cm, bump_hole *holes, size_t n, size_t bytes) {
#if defined(__x86_64__) || defined(__i386__)
  /* The holes lie below the boundary, in the marker's range: it leaves
   * the claims' objects alone by their cards' bits, set when the claim
   * is carved, before the mutator stores a reference to any object
   * there.  That order holds for the marker under x86's TSO; elsewhere it
   * could find the reference before the bit and read an object being
   * written, so the holes stay withdrawn while marking runs. */
  cc_cycle *c = (cc_cycle *)cm;
  if (cm->remarked || !c->mk || h->opt.stack_roots != FH_STACK_ROOTS_CONSERVATIVE) return 0;
  /* A claim that does not end its hole is a whole TLAB (heap/alloc.c).
   * Above the top: a TLAB or a large object (over a quarter of one) per
   * claim, for twice the trigger's allocation, the remark's due at one
   * (more goes unrecorded: claims_lost). */
  size_t large = h->opt.tlab_size / 4;
  size_t cap = n + bytes / h->opt.tlab_size + 1 + 2 * (h->gc_trigger / large) + 64;
  bump_space *b = &h->bump[h->active];
  if (bump_space_set_holes_recorded(b, holes, n, cap) == 0) {
    mc_cmark_skip_black(c->mk, b);
    c->claims_cover_top = 1;
  }
  return 1;
#else
  (void)h, (void)cm, (void)holes, (void)n, (void)bytes;
  return 0;
#endif
}

static const cmark_ops cc_cmark_ops = {cc_mark,   cc_drain,   cc_step,  cc_rescan_card, cc_finish,
                                       cc_abandon, cc_remark, cc_between, cc_keep_holes};

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
