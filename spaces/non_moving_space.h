/* The non-moving space: objects that never move (fh_alloc_nonmoving), on a
 * jemalloc arena over the space's range.  jemalloc cannot enumerate its
 * allocations, so an allocation bitmap (one bit per 16-byte granule) records
 * where objects start; only that bitmap says what an object is, so the
 * arena's metadata in the same range is never mistaken for one.  A side mark
 * bitmap of the same shape serves mark-sweep. */
#ifndef FH_NON_MOVING_SPACE_H_
#define FH_NON_MOVING_SPACE_H_

#include <stdatomic.h>

#include "heap/object.h"
#include "spaces/arena.h"
#include "spaces/bitmap.h"
#include "spaces/space.h"

#define NM_GRANULE_SHIFT 4

typedef struct non_moving_space {
  fh_space space;
  fh_arena arena;
  fh_bitmap alloc_bits;
  fh_bitmap mark_bits;
  _Atomic size_t used;    /* bytes of live-or-unswept objects, headers included */
  size_t limit;           /* capacity in object bytes */
  /* The jemalloc arena is started on demand (spaces/arena.h): until then,
   * objects are bump-allocated from the range's first NM_PREFIX_BYTES
   * (arena.frontier is the bump pointer), under start_lock.  Objects below
   * prefix_end were allocated so: swept ones are only forgotten (their
   * bytes are not reused), so at most NM_PREFIX_BYTES is lost.  Set before
   * the arena starts and never changed after (read by the sweep). */
  _Atomic int arena_ready;
  _Atomic int start_failed; /* the last attempt to start it failed (error set) */
  atomic_flag start_lock;
  uintptr_t prefix_end;
} non_moving_space;

/* A boot from a heap image, or a small program, compiles a little code
 * (fhscheme: a few KiB for `-e 1`) and never needs a jemalloc arena. */
#define NM_PREFIX_BYTES ((size_t)256 << 10)

/* capacity: the range (spaces/arena.h: arena_range_bytes); limit: object
 * bytes it may hold (at most the capacity). */
int non_moving_space_init(non_moving_space *s, const char *name, uintptr_t begin,
                          size_t capacity, size_t limit);
void non_moving_space_destroy(non_moving_space *s);
/* A zeroed object with its header written, or NULL (space full). */
void *non_moving_space_alloc(non_moving_space *s, uint32_t type, size_t payload);
/* For a collector copying an object in (gen_semispace's promotion): room
 * for `bytes` (a multiple of 16), counted in `used`, not zeroed, through
 * the explicit jemalloc tcache `tcache` (< 0: none; the caller flushes it
 * before mutators run again).  The caller writes the object, then
 * publishes it (its allocation bit).  NULL: the space is full. */
void *non_moving_space_alloc_raw(non_moving_space *s, size_t bytes, int tcache);
static inline void non_moving_space_publish(non_moving_space *s, void *start) {
  bitmap_set(&s->alloc_bits, (uintptr_t)start);
}
/* Free every allocated object without a mark bit, then clear the marks.
 * World stopped.  Returns the bytes freed. */
size_t non_moving_space_sweep(non_moving_space *s);
static inline int non_moving_space_mark(non_moving_space *s, const void *obj) {
  return bitmap_test_and_set(&s->mark_bits, (uintptr_t)obj - 8);
}
static inline size_t non_moving_object_bytes(size_t payload) {
  size_t b = (payload + 8 + 15) & ~(size_t)15;
  return b;
}
/* Bytes the object with header hd takes (its hash word included). */
static inline size_t non_moving_object_bytes_hd(uint64_t hd) {
  return (obj_bytes(hd) + 15) & ~(size_t)15;
}

#endif
