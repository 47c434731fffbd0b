/* Pins: objects that must not move in a collection.
 *
 * Two sources feed them.  fh_pin records the object on the calling
 * thread's own list (repeats count: pin twice, unpin twice); with
 * stack_roots=conservative, every word of every attached thread's stack
 * and saved registers that points into an object pins that object for the
 * collection (heap/conservative.c).  With the world stopped and TLABs
 * retired, pins_gather turns both into h->pins: the sorted, distinct start
 * addresses (headers) of the pinned objects, whatever space holds them.
 *
 * What collectors do with them:
 *   - every pinned object is a root: roots_visit visits each through a
 *     scratch slot (the pin's own record is never rewritten; a collector
 *     that "moved" a pinned object is caught by verify=1);
 *   - a moving collector leaves each pinned object of the space it
 *     compacts at its address (pin_set_has / pin_set_lower_bound), and the
 *     object's pages mapped.
 * The set is valid from pins_gather to pins_release, both with the world
 * stopped (gc_run, fh_prefork). */
#ifndef FH_PINS_H_
#define FH_PINS_H_

#include <stddef.h>
#include <stdint.h>

#include "faultheap.h"

#define PIN_SEEN_BITS 12
#define PIN_SEEN_SLOTS (1u << PIN_SEEN_BITS)

typedef struct pin_set {
  uintptr_t *starts; /* object start addresses, ascending, distinct */
  size_t n, cap;
  /* This collection: distinct objects pinned by fh_pin, and by stack
   * words (an object can be both), and the words that were looked up. */
  size_t explicit_objects, conservative_objects, words_scanned;
  uint64_t scan_ns; /* time spent scanning stacks (conservative) */
  int gathered;     /* between pins_gather and pins_release */
  uintptr_t *seen;  /* the conservative scan's lookup memo (heap/conservative.c) */
  /* Across collections (pins_account, under stats_lock; fh_get_stats). */
  uint64_t last_pinned, last_conservative, words_total, scan_ns_total, scan_ns_max;
} pin_set;

/* World stopped, TLABs retired: build h->pins.  0, or -1 + fh_last_error()
 * (out of memory): nothing may move then, the caller must not collect. */
int pins_gather(fh_heap *h, fh_thread *self);
void pins_release(fh_heap *h);
/* Add this collection's figures to the totals (stats_lock held). */
void pins_account(fh_heap *h);
/* Add the object starting at `start` (pins_gather sorts and dedups at the
 * end).  0 or -1 (out of memory, error set). */
int pin_set_add(pin_set *s, uintptr_t start);

/* Index of the first pinned start >= a (s->n: none). */
static inline size_t pin_set_lower_bound(const pin_set *s, uintptr_t a) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->starts[mid] < a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
/* The object starting at `start` is pinned this collection. */
static inline int pin_set_has(const pin_set *s, uintptr_t start) {
  size_t i = pin_set_lower_bound(s, start);
  return i < s->n && s->starts[i] == start;
}
/* Any pinned object starts in [lo, hi). */
static inline int pin_set_any_in(const pin_set *s, uintptr_t lo, uintptr_t hi) {
  size_t i = pin_set_lower_bound(s, lo);
  return i < s->n && s->starts[i] < hi;
}

/* roots_visit's part: each pinned object, as a root. */
void pins_visit_roots(fh_heap *h, fh_visit_fn visit, void *ctx);
/* fh_thread_detach: the thread's pins go. */
void pins_thread_drop(fh_thread *t);
/* Heap teardown. */
void pins_destroy(fh_heap *h);

#endif
