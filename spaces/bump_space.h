/* A bump-pointer space: objects are laid out back to back from `begin`.
 * Threads carve thread-local allocation buffers (TLABs) out of it with one
 * atomic add; a retired buffer's unused tail becomes a filler object, so the
 * space is always walkable from begin to top.
 *
 * Zeroing: memory at and above `dirty_end` is known to read as zero (never
 * written since its pages were last discarded); memory below it may hold
 * old objects.  Claims are zeroed only below dirty_end, so a fresh space
 * costs no memset and a reused one costs a cache-warm memset instead of a
 * page fault per page (re-faulting discarded pages costs ~2 us each here). */
#ifndef FH_BUMP_SPACE_H_
#define FH_BUMP_SPACE_H_

#include <stdatomic.h>

#include "spaces/bitmap.h"
#include "spaces/space.h"

/* A free stretch below top (bump_space_set_holes). */
typedef struct bump_hole {
  uintptr_t lo, hi;
} bump_hole;

/* A recorded claim (bump_space_set_holes_recorded): [lo, hi), whose
 * claimer (the thread's handle) allocates there until its next claim, or
 * the next pause; then it is complete, its objects written and its tail a
 * filler, and the marker may mark it black early (bump_space_take_complete:
 * then marked). */
enum { BUMP_CLAIM_OPEN, BUMP_CLAIM_COMPLETE, BUMP_CLAIM_MARKED };
typedef struct bump_claim {
  uintptr_t lo, hi;
  const void *owner;
  int state;
} bump_claim;

typedef struct bump_space {
  fh_space space;
  _Atomic uintptr_t top;
  uintptr_t dirty_end; /* changes only with the world stopped */
  /* Walk points, kept only with stack_roots=conservative (words NULL
   * otherwise): each set bit (8-byte granule) is an object start, and
   * every address below top is reached by walking headers forward from
   * the last set bit at or before it, within one TLAB or one page.  Set by
   * the allocation slow path at each claim (TLAB or large object) and by
   * the collectors where they lay objects down (semispace: the first
   * object copied onto each page; sliding compaction: the object that
   * covers each destination page's first byte); cleared above top by
   * reset and truncate.  So finding the object under an ambiguous stack
   * word never walks from the space's start. */
  fh_bitmap starts;
  /* Holes: free stretches below top that TLABs are carved from before the
   * space grows (a sliding compaction around pinned objects leaves gaps
   * below them, collectors/forwarding.h; without reuse a space whose
   * newest objects are pinned grows by every cycle's allocation).  Each
   * hole is one filler object from hole_cur to its end, so the space
   * stays walkable; the claimer rewrites that filler's header for what
   * is left.  Ascending; taken in order under hole_lock (TLAB refills
   * only, a slow path); has_holes lets the refill skip the lock. */
  bump_hole *holes;
  size_t nholes, hole_i;
  uintptr_t hole_cur;
  atomic_flag hole_lock;
  _Atomic int has_holes;
  /* The claims carved from holes while they are recorded (claims_cap > 0:
   * a concurrent marking runs, whose remark marks everything allocated
   * since it began; above the top that is one range, in holes these).
   * Recorded claims are whole BUMP_BLACK_CARD-byte cards, each with its
   * bit in `black` (mapped on first use, one bit per card of the space)
   * until bump_space_take_claims: the marker leaves objects there alone
   * (bump_space_black_at), which the mutators may still be writing. */
  bump_claim *claims;
  size_t nclaims, claims_cap;
  int claims_lost; /* a claim above the top went unrecorded (no room) */
  _Atomic uint64_t *black;
  size_t black_map_bytes;
} bump_space;

#define BUMP_BLACK_CARD ((uintptr_t)512)

/* Whether address a (in the space starting at begin) lies in a recorded
 * claim.  Relaxed: the claim's bits are set before the claim is used. */
static inline int bump_space_black_at(const _Atomic uint64_t *black, uintptr_t begin,
                                      uintptr_t a) {
  size_t c = (a - begin) / BUMP_BLACK_CARD;
  return (int)(atomic_load_explicit(&black[c >> 6], memory_order_relaxed) >> (c & 63) & 1);
}

void bump_space_init(bump_space *b, const char *name, uintptr_t begin, size_t capacity);
/* Keep walk points (see starts).  0, or -1 (no memory for the bitmap). */
int bump_space_track_starts(bump_space *b);
void bump_space_destroy(bump_space *b);
static inline void bump_space_note_start(bump_space *b, uintptr_t start) {
  if (b->starts.words) bitmap_set(&b->starts, start);
}
/* The largest filler bump_space_write_fillers writes (a filler's payload
 * length is a 32-bit header field). */
#define BUMP_FILLER_MAX ((uintptr_t)1 << 30)
/* Cover the gap [lo, hi) with fillers of at most BUMP_FILLER_MAX bytes,
 * each noted as a walk point. */
void bump_space_write_fillers(bump_space *b, uintptr_t lo, uintptr_t hi);
/* Forget the walk points in [lo, hi) (a collection relays the objects
 * there).  Their bitmap pages stay resident below max(dirty_end, top),
 * where walk points are set again soon; above it they go back. */
void bump_space_clear_starts(bump_space *b, uintptr_t lo, uintptr_t hi);
/* The start of the object (not a filler) that contains address a, or 0
 * when a lies outside [begin, top) or in a filler.  Needs walk points;
 * world stopped, TLABs retired (the space walkable to top).  Adds walk
 * points along the way. */
uintptr_t bump_space_object_at(bump_space *b, uintptr_t a);
/* Claim [result, result + bytes) or return 0 when it would pass `limit`. */
static inline uintptr_t bump_space_claim(bump_space *b, size_t bytes, uintptr_t limit) {
  uintptr_t old = atomic_load_explicit(&b->top, memory_order_relaxed);
  do {
    if (bytes > limit - old || old > limit) return 0;
  } while (!atomic_compare_exchange_weak_explicit(&b->top, &old, old + bytes,
                                                  memory_order_relaxed, memory_order_relaxed));
  return old;
}
/* Replace the holes with holes[0 .. n) (malloc'd, ascending, each a
 * filler object; ownership passes), or none (NULL, 0).  Called with no
 * claim in flight (world stopped), or at the end of a concurrent phase
 * (the lock keeps refills off). */
void bump_space_set_holes(bump_space *b, bump_hole *holes, size_t n);
/* The holes not handed out yet, detached: the caller owns the array (NULL
 * when none; *n their number, *bytes their size) and the space has none.
 * Each still begins with its filler. */
bump_hole *bump_space_take_holes(bump_space *b, size_t *n, size_t *bytes);
/* bump_space_set_holes, recording every claim carved from them (at most
 * cap: past that no hole is handed out), each cut to whole cards (what
 * a hole has outside them stays a filler).  -1 (holes freed, none set)
 * when the record or the card bits cannot be allocated. */
int bump_space_set_holes_recorded(bump_space *b, bump_hole *holes, size_t n, size_t cap);
/* The recorded claims, detached (the caller frees them; NULL when none);
 * recording stops. */
bump_claim *bump_space_take_claims(bump_space *b, size_t *n);
/* Up to max complete claims not handed out yet, into out, now marked. */
size_t bump_space_take_complete(bump_space *b, bump_hole *out, size_t max);
/* While claims are recorded: a claim above the top, [lo, hi), for owner:
 * a TLAB (its previous claim is complete from here on), or a large
 * object, complete at once (its header is written; its TLAB, if any, goes
 * on).  Past the record's room, claims_lost is set. */
void bump_space_record_claim(bump_space *b, uintptr_t lo, uintptr_t hi, const void *owner,
                             int complete);
/* Claim up to `want` bytes (at least `min`) from the holes for owner (its
 * previous recorded claim is complete from here on): the start, with
 * *got bytes, or 0 when no hole has `min` left.  Zero it as any claim
 * (bump_space_zero_claim: holes lie below top, so below dirty_end). */
uintptr_t bump_space_claim_hole(bump_space *b, size_t want, size_t min, size_t *got,
                                const void *owner);
/* Zero what a claim of [p, p + bytes) needs zeroed (see dirty_end). */
static inline void bump_space_zero_claim(const bump_space *b, uintptr_t p, size_t bytes) {
  uintptr_t end = p + bytes < b->dirty_end ? p + bytes : b->dirty_end;
  if (end > p) __builtin_memset((void *)p, 0, end - p);
}
static inline size_t bump_space_used(const bump_space *b) {
  return atomic_load_explicit(&b->top, memory_order_relaxed) - b->space.begin;
}
/* Record that everything below the current top has been written. */
void bump_space_note_written(bump_space *b);
/* Empty the space, keeping at most `keep` bytes of its pages resident for
 * reuse and giving the rest back to the system. */
void bump_space_reset(bump_space *b, size_t keep);
/* Make `from` (<= top) the new top, e.g. after sliding compaction; the
 * bytes above it are garbage that later claims zero. */
void bump_space_truncate(bump_space *b, uintptr_t from);

#endif
