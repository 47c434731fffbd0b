/* Mostly-copying semispace (Bartlett): the objects a copying cycle may
 * not move, and the to-space layout around them.
 *
 * Two kinds of object stay where they are in a semispace cycle:
 *   - the pinned objects of from-space (the active half).  During the trace
 *     each one's header reads as forwarded to itself, so the copier's
 *     one test (hdr_is_forwarded) leaves every reference to it alone at no
 *     cost on the fast path; its real header is kept here, used to scan
 *     it, and put back once weak references are settled.  After the cycle
 *     they are the idle half's *islands*: that half holds them at their
 *     addresses, a filler over each gap between them, its top right after
 *     the last one (walkable as any bump space);
 *   - the islands the previous cycle left in what is now to-space.  They
 *     are kept whole, live or not (conservatively: a dead one lives one
 *     cycle longer), scanned as roots, and the copy is laid down around
 *     them: the copier skips each island (a filler over the bytes it could
 *     not use before it), the Cheney scan jumps over it.  After the cycle
 *     they are ordinary objects of the active half, copied by the next
 *     cycle unless pinned again.
 * Gaps left in to-space (before islands the copy did not reach, and the
 * unused ends before skipped ones) become holes, which TLAB refills carve
 * before the top grows (spaces/bump_space.h).
 *
 * So only pinned objects ever stay behind, object by object, and only for
 * as long as they are pinned plus one cycle.  Memory: h->semi_idle_bytes
 * counts the idle half's islands under heap_max (heap_bump_room). */
#ifndef FH_SEMI_FIXED_H_
#define FH_SEMI_FIXED_H_

#include <stddef.h>
#include <stdint.h>

#include "heap/heap.h"
#include "spaces/bump_space.h"

typedef struct semi_fixed {
  /* Islands of to-space: runs of adjacent objects, ascending. */
  bump_hole *isl;
  size_t nisl, isl_cap;
  size_t island_bytes;      /* their objects' bytes */
  size_t copy_i, scan_i;    /* next island the copier / the Cheney scan meets */
  uintptr_t copy_next;      /* isl[copy_i].lo, or UINTPTR_MAX */
  uintptr_t scan_next;      /* isl[scan_i].lo, or UINTPTR_MAX */
  /* Pinned objects of from-space: start and real header. */
  uintptr_t *pin_start;
  uint64_t *pin_hdr;
  size_t npins, pinned_bytes;
  /* Gaps of to-space that become holes. */
  bump_hole *holes;
  size_t nholes, holes_cap;
  int oom; /* a list could not grow: fewer holes offered (harmless) */
} semi_fixed;

/* World stopped, before anything is traced.  Lists to-space's islands and
 * empties it around them; marks from-space's pinned objects as forwarded
 * to themselves.  0, or -1 + fh_last_error() with nothing changed (out of
 * memory, or to-space could not hold the copy around its islands). */
int semi_fixed_begin(semi_fixed *f, fh_heap *h, bump_space *from, bump_space *to);
/* The copy of `need` bytes would reach the next island at `dst`: skip
 * islands until it fits; the new destination.  A filler covers what is
 * skipped. */
uintptr_t semi_fixed_skip(semi_fixed *f, bump_space *to, uintptr_t dst, size_t need);
/* The Cheney scan reached isl[scan_i].lo: where it goes on. */
static inline uintptr_t semi_fixed_scan_jump(semi_fixed *f) {
  uintptr_t hi = f->isl[f->scan_i].hi;
  f->scan_i++;
  f->scan_next = f->scan_i < f->nisl ? f->isl[f->scan_i].lo : UINTPTR_MAX;
  return hi;
}
/* Every kept object once, as a root: visit(obj, real header, ctx). */
void semi_fixed_each(const semi_fixed *f, void (*visit)(void *obj, uint64_t hdr, void *ctx),
                     void *ctx);
/* After the trace and weak processing: the pinned objects' headers back. */
void semi_fixed_restore(semi_fixed *f);
/* To-space once the copy is done: fillers up to the islands above its top,
 * the top after the last one.  The holes are published by
 * semi_fixed_publish, once to-space is the active half. */
void semi_fixed_finish_to(semi_fixed *f, bump_space *to);
void semi_fixed_publish(semi_fixed *f, bump_space *to);
/* The old from-space: keep its pinned objects (fillers over the gaps,
 * top after the last one, walk points), give back gap pages above
 * `keep` bytes (all of them kept with `poison`: verify=1 poisons the gaps
 * instead, so stale pointers read FH_POISON). */
void semi_fixed_keep_pinned(semi_fixed *f, fh_heap *h, bump_space *from, size_t keep, int poison);
/* Drop the islands recorded for the next cycle (heap teardown; any
 * semispace cycle replaces them). */
void semi_fixed_forget(fh_heap *h);
void semi_fixed_destroy(semi_fixed *f);

#endif
