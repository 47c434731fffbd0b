/* A bump-pointer space: objects are laid out back to back from `begin`.
 * Threads carve thread-local allocation buffers (TLABs) out of it with one
 * atomic add; a retired buffer's unused tail becomes a filler object, so the
 * space is always walkable from begin to top.
 * Invariant: every byte in [top, end) reads as zero (collectors discard the
 * pages they empty), so allocation never has to clear memory. */
#ifndef FH_BUMP_SPACE_H_
#define FH_BUMP_SPACE_H_

#include <stdatomic.h>

#include "spaces/space.h"

typedef struct bump_space {
  fh_space space;
  _Atomic uintptr_t top;
} bump_space;

void bump_space_init(bump_space *b, const char *name, uintptr_t begin, size_t capacity);
/* Claim [result, result + bytes) or return 0 when it would pass `limit`. */
static inline uintptr_t bump_space_claim(bump_space *b, size_t bytes, uintptr_t limit) {
  uintptr_t old = atomic_load_explicit(&b->top, memory_order_relaxed);
  do {
    if (bytes > limit - old || old > limit) return 0;
  } while (!atomic_compare_exchange_weak_explicit(&b->top, &old, old + bytes,
                                                  memory_order_relaxed, memory_order_relaxed));
  return old;
}
static inline size_t bump_space_used(const bump_space *b) {
  return atomic_load_explicit(&b->top, memory_order_relaxed) - b->space.begin;
}
/* Empty the space and give its pages back (they read as zero again). */
void bump_space_reset(bump_space *b);
/* Zero [from, top) and make `from` the new top (after sliding compaction). */
void bump_space_truncate(bump_space *b, uintptr_t from);

#endif
