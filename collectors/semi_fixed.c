/* See collectors/semi_fixed.h: what a semispace cycle leaves in place. */
#include "collectors/semi_fixed.h"

#include <stdlib.h>

#include "heap/error.h"
#include "heap/object.h"
#include "heap/pins.h"
#include "spaces/reserve.h"

/* Smaller gaps stay fillers: each hole costs a TLAB refill (as
 * collectors/mc_holes.c's minimum). */
#define SEMI_HOLE_MIN 64u

static int push_range(bump_hole **v, size_t *n, size_t *cap, uintptr_t lo, uintptr_t hi) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    bump_hole *g = realloc(*v, c * sizeof *g);
    if (!g) return -1;
    *v = g;
    *cap = c;
  }
  (*v)[(*n)++] = (bump_hole){lo, hi};
  return 0;
}

/* A gap of to-space: fillers, and holes (one per filler) for the
 * allocator. */
static void to_gap(semi_fixed *f, bump_space *to, uintptr_t lo, uintptr_t hi) {
  bump_space_write_fillers(to, lo, hi);
  if (hi - lo < SEMI_HOLE_MIN || f->oom) return;
  for (uintptr_t p = lo; p < hi;) {
    uintptr_t n = hi - p > BUMP_FILLER_MAX ? BUMP_FILLER_MAX : hi - p;
    if (push_range(&f->holes, &f->nholes, &f->holes_cap, p, p + n) < 0) f->oom = 1;
    p += n;
  }
}

void semi_fixed_destroy(semi_fixed *f) {
  free(f->isl);
  free(f->pin_start);
  free(f->pin_hdr);
  free(f->holes);
  f->isl = f->holes = NULL;
  f->pin_start = NULL;
  f->pin_hdr = NULL;
}

/* The islands the last cycle recorded, if to-space is still as it left
 * it (no hash word claimed there since, no other collection): walking the
 * half instead reads a header per island and per filler between them, on
 * as many pages, ~0.2 ms of a 3 ms cycle with 2,000 pins. */
static int take_recorded(semi_fixed *f, fh_heap *h, uintptr_t top) {
  if (!h->semi_islands.runs || h->semi_islands.top != top || h->semi_islands.at != h->collections)
    return 0;
  f->isl = h->semi_islands.runs;
  f->nisl = f->isl_cap = h->semi_islands.n;
  f->island_bytes = h->semi_islands.bytes;
  h->semi_islands.runs = NULL;
  return 1;
}

void semi_fixed_forget(fh_heap *h) {
  free(h->semi_islands.runs);
  h->semi_islands.runs = NULL;
  h->semi_islands.n = h->semi_islands.bytes = 0;
}

int semi_fixed_begin(semi_fixed *f, fh_heap *h, bump_space *from, bump_space *to) {
  *f = (semi_fixed){.copy_next = UINTPTR_MAX, .scan_next = UINTPTR_MAX};
  uintptr_t lo = to->space.begin, top = atomic_load(&to->top);
  int recorded = take_recorded(f, h, top);
  semi_fixed_forget(h);
  /* To-space's objects (the last cycle's pinned ones, or those a zygote
   * compaction kept) lie between fillers: runs of adjacent ones become
   * one island each. */
  for (uintptr_t p = recorded ? top : lo; p < top;) {
    uint64_t hd = *(const uint64_t *)p;
    size_t n = obj_bytes(hd);
    if (hdr_type(hd) != FH_FILLER_TYPE) {
      if (f->nisl && f->isl[f->nisl - 1].hi == p) f->isl[f->nisl - 1].hi = p + n;
      else if (push_range(&f->isl, &f->nisl, &f->isl_cap, p, p + n) < 0) goto oom;
      f->island_bytes += n;
    }
    p += n;
  }
  const pin_set *s = &h->pins;
  uintptr_t flo = from->space.begin, fhi = atomic_load(&from->top);
  size_t i0 = 0, i1 = 0;
  if (s->gathered) {
    i0 = pin_set_lower_bound(s, flo);
    i1 = pin_set_lower_bound(s, fhi);
  }
  if (i1 > i0) {
    f->pin_start = malloc((i1 - i0) * sizeof *f->pin_start);
    f->pin_hdr = malloc((i1 - i0) * sizeof *f->pin_hdr);
    if (!f->pin_start || !f->pin_hdr) goto oom;
  }
  /* The copy fits: at worst everything of from-space lands above the last
   * island (the heap keeps each half's top under half of heap_max, so
   * this holds unless the address range is smaller than heap_max). */
  uintptr_t last = f->nisl ? f->isl[f->nisl - 1].hi : lo;
  if (last - lo + (fhi - flo) > to->space.end - lo) {
    fh_error_set("semi-space collection: to-space cannot hold the copy beside the %zu objects "
                 "pinned there (%zu bytes)", f->nisl, f->island_bytes);
    semi_fixed_destroy(f);
    return -1;
  }
  /* Committed from here: nothing below fails. */
  for (size_t i = i0; i < i1; i++) {
    uintptr_t start = s->starts[i];
    uint64_t *hp = (uint64_t *)start;
    f->pin_start[f->npins] = start;
    f->pin_hdr[f->npins++] = *hp;
    f->pinned_bytes += obj_bytes(*hp);
    *hp = hdr_make_forward(obj_from_start(start));
  }
  bump_space_clear_starts(to, lo, top);
  for (size_t i = 0; i < f->nisl; i++) bump_space_note_start(to, f->isl[i].lo);
  atomic_store(&to->top, lo);
  if (f->nisl) f->copy_next = f->scan_next = f->isl[0].lo;
  return 0;
oom:
  fh_error_set("semi-space collection: out of memory for the list of pinned objects");
  semi_fixed_destroy(f);
  return -1;
}

uintptr_t semi_fixed_skip(semi_fixed *f, bump_space *to, uintptr_t dst, size_t need) {
  while (dst + need > f->copy_next) {
    const bump_hole *i = &f->isl[f->copy_i];
    if (i->lo > dst) to_gap(f, to, dst, i->lo);
    dst = i->hi;
    f->copy_i++;
    f->copy_next = f->copy_i < f->nisl ? f->isl[f->copy_i].lo : UINTPTR_MAX;
  }
  return dst;
}

void semi_fixed_each(const semi_fixed *f, void (*visit)(void *obj, uint64_t hdr, void *ctx),
                     void *ctx) {
  for (size_t i = 0; i < f->nisl; i++)
    for (uintptr_t p = f->isl[i].lo; p < f->isl[i].hi;) {
      uint64_t hd = *(const uint64_t *)p;
      visit(obj_from_start(p), hd, ctx);
      p += obj_bytes(hd);
    }
  for (size_t i = 0; i < f->npins; i++) visit(obj_from_start(f->pin_start[i]), f->pin_hdr[i], ctx);
}

void semi_fixed_restore(semi_fixed *f) {
  for (size_t i = 0; i < f->npins; i++) *(uint64_t *)f->pin_start[i] = f->pin_hdr[i];
}

void semi_fixed_finish_to(semi_fixed *f, bump_space *to) {
  uintptr_t t = atomic_load(&to->top);
  for (; f->copy_i < f->nisl; f->copy_i++) {
    const bump_hole *i = &f->isl[f->copy_i];
    if (i->lo > t) to_gap(f, to, t, i->lo);
    t = i->hi;
  }
  f->copy_next = UINTPTR_MAX;
  atomic_store(&to->top, t);
}

void semi_fixed_publish(semi_fixed *f, bump_space *to) {
  if (!f->nholes) return;
  bump_space_set_holes(to, f->holes, f->nholes); /* ownership passes */
  f->holes = NULL;
  f->nholes = f->holes_cap = 0;
}

/* A gap of the old from-space: poisoned (verify=1) or its pages above
 * keep_end given back, then fillers. */
static void idle_gap(bump_space *b, uintptr_t lo, uintptr_t hi, uintptr_t keep_end, int poison) {
  if (poison) heap_poison(lo, hi);
  bump_space_write_fillers(b, lo, hi);
  if (poison) return;
  for (uintptr_t p = lo; p < hi;) {
    uintptr_t n = hi - p > BUMP_FILLER_MAX ? BUMP_FILLER_MAX : hi - p;
    uintptr_t d = p + FH_HEADER_BYTES > keep_end ? p + FH_HEADER_BYTES : keep_end;
    if (d < p + n) (void)reserve_discard(d, p + n - d); /* aligns inward */
    p += n;
  }
}

/* The runs of adjacent pinned objects just kept, for the next cycle
 * (take_recorded); without memory it walks instead. */
static void record(semi_fixed *f, fh_heap *h, uintptr_t top) {
  bump_hole *runs = malloc(f->npins * sizeof *runs);
  if (!runs) return;
  size_t n = 0;
  for (size_t i = 0; i < f->npins; i++) {
    uintptr_t a = f->pin_start[i], e = a + obj_bytes(f->pin_hdr[i]);
    if (n && runs[n - 1].hi == a) runs[n - 1].hi = e;
    else runs[n++] = (bump_hole){a, e};
  }
  h->semi_islands.runs = runs;
  h->semi_islands.n = n;
  h->semi_islands.bytes = f->pinned_bytes;
  h->semi_islands.top = top;
  h->semi_islands.at = h->collections + 1; /* counted once the collection returns */
}

void semi_fixed_keep_pinned(semi_fixed *f, fh_heap *h, bump_space *from, size_t keep, int poison) {
  uintptr_t b = from->space.begin, top = atomic_load(&from->top);
  bump_space_note_written(from);
  bump_space_clear_starts(from, b, top);
  bump_space_set_holes(from, NULL, 0);
  uintptr_t keep_end = align_up(b + keep, FH_PAGE);
  if (poison && keep_end < align_up(top, FH_PAGE)) keep_end = align_up(top, FH_PAGE);
  uintptr_t p = b;
  for (size_t i = 0; i < f->npins; i++) {
    uintptr_t start = f->pin_start[i];
    if (start > p) idle_gap(from, p, start, keep_end, poison);
    bump_space_note_start(from, start);
    p = start + obj_bytes(f->pin_hdr[i]);
  }
  if (poison) heap_poison(p, top);
  atomic_store(&from->top, p);
  record(f, h, p);
  /* Above the last pinned object and the kept window the pages go back
   * (they read as zero again). */
  uintptr_t d = align_up(p, FH_PAGE);
  if (d < keep_end) d = keep_end;
  if (d < from->dirty_end) {
    (void)reserve_discard(d, align_up(from->dirty_end, FH_PAGE) - d);
    from->dirty_end = d;
  }
}
