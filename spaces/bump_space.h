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

#include "spaces/space.h"

typedef struct bump_space {
  fh_space space;
  _Atomic uintptr_t top;
  uintptr_t dirty_end; /* changes only with the world stopped */
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
