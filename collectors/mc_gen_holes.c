/* Generational mark-compact with holes (collectors/mc_gen_holes.h): where
 * a cycle ends the old generation when pinned objects leave gaps below
 * them, and what that choice costs. */
#include "collectors/mc_gen_holes.h"

#include <stdlib.h>

#include "collectors/mc.h"
#include "heap/gen_policy.h"

/* Conservative stack roots: no hole handed to the allocator lies in the
 * old generation.  Objects allocated into one below the old end would be
 * old from birth, which only a full collection frees (fhscheme's loop
 * peaked at 42 MiB instead of 5 with them), and every dirty card among
 * them would be walked from the hole's start.  With precise roots pins are
 * few and long-lived (fh_pin: I/O buffers), their holes are handed out
 * whatever generation they lie in, and filling them matters more
 * (fhbench pins: 1% of objects pinned evenly, thousands of holes). */
int mc_holes_stay_young(const fh_heap *h) {
  return h->opt.stack_roots == FH_STACK_ROOTS_CONSERVATIVE;
}

/* Bytes of the gaps below pinned ranges inside [lo, hi) (new addresses). */
size_t mc_gap_bytes(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  size_t n = 0;
  for (size_t r = 0; r < t->nranges && t->ranges[r].gap_lo < hi; r++)
    n += fwd_overlap(t->ranges[r].gap_lo, t->ranges[r].lo, lo, hi);
  return n;
}

/* A young cycle keeps at most this many live bytes mid, beyond its
 * natural boundary, to keep a hole out of the old generation
 * (young_boundary); each is marked again by the next young cycle. */
#define GEN_HOLE_MID_MAX ((size_t)1 << 20)

/* Beyond GEN_HOLE_MID_MAX, a lower hole is still taken when keeping the
 * live bytes above it mid costs less than what declining it costs (both
 * in bytes marked, hole_cost).  Declining strands its gaps and promotes
 * those bytes; the gaps and the share of the bytes that will die are
 * growth of the old generation that only a full cycle takes back
 * (strand_weight per byte; the share that lives would be promoted by the
 * next cycle anyway).  Keeping them marks again, at the next young cycle,
 * those that are still alive, and at later ones while they stay above a
 * hole: s / (1 - s) marks a byte for a survival share s, at most this
 * many (a live structure pinned low stays above its hole at every cycle). */
#define GEN_HOLE_GAP_PER_MID 8

typedef struct hole_cost {
  double weight; /* marks a byte of the old generation's growth costs (strand_weight) */
  double marks;  /* marks a byte kept mid costs */
  double dying;  /* share of the bytes kept mid that will die before promotion */
} hole_cost;

/* The pinned range whose gap (MC_HOLE_MIN bytes or more: a hole handed to
 * the allocator) starts lowest below end with at most limit live bytes
 * between that gap and end, or where keeping the live bytes it adds mid
 * costs less than stranding the gaps down to it and promoting those
 * bytes (hole_cost), up to GEN_HOLE_GAP_PER_MID times limit; nranges if
 * none.  From the top down: the live bytes above a gap only grow towards
 * the bottom.  The second rule matters when the stacks pin an object at
 * the very top of a full space: binary-trees at depth 20 slid its
 * survivors under a 90 MiB gap with 1.03 MiB live above it, the limit
 * alone chose the next hole up, and the 90 MiB stranded below it were
 * handed out old from birth (the space spanned more than half of
 * heap_max), every card of them dirty. */
static size_t hole_below(const fwd_tables *t, uintptr_t end, size_t limit, hole_cost c) {
  size_t best = t->nranges, r = t->nranges, gaps = 0, best_live = 0, gaps_since_best = 0;
  while (r > 0 && t->ranges[r - 1].gap_lo >= end) r--;
  while (r-- > 0) {
    const fwd_range *g = &t->ranges[r];
    uintptr_t hi = g->lo < end ? g->lo : end;
    gaps += hi - g->gap_lo;
    if (hi - g->gap_lo < MC_HOLE_MIN) continue; /* never handed out */
    gaps_since_best += hi - g->gap_lo;
    size_t live = end - g->gap_lo - gaps;
    if (live > GEN_HOLE_GAP_PER_MID * limit) break; /* marked again each young cycle */
    double added = (double)(live - best_live), gaps_in = (double)gaps_since_best;
    /* (And never for gaps under an eighth of what they keep mid: the
     * survival share is an estimate, which must not keep megabytes
     * marked again for a small hole.) */
    if (live > limit && (added * c.marks > (gaps_in + added * c.dying) * c.weight ||
                         gaps_in * GEN_HOLE_GAP_PER_MID < added))
      continue;
    best = r;
    best_live = live;
    gaps_since_best = 0;
  }
  return best;
}

/* What a byte of the old generation's growth costs, in bytes marked: each
 * threshold's worth of it (gen_policy_old_threshold: half the old
 * generation) brings a full cycle, which marks the old generation whole:
 * about old_live / threshold marks per byte, 2 in a heap past the
 * threshold's floor.  At least 1.  GCBench with conservative roots: a
 * young cycle kept 1.15 MiB mid rather than take the hole under it,
 * stranded the 6.8 MiB gap there instead, and the next cycle was a full
 * one (four more of them than with precise roots). */
static double strand_weight(const mc_state *m, size_t old_live, size_t old_after_full) {
  size_t threshold = gen_policy_old_threshold(old_after_full, heap_limit(m->h));
  double w = threshold ? (double)old_live / (double)threshold : 1.0;
  return w > 1.0 ? w : 1.0;
}

/* Live bytes this cycle marked in [a, b) (old addresses, at or above
 * the tables' floor): the live bitmap's bits there.  The gaps it counts
 * can span megabytes: with the build's portable popcount this loop was
 * 3.6% of conservative GCBench's run, so x86-64 gets a POPCNT copy picked
 * at run time (as forwarding.c's compute_chunks). */
static inline __attribute__((always_inline)) size_t live_bits_in(const fwd_tables *t, size_t i,
                                                                 size_t e, int hw) {
  size_t n = 0;
  while (i < e) {
    size_t bit = i & 63, take = 64 - bit;
    uint64_t x = t->live.words[i >> 6] >> bit;
    if (take > e - i) {
      take = e - i;
      x &= ((uint64_t)1 << take) - 1;
    }
    n += hw ? (size_t)__builtin_popcountll(x) : fwd_popcount(x);
    i += take;
  }
  return n;
}
#if defined(__x86_64__) && !defined(__POPCNT__)
__attribute__((target("popcnt"))) static size_t live_bits_popcnt(const fwd_tables *t, size_t i,
                                                                 size_t e) {
  return live_bits_in(t, i, e, 1);
}
#define LIVE_BITS(t, i, e) \
  (__builtin_cpu_supports("popcnt") ? live_bits_popcnt(t, i, e) : live_bits_in(t, i, e, 0))
#else
#define LIVE_BITS(t, i, e) live_bits_in(t, i, e, 0)
#endif

static size_t live_bytes_in(const fwd_tables *t, uintptr_t a, uintptr_t b) {
  if (a < t->lo) a = t->lo;
  if (b > t->old_top) b = t->old_top;
  if (a >= b) return 0;
  return LIVE_BITS(t, bitmap_index(&t->live, a), bitmap_index(&t->live, b)) * FWD_WORD;
}

/* A young cycle's hole_cost.  The survival share s is what this cycle
 * found alive of the live bytes the last one kept mid (mid_kept): the
 * survivors of [ylo, promote_below), which lie in [ylo, mid_new_end) after
 * the slide, less its gaps, less what is alive in the gaps the last cycle
 * left there (allocated into them since: young, not kept); at most 1.
 * binary-trees with conservative roots: the tree being built sat above a
 * 3.3 MiB gap, 2 MiB of it, and died before the next young cycle; counted
 * as 8 marks a byte kept mid, it was promoted and the gap stranded, and
 * every other cycle was a full one (8 against precise roots' 2 at depth
 * 16; 6 since). */
static hole_cost young_hole_cost(const mc_state *m, uintptr_t mid_new_end) {
  const mc_gen *g = &m->gen;
  const fwd_tables *t = &m->t;
  hole_cost c = {strand_weight(m, g->old_live, g->last.old_after_full), GEN_HOLE_GAP_PER_MID, 0};
  if (!g->mid_kept || !g->mid_gaps_ok || mid_new_end <= t->ylo) return c;
  size_t survived = mid_new_end - t->ylo - mc_gap_bytes(t, t->ylo, mid_new_end), fresh = 0;
  for (size_t i = 0; i < g->nmid_gaps; i++)
    fresh += live_bytes_in(t, g->mid_gaps[i].lo, g->mid_gaps[i].hi);
  survived = survived > fresh ? survived - fresh : 0;
  double s = (double)survived / (double)g->mid_kept;
  if (s >= 1.0) return c;
  c.dying = 1.0 - s;
  c.marks = s / (1.0 - s) < GEN_HOLE_GAP_PER_MID ? s / (1.0 - s) : GEN_HOLE_GAP_PER_MID;
  return c;
}

/* A young cycle's boundary, from the forwarding (the same before the
 * update and after the slide).  The first survivor at or above the old mid
 * end stays young, as mid; everything below its new address becomes old.
 * Conservative roots (holes_stay_young): the old generation ends at the
 * lowest hole below that instead that leaves at most GEN_HOLE_MID_MAX
 * more live bytes mid, so that the holes above stay young.  Usually that
 * is the first hole, the gap under the newest objects, which the stacks
 * pin, among the first young survivors.  The gaps below it are stranded
 * (mc_gen_end): with no limit, a long-lived object pinned low (GCBench's
 * tree root) kept the 4 MiB above its gap mid, marked and moved by every
 * young cycle, and the throughput rule turned every other cycle full.
 * The survivors that stay mid start at the range's first word (a pinned
 * range does not move), so the update keeps the cards of old holders
 * pointing there: theirs were dirty before the cycle (the invariant), so
 * it sees them. */
static young_bound young_boundary(const mc_state *m) {
  const mc_gen *g = &m->gen;
  const fwd_tables *t = &m->t;
  uintptr_t first = bitmap_next_set(&t->mark, g->promote_below, t->old_top);
  young_bound b = {first ? fwd_start(t, first) : t->new_top, g->promote_below};
  if (!mc_holes_stay_young(m->h)) return b;
  size_t r = hole_below(t, b.old_end, GEN_HOLE_MID_MAX, young_hole_cost(m, b.old_end));
  if (r == t->nranges) return b;
  b.old_end = t->ranges[r].gap_lo;
  if (t->ranges[r].lo < b.keep_lo) b.keep_lo = t->ranges[r].lo;
  return b;
}

young_bound mc_young_boundary(mc_state *m) {
  mc_gen *g = &m->gen;
  if (!g->yb_valid) {
    young_bound b = young_boundary(m);
    g->yb_old_end = b.old_end;
    g->yb_keep_lo = b.keep_lo;
    g->yb_valid = 1;
  }
  return (young_bound){g->yb_old_end, g->yb_keep_lo};
}

/* Conservative roots: where a full slide ends the old generation so that
 * the holes it hands out are young, below end (the boundary the young
 * survivors' rule keeps, or the new top): hole_below's gap, with the same
 * limit as a young cycle's; 0 without one.  A stack word pins an object
 * near the old top at nearly every collection: making everything old
 * would strand the gap below it, and the next full cycle's pins, among
 * what was allocated above, would strand a higher one (fhscheme's
 * destruct: the space's range grew by a young generation per full cycle,
 * 9 -> 37 MiB).  What lies above becomes mid, promoted by the next young
 * cycle.  Without the limit, a long-lived object pinned low (GCBench's
 * tree root) made everything above its gap mid at every full cycle, and
 * the young cycle after it stranded that gap, which brought the next full
 * one: every other cycle was full.  The cost is mc_gen_end's walk over
 * the old part (the cards the cycle cleared), in the pause. */
uintptr_t mc_hole_boundary(const mc_state *m, uintptr_t end) {
  const fwd_tables *t = &m->t;
  if (!mc_holes_stay_young(m->h)) return 0;
  /* The full cycle's own figures (its live data is the next threshold's);
   * no survival share is known, so every byte kept mid counts as live. */
  hole_cost c = {strand_weight(m, t->live_bytes, t->live_bytes), GEN_HOLE_GAP_PER_MID, 0};
  size_t r = hole_below(t, end, GEN_HOLE_MID_MAX, c);
  return r < t->nranges ? t->ranges[r].gap_lo : 0;
}

/* The gaps in [new_old, new_top) (new addresses): young_hole_cost's
 * record for the next young cycle. */
void mc_record_mid_gaps(mc_gen *g, const fwd_tables *t, uintptr_t new_old) {
  g->nmid_gaps = 0;
  g->mid_gaps_ok = 1;
  for (size_t r = 0; r < t->nranges && t->ranges[r].gap_lo < t->new_top; r++) {
    uintptr_t lo = t->ranges[r].gap_lo > new_old ? t->ranges[r].gap_lo : new_old;
    uintptr_t hi = t->ranges[r].lo < t->new_top ? t->ranges[r].lo : t->new_top;
    if (hi <= lo) continue;
    if (g->nmid_gaps == g->mid_gaps_cap) {
      size_t cap = g->mid_gaps_cap ? 2 * g->mid_gaps_cap : 64;
      struct mc_mid_gap *p = realloc(g->mid_gaps, cap * sizeof *p);
      if (!p) {
        g->mid_gaps_ok = 0; /* no estimate next time: counted as all live */
        return;
      }
      g->mid_gaps = p;
      g->mid_gaps_cap = cap;
    }
    g->mid_gaps[g->nmid_gaps++] = (struct mc_mid_gap){lo, hi};
  }
}
