/* The holes a cycle with pinned objects leaves below the new top, handed
 * to the allocator (spaces/bump_space.h: bump_space_set_holes) so that
 * they fill before the space grows: the gaps below the pinned ranges and
 * the dead words inside them (collectors/forwarding.h). */
#include <stdlib.h>

#include "collectors/mc.h"
#include "spaces/reserve.h"

/* Free stretches a cycle with pinned ranges leaves below its new top, in
 * ascending order: each range's gap below it (one hole per gap filler,
 * cut every GiB: forwarding.h), then the dead words inside the range (its
 * fillers, fwd_span), which the pins' neighbours left.  Calls visit for
 * those of at least MC_HOLE_MIN bytes that start at or above floor (the
 * generations' hole floor, mc_gen.h: below it they stay fillers). */
static void each_hole(const fwd_tables *t, uintptr_t floor,
                      void (*visit)(uintptr_t, uintptr_t, void *), void *ctx) {
  size_t f = 0;
  for (size_t r = 0; r < t->nranges; r++) {
    for (uintptr_t a = t->ranges[r].gap_lo, lo = t->ranges[r].lo, e; a < lo; a = e) {
      e = fwd_gap_filler_end(t, a, lo);
      if (e - a >= MC_HOLE_MIN && a >= floor) visit(a, e, ctx);
    }
    for (; f < t->nfills && t->fills[f].lo < t->ranges[r].hi; f++)
      if (t->fills[f].hi - t->fills[f].lo >= MC_HOLE_MIN && t->fills[f].lo >= floor)
        visit(t->fills[f].lo, t->fills[f].hi, ctx);
  }
}

static void count_hole_bytes(uintptr_t lo, uintptr_t hi, void *ctx) { *(size_t *)ctx += hi - lo; }

/* Asked twice or more per cycle (the slide's kept window, the prefault
 * plan) and a walk over thousands of holes with 1% of small objects
 * pinned: counted once (the tables do not change after fwd_compute). */
size_t mc_hole_bytes(mc_state *m) {
  if (m->hole_bytes == SIZE_MAX) {
    size_t n = 0;
    each_hole(&m->t, m->gen.hole_floor, count_hole_bytes, &n);
    m->hole_bytes = n;
  }
  return m->hole_bytes;
}

typedef struct hole_list {
  bump_hole *out;
  size_t n, max;
} hole_list;

static void add_hole(uintptr_t lo, uintptr_t hi, void *ctx) {
  hole_list *l = ctx;
  if (l->n < l->max) l->out[l->n] = (bump_hole){lo, hi};
  l->n++;
}

size_t mc_holes(const mc_state *m, bump_hole *out, size_t max) {
  hole_list l = {out, 0, max};
  each_hole(&m->t, m->gen.hole_floor, add_hole, &l);
  return l.n;
}

/* A slide's gaps below the hole floor (mc_gen.h: stack_roots=conservative,
 * the old generation's end) are not handed out: objects allocated there
 * would be old from birth.  Their whole pages go back now (each gap
 * filler keeps its header: walks of the old generation pass over it), so
 * they cost address range until the next full collection lays the space
 * out again, not memory.  A flip never built its gaps' blank pages. */
static void discard_stranded(const mc_state *m) {
  const fwd_tables *t = &m->t;
  uintptr_t floor = m->gen.hole_floor;
  for (size_t r = 0; r < t->nranges && t->ranges[r].gap_lo < floor; r++)
    for (uintptr_t a = t->ranges[r].gap_lo, lo = t->ranges[r].lo, e; a < lo && a < floor; a = e) {
      e = fwd_gap_filler_end(t, a, lo);
      uintptr_t plo = align_up(a + FH_HEADER_BYTES, FH_PAGE), phi = align_down(e, FH_PAGE);
      if (phi > plo) reserve_discard(plo, phi - plo); /* zeroes by hand if madvise fails */
    }
}

/* After a slide the holes' pages are resident (they held the objects that
 * died there), and refills take the holes in address order: those past
 * the allocation expected before the next collection (hole_window, as
 * the pages kept above the top: mc_publish.c) would stay resident unused.
 * With conservative roots a stack word pins one of the newest objects
 * near the top of a mostly dead space: fhscheme's destruct slid 1.9 MiB
 * of live data under an 8 MiB gap with a 3 MiB window, and its peak
 * resident memory was twice Boehm GC's.  Their whole pages go back (each
 * hole keeps its filler's header); a refill that gets that far faults
 * them in again as it would above the top.  A slack of an eighth of the
 * window covers TLAB tails and the holes a refill skips (smaller than the
 * object it is for).  After full cycles only: a young cycle keeps its window's pages
 * as it keeps those above the top (mc_publish.c), and its holes shift
 * from one cycle to the next, so pages handed back past one cycle's
 * window fell inside the next one's: fhscheme's rewrite, holes about
 * twice its 0.5-1.4 MiB windows, faulted 2,600 pages back in (2.7x its
 * page faults) for no smaller peak.  After a flip the holes were built
 * where they hold fillers only (gaps are blank: never built). */
static void discard_unneeded_holes(const mc_state *m, const bump_hole *hs, size_t n) {
  size_t keep = m->hole_window + m->hole_window / 8, seen = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = hs[i].hi - hs[i].lo;
    if (seen + len > keep) {
      uintptr_t from = hs[i].lo + (seen < keep ? keep - seen : 0);
      if (from < hs[i].lo + FH_HEADER_BYTES) from = hs[i].lo + FH_HEADER_BYTES;
      uintptr_t plo = align_up(from, FH_PAGE), phi = align_down(hs[i].hi, FH_PAGE);
      if (phi > plo) reserve_discard(plo, phi - plo); /* zeroes by hand if madvise fails */
    }
    seen += len;
  }
}

void mc_publish_holes(mc_state *m) {
  const fwd_tables *t = &m->t;
  if (!t->nranges) return;
  if (m->slid && m->gen.hole_floor > t->begin) discard_stranded(m);
  /* At most a hole per filler: per range, its fillers and its gap's (one
   * per GiB boundary the gap crosses, and one more). */
  size_t n = t->nranges * 2 + t->nfills + (t->new_top - t->begin) / FWD_GAP_FILLER;
  bump_hole *hs = malloc(n * sizeof *hs);
  if (!hs) return; /* no reuse: harmless */
  /* Generations (mc_gen.h) with precise roots: objects allocated into a
   * hole below the old generation's end are old from birth, as large
   * objects are: found on their cards like any old object (walks pass
   * through the hole's objects by their headers), collected by full
   * collections only.  With conservative ones the hole floor keeps them
   * out of the old generation (mc_gen_end). */
  size_t got = mc_holes(m, hs, n);
  if (got > n) got = n;
  if (m->slid && !m->gen.young) discard_unneeded_holes(m, hs, got);
  bump_space_set_holes(&m->h->bump[m->h->active], hs, got);
}

