#include "spaces/bump_space.h"

#include <stdlib.h>
#include <string.h>

#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

static size_t bump_used(const fh_space *s) { return bump_space_used((const bump_space *)s); }

static size_t bump_resident(const fh_space *s) {
  return reserve_resident(s->begin, atomic_load(&((const bump_space *)s)->top));
}

static void bump_walk(fh_space *s, fh_object_fn fn, void *ctx) {
  uintptr_t p = s->begin, top = atomic_load(&((bump_space *)s)->top);
  while (p < top) {
    uint64_t h = *(uint64_t *)p;
    size_t bytes = obj_bytes(h);
    if (hdr_type(h) != FH_FILLER_TYPE) fn(obj_from_start(p), ctx);
    p += bytes;
  }
}

/* Linear: only verification uses it, and it builds its own index instead. */
static int bump_is_object(const fh_space *s, const void *obj) {
  uintptr_t want = obj_start(obj), p = s->begin, top = atomic_load(&((const bump_space *)s)->top);
  while (p < top && p < want) p += obj_bytes(*(uint64_t *)p);
  return p == want && p < top && hdr_type(*(uint64_t *)p) != FH_FILLER_TYPE;
}

static const fh_space_ops bump_ops = {bump_used, bump_resident, bump_walk, bump_is_object};

void bump_space_init(bump_space *b, const char *name, uintptr_t begin, size_t capacity) {
  b->space = (fh_space){name, SPACE_BUMP, begin, begin + capacity, &bump_ops};
  atomic_store(&b->top, begin);
  b->dirty_end = begin;
  b->holes = NULL;
  b->nholes = b->hole_i = 0;
  b->hole_cur = 0;
  atomic_flag_clear(&b->hole_lock);
  atomic_store(&b->has_holes, 0);
  b->claims = NULL;
  b->nclaims = b->claims_cap = 0;
  b->black = NULL;
  b->black_map_bytes = 0;
}

int bump_space_track_starts(bump_space *b) {
  if (b->starts.words) return 0;
  return bitmap_init(&b->starts, b->space.begin, b->space.end - b->space.begin, 3);
}

void bump_space_destroy(bump_space *b) {
  bitmap_destroy(&b->starts);
  bump_space_set_holes(b, NULL, 0);
  size_t n;
  free(bump_space_take_claims(b, &n));
  if (b->black) sys_munmap((void *)b->black, b->black_map_bytes);
  b->black = NULL;
}

static void hole_lock(bump_space *b) {
  while (atomic_flag_test_and_set_explicit(&b->hole_lock, memory_order_acquire))
    ;
}
static void hole_unlock(bump_space *b) {
  atomic_flag_clear_explicit(&b->hole_lock, memory_order_release);
}

void bump_space_set_holes(bump_space *b, bump_hole *holes, size_t n) {
  hole_lock(b);
  free(b->holes);
  b->holes = n ? holes : NULL;
  b->nholes = n ? n : 0;
  b->hole_i = 0;
  b->hole_cur = n ? holes[0].lo : 0;
  atomic_store_explicit(&b->has_holes, n != 0, memory_order_relaxed);
  hole_unlock(b);
  if (!n) free(holes);
}

bump_hole *bump_space_take_holes(bump_space *b, size_t *n, size_t *bytes) {
  hole_lock(b);
  bump_hole *hs = b->holes;
  size_t left = b->hole_i < b->nholes ? b->nholes - b->hole_i : 0, sum = 0;
  if (left) {
    /* The current hole from where its filler now starts. */
    b->holes[b->hole_i].lo = b->hole_cur;
    memmove(hs, hs + b->hole_i, left * sizeof *hs);
    for (size_t i = 0; i < left; i++) sum += hs[i].hi - hs[i].lo;
  } else {
    free(hs);
    hs = NULL;
  }
  b->holes = NULL;
  b->nholes = b->hole_i = 0;
  b->hole_cur = 0;
  atomic_store_explicit(&b->has_holes, 0, memory_order_relaxed);
  hole_unlock(b);
  *n = left;
  *bytes = sum;
  return hs;
}

int bump_space_set_holes_recorded(bump_space *b, bump_hole *holes, size_t n, size_t cap) {
  if (!b->black) {
    size_t cards = (b->space.end - b->space.begin) / BUMP_BLACK_CARD;
    b->black_map_bytes = (cards + 63) / 64 * sizeof(uint64_t);
    b->black = reserve_map_table(b->black_map_bytes);
  }
  bump_claim *claims = cap && b->black ? malloc(cap * sizeof *claims) : NULL;
  if (!claims) {
    free(holes);
    return -1;
  }
  hole_lock(b);
  free(b->claims);
  b->claims = claims;
  b->nclaims = 0;
  b->claims_cap = cap;
  b->claims_lost = 0;
  hole_unlock(b);
  bump_space_set_holes(b, holes, n);
  return 0;
}

/* Set (or clear) the black bits of the whole cards [lo, hi). */
static void black_cards(bump_space *b, uintptr_t lo, uintptr_t hi, int set) {
  for (size_t c = (lo - b->space.begin) / BUMP_BLACK_CARD, e = (hi - b->space.begin) / BUMP_BLACK_CARD;
       c < e; c++) {
    uint64_t bit = (uint64_t)1 << (c & 63);
    if (set)
      atomic_fetch_or_explicit(&b->black[c >> 6], bit, memory_order_relaxed);
    else
      atomic_fetch_and_explicit(&b->black[c >> 6], ~bit, memory_order_relaxed);
  }
}

bump_claim *bump_space_take_claims(bump_space *b, size_t *n) {
  hole_lock(b);
  bump_claim *c = b->claims;
  *n = b->nclaims;
  b->claims = NULL;
  b->nclaims = b->claims_cap = 0;
  for (size_t i = 0; i < *n; i++) black_cards(b, c[i].lo, c[i].hi, 0);
  hole_unlock(b);
  if (c && !*n) {
    free(c);
    c = NULL;
  }
  return c;
}

size_t bump_space_take_complete(bump_space *b, bump_hole *out, size_t max) {
  size_t k = 0;
  hole_lock(b);
  for (size_t i = 0; i < b->nclaims && k < max; i++)
    if (b->claims[i].state == BUMP_CLAIM_COMPLETE) {
      b->claims[i].state = BUMP_CLAIM_MARKED;
      out[k++] = (bump_hole){b->claims[i].lo, b->claims[i].hi};
    }
  hole_unlock(b);
  return k;
}

/* owner's open claim (a TLAB: at most one), if any, is complete: it takes
 * another TLAB.  From the newest: it is among the last few. */
static void claim_complete(bump_space *b, const void *owner) {
  for (size_t i = b->nclaims; i-- > 0;)
    if (b->claims[i].owner == owner && b->claims[i].state == BUMP_CLAIM_OPEN) {
      b->claims[i].state = BUMP_CLAIM_COMPLETE;
      return;
    }
}

void bump_space_record_claim(bump_space *b, uintptr_t lo, uintptr_t hi, const void *owner,
                             int complete) {
  hole_lock(b);
  if (b->claims_cap) {
    if (!complete) claim_complete(b, owner);
    if (b->nclaims < b->claims_cap)
      b->claims[b->nclaims++] =
          (bump_claim){lo, hi, owner, complete ? BUMP_CLAIM_COMPLETE : BUMP_CLAIM_OPEN};
    else
      b->claims_lost = 1;
  }
  hole_unlock(b);
}

uintptr_t bump_space_claim_hole(bump_space *b, size_t want, size_t min, size_t *got,
                                const void *owner) {
  if (!atomic_load_explicit(&b->has_holes, memory_order_relaxed)) return 0;
  uintptr_t p = 0;
  hole_lock(b);
  if (b->claims_cap) claim_complete(b, owner);
  /* Recorded claims (a concurrent marking): none past the record's room. */
  if (b->claims_cap && b->nclaims == b->claims_cap) b->hole_i = b->nholes;
  while (b->hole_i < b->nholes) {
    uintptr_t hi = b->holes[b->hole_i].hi, cur = b->hole_cur;
    if (b->claims_cap) {
      /* Whole cards (their black bits): the hole's first bytes up to a
       * card boundary, and its last ones past one, stay fillers. */
      uintptr_t lo = b->space.begin + align_up(cur - b->space.begin, BUMP_BLACK_CARD);
      uintptr_t end = b->space.begin + align_down(hi - b->space.begin, BUMP_BLACK_CARD);
      if (end > lo && end - lo >= min) {
        size_t take = end - lo < want ? end - lo : want;
        if (lo > cur) {
          obj_write_filler(cur, lo - cur);
          bump_space_note_start(b, cur);
        }
        if (take == end - lo && end < hi) { /* the last card's tail */
          obj_write_filler(end, hi - end);
          bump_space_note_start(b, end);
        }
        black_cards(b, lo, lo + take, 1);
        b->claims[b->nclaims++] = (bump_claim){lo, lo + take, owner, BUMP_CLAIM_OPEN};
        p = lo;
        *got = take;
        b->hole_cur = take == end - lo ? hi : lo + take;
        if (b->hole_cur < hi) {
          obj_write_filler(b->hole_cur, hi - b->hole_cur);
          bump_space_note_start(b, b->hole_cur);
        }
        break;
      }
      if (++b->hole_i < b->nholes) b->hole_cur = b->holes[b->hole_i].lo;
      continue;
    }
    if (hi - cur >= min) {
      size_t take = hi - cur < want ? hi - cur : want;
      p = cur;
      *got = take;
      b->hole_cur = cur + take;
      if (b->hole_cur < hi) { /* what is left stays one filler */
        obj_write_filler(b->hole_cur, hi - b->hole_cur);
        bump_space_note_start(b, b->hole_cur);
      }
      break;
    }
    /* Too small for this claim: left as it is (a filler) for good. */
    if (++b->hole_i < b->nholes) b->hole_cur = b->holes[b->hole_i].lo;
  }
  if (b->hole_i < b->nholes && b->hole_cur == b->holes[b->hole_i].hi &&
      ++b->hole_i < b->nholes)
    b->hole_cur = b->holes[b->hole_i].lo;
  if (b->hole_i >= b->nholes) atomic_store_explicit(&b->has_holes, 0, memory_order_relaxed);
  hole_unlock(b);
  return p;
}

/* Walk points below `resident` (the end of the space's pages that stay
 * resident: the next cycle claims TLABs and lays out pages there and sets
 * bits all over them again) are zeroed in place; above it they go back with
 * the space's pages.  Handing those bitmap pages back cost two faults per
 * page per cycle (a read, then a write: fhbench gcbench --variants
 * fh-conservative, a third of its page faults). */
static void clear_starts(bump_space *b, uintptr_t lo, uintptr_t hi, uintptr_t resident) {
  if (!b->starts.words) return;
  uintptr_t mid = resident < lo ? lo : resident > hi ? hi : resident;
  bitmap_zero_range(&b->starts, lo, mid);
  bitmap_clear_range(&b->starts, mid, hi);
}

void bump_space_clear_starts(bump_space *b, uintptr_t lo, uintptr_t hi) {
  uintptr_t top = atomic_load_explicit(&b->top, memory_order_relaxed);
  clear_starts(b, lo, hi, b->dirty_end > top ? b->dirty_end : top);
}

/* A walk that crosses into a new 512-byte stretch leaves a walk point at
 * the first object starting there, so later lookups in the same TLAB walk
 * a stretch, not the TLAB (a stack holds many pointers into the same few
 * recent buffers). */
#define WALK_MEMO_SHIFT 9

uintptr_t bump_space_object_at(bump_space *b, uintptr_t a) {
  uintptr_t top = atomic_load_explicit(&b->top, memory_order_relaxed);
  if (a < b->space.begin || a >= top || !b->starts.words) return 0;
  /* Without a walk point below a (none recorded yet), the space's start
   * is one: it always holds an object or a filler. */
  uintptr_t p = bitmap_prev_set(&b->starts, b->space.begin, a & ~(uintptr_t)7);
  if (!p) p = b->space.begin;
  uintptr_t stretch = p >> WALK_MEMO_SHIFT;
  while (p < top) {
    if (p >> WALK_MEMO_SHIFT != stretch) {
      stretch = p >> WALK_MEMO_SHIFT;
      bitmap_set(&b->starts, p);
    }
    uint64_t hd = *(const uint64_t *)p;
    size_t n = obj_bytes(hd);
    if (n < FH_HEADER_BYTES) return 0; /* not a header: nothing to trust */
    if (a < p + n) return hdr_type(hd) == FH_FILLER_TYPE ? 0 : p;
    p += n;
  }
  return 0;
}

void bump_space_note_written(bump_space *b) {
  uintptr_t top = atomic_load(&b->top);
  if (top > b->dirty_end) b->dirty_end = top;
}

void bump_space_reset(bump_space *b, size_t keep) {
  bump_space_note_written(b);
  uintptr_t keep_end = align_up(b->space.begin + keep, FH_PAGE);
  if (keep_end < b->dirty_end) {
    reserve_discard(keep_end, align_up(b->dirty_end, FH_PAGE) - keep_end);
    b->dirty_end = keep_end;
  }
  clear_starts(b, b->space.begin, atomic_load(&b->top), b->dirty_end);
  bump_space_set_holes(b, NULL, 0);
  atomic_store(&b->top, b->space.begin);
}

void bump_space_truncate(bump_space *b, uintptr_t from) {
  bump_space_note_written(b);
  bump_space_clear_starts(b, from, atomic_load(&b->top));
  bump_space_set_holes(b, NULL, 0);
  atomic_store(&b->top, from);
}

void bump_space_write_fillers(bump_space *b, uintptr_t lo, uintptr_t hi) {
  for (uintptr_t p = lo; p < hi;) {
    uintptr_t n = hi - p > BUMP_FILLER_MAX ? BUMP_FILLER_MAX : hi - p;
    obj_write_filler(p, n);
    bump_space_note_start(b, p);
    p += n;
  }
}
