/* Dead wood: a prefix of the collected range that stays where it is
 * although a few of its words are dead (forwarding.h: fwd_keep_dense_prefix).
 *
 * A slide moves every live word above the first dead one.  Where that dead
 * word is a TLAB's unused tail (a filler of a few bytes: TLAB sizes are
 * rarely a multiple of the objects' size) or the odd dead object in a
 * structure the program is building, everything above it moves down by a
 * few bytes and every reference to it is rewritten, to win back less than
 * a page.  Within the prefix the dead stretches become fillers instead, their
 * words count as live, and the forwarding there is the identity: nothing
 * moves, and when nothing at all moves the slide skips its reference pass
 * (mc_slide_all).  HotSpot's parallel compactor keeps such a "dense prefix"
 * for the same reason; here it ends at the first dead stretch that would
 * take the dead words past 1/FWD_WOOD_DIVISOR of the prefix.
 *
 * The fillers are not offered to the allocator: the prefix's survivors
 * become the middle or old generation, which no young object may lie
 * among.  The next collection that reaches them frees them (or keeps them
 * again, within the same bound). */
#include "collectors/forwarding.h"

#include <stdlib.h>

#include "heap/object.h"

/* The prefix's dead words stay at most 1/32 (3%) of it: a TLAB's tail is a
 * few bytes of 32 KiB, and an object-sized gap in every 32 live objects
 * still keeps its place. */
#define FWD_WOOD_DIVISOR 32
/* The prefix ends at the stretch that would make more than this many (the
 * list lives as long as the tables: 64 KiB; a TLAB's tail per 32 KiB is
 * 128 MiB of prefix), and at one past FWD_GAP_FILLER bytes (a filler's
 * size field). */
#define FWD_WOOD_MAX 4096
/* A dead stretch past the divisor's bound is still kept when the next
 * FWD_WOOD_RUN_MIN bytes above it are live but for stretches that keep
 * the bound at their end: moving them costs their update and memmove
 * (~0.2 ms per MiB), and the stretch is all it would win back.
 * binary-trees builds its 128 MiB long-lived tree 4 KiB above the young
 * generation's start (a few dead objects first): the young cycle that
 * found it slid the whole tree down by them, 24 ms of a 70 ms pause.
 * Shorter survivors move as before: weighed against any live run,
 * kept stretches changed which of GCBench's survivors each cycle
 * promoted (a full collection more, 26-29 ms of pauses against 12-20). */
#define FWD_WOOD_RUN_MIN ((uintptr_t)8 << 20)

static uint64_t live_bits(const fwd_tables *t, size_t w) {
  return atomic_load_explicit(&t->live.words[w], memory_order_relaxed);
}

/* The first live word at or after a, below end (end if none). */
static uintptr_t next_live(const fwd_tables *t, uintptr_t a, uintptr_t end) {
  uintptr_t b = bitmap_next_set(&t->live, a, end);
  return b ? b : end;
}

/* The first dead word at or after a, below end (end if none). */
static uintptr_t next_dead(const fwd_tables *t, uintptr_t a, uintptr_t end) {
  size_t i = (a - t->begin) >> 3, last = (end - t->begin) >> 3;
  while (i < last) {
    uint64_t dead = ~live_bits(t, i >> 6) >> (i & 63);
    if (dead) {
      size_t j = i + (size_t)__builtin_ctzll(dead);
      return j < last ? t->begin + (j << 3) : end;
    }
    i = (i | 63) + 1;
  }
  return end;
}

/* A filler over [a, e), live for the forwarding, and its start marked so
 * that the page walks (page_first) land on it; -1 when there is no memory
 * to list it or it would pass FWD_WOOD_MAX or FWD_GAP_FILLER (the prefix
 * then ends below it). */
static int keep_wood(fwd_tables *t, uintptr_t a, uintptr_t e) {
  if (t->nwood == FWD_WOOD_MAX || e - a > FWD_GAP_FILLER) return -1;
  if (t->nwood == t->wood_cap) {
    size_t cap = t->wood_cap ? 2 * t->wood_cap : 256;
    fwd_span *grown = realloc(t->wood, cap * sizeof *grown);
    if (!grown) return -1;
    t->wood = grown;
    t->wood_cap = cap;
  }
  t->wood[t->nwood++] = (fwd_span){a, e};
  obj_write_filler(a, e - a);
  fwd_mark_object(t, a, e - a);
  t->wood_bytes += e - a;
  return 0;
}

/* Where the prefix's bound holds again if the dead stretch ending at e
 * is kept (dead: the prefix's dead bytes with it): FWD_WOOD_RUN_MIN above
 * e, counting the dead stretches up to there (TLAB tails: objects rarely
 * fill a TLAB exactly); 0 if it does not hold there. */
static uintptr_t bound_holds_again(const fwd_tables *t, uintptr_t start, uintptr_t e, size_t dead,
                                   uintptr_t end) {
  if (end - e < FWD_WOOD_RUN_MIN) return 0;
  uintptr_t limit = e + FWD_WOOD_RUN_MIN;
  if (dead * FWD_WOOD_DIVISOR > limit - start) return 0; /* it cannot, and needs no scan */
  for (uintptr_t a = next_dead(t, e, limit); a < limit;) {
    uintptr_t b = next_live(t, a, limit);
    dead += b - a;
    if (dead * FWD_WOOD_DIVISOR > limit - start) return 0;
    a = next_dead(t, b, limit);
  }
  return limit;
}

void fwd_keep_dense_prefix(fwd_tables *t) {
  t->wood_bytes = 0;
  t->nwood = 0;
  /* Growers were fitted against a slide that frees every dead word
   * below them (fwd_pin_ranges): left alone.  Below the first pinned
   * range nothing moves up, so kept words still fit under it; the gap
   * just below it is the segment's end, never kept. */
  if (atomic_load_explicit(&t->grows_marked, memory_order_relaxed)) return;
  uintptr_t start = t->ylo, end = t->old_top;
  if (t->nranges && t->ranges[0].lo < end) end = t->ranges[0].lo;
  size_t dead = 0;
  uintptr_t checked_to = start; /* the bound was checked ahead up to here */
  for (uintptr_t a = next_dead(t, start, end); a < end;) {
    uintptr_t e = next_live(t, a, end);
    if (e == end) break; /* nothing live above: the top comes down anyway */
    dead += e - a;
    if (e > checked_to && dead * FWD_WOOD_DIVISOR > e - start &&
        !(checked_to = bound_holds_again(t, start, e, dead, end)))
      break; /* the prefix ends at a */
    if (keep_wood(t, a, e) < 0) break;
    a = next_dead(t, e, end);
  }
}

size_t fwd_wood_in(const fwd_tables *t, uintptr_t lo, uintptr_t hi) {
  size_t n = 0;
  for (size_t k = 0; k < t->nwood && t->wood[k].lo < hi; k++)
    n += fwd_overlap(t->wood[k].lo, t->wood[k].hi, lo, hi);
  return n;
}
