/* The large-object space (issue 19): objects whose payload is at least
 * los_threshold bytes get whole pages of their own in one range of the
 * heap's reservation, and are never copied or slid.  As ART's FreeListSpace
 * (not its LargeObjectMapSpace, one mmap per object): a free-page allocator
 * over a range mapped once, read-write and MAP_NORESERVE, so that
 *   - the space is one VMA, whatever is allocated or freed (an mmap per
 *     object would split the reservation into VMAs at every object, and a
 *     munmap'd hole would have to be re-reserved PROT_NONE);
 *   - "is this a large object" is one range test, the card table covers
 *     the space, and the heap's address checks (heap_containing, the
 *     barrier's span, conservative roots) need nothing new;
 *   - side tables index objects by page.
 * A free object's pages go back to the kernel with MADV_DONTNEED (and so
 * read as zero when they are handed out again).
 *
 * An object starts at a page boundary: header at the page's start, payload
 * 8 bytes in, and takes whole pages (its size rounded up).  Two side
 * bitmaps with one bit per page say where objects start (set after the
 * header is written) and which are marked; neither dirties an object page.
 * Allocation takes the space's lock (large allocations are rare); marking
 * sets bits atomically (the parallel marker's helpers mark at once); the
 * sweep runs with the world stopped. */
#ifndef FH_LARGE_OBJECT_SPACE_H_
#define FH_LARGE_OBJECT_SPACE_H_

#include <pthread.h>
#include <stdatomic.h>

#include "heap/object.h"
#include "spaces/bitmap.h"
#include "spaces/discard_batch.h"
#include "spaces/reserve.h"
#include "spaces/space.h"

#define LOS_PAGE_SHIFT 12

typedef struct los_run { /* free pages [begin, begin + bytes) below the frontier */
  uintptr_t begin;
  size_t bytes;
} los_run;

typedef struct large_object_space {
  fh_space space;
  fh_bitmap starts; /* one bit per page: an object starts here */
  fh_bitmap marks;  /* one bit per page: the object starting here is marked */
  /* One bit per page: the object starting here held no reference to a
   * collectable object when its card was last cleared (heap/large_objects.h). */
  fh_bitmap quiet;
  /* One bit per page: quiet was computed since the card was last cleared. */
  fh_bitmap checked;
  pthread_mutex_t lock; /* runs, frontier's growth */
  los_run *runs;        /* free runs below the frontier, by address */
  size_t nruns, runs_cap;
  _Atomic uintptr_t frontier; /* end of the pages ever handed out (lowered by sweeps) */
  _Atomic size_t used;        /* bytes of objects (whole pages) */
  _Atomic size_t objects;
  /* The sweep gives dead objects' pages back in vectors (one
   * process_madvise per 512 objects, not one madvise each). */
  discard_batch batch;
  /* Figures for fh_dump and tests. */
  uint64_t freed_objects, discard_failures;
  size_t lost_bytes; /* freed pages no run could record (no memory): unusable */
} large_object_space;

/* [begin, begin + capacity) is already mapped read-write (reserve_commit). */
int los_init(large_object_space *s, uintptr_t begin, size_t capacity);
void los_destroy(large_object_space *s);

/* Bytes an object of `payload` bytes takes: whole pages. */
static inline size_t los_object_bytes(size_t payload) {
  return align_up(payload + FH_HEADER_BYTES, FH_PAGE);
}
/* A zeroed object with its header written, or NULL when no run of the
 * range is long enough (the heap_max check is the caller's). */
void *los_alloc(large_object_space *s, uint32_t type, size_t payload);

static inline int los_contains(const large_object_space *s, const void *p) {
  return (uintptr_t)p - s->space.begin < s->space.end - s->space.begin;
}
/* Set obj's mark bit (payload pointer); its previous value. */
static inline int los_mark(large_object_space *s, const void *obj) {
  return bitmap_test_and_set(&s->marks, obj_start(obj));
}
static inline int los_is_marked(const large_object_space *s, const void *obj) {
  return bitmap_test(&s->marks, obj_start(obj));
}
static inline int los_is_quiet(const large_object_space *s, const void *obj) {
  return bitmap_test(&s->quiet, obj_start(obj));
}
/* Is start (a header address) the start of an object? */
static inline int los_is_start(const large_object_space *s, uintptr_t start) {
  return start - s->space.begin < s->space.end - s->space.begin && !(start & (FH_PAGE - 1)) &&
         bitmap_test(&s->starts, start);
}
/* The start of the object whose memory holds a (any byte of it), or 0. */
uintptr_t los_object_at(const large_object_space *s, uintptr_t a);

/* Every marked object (overflow recovery of the markers). */
void los_walk_marked(large_object_space *s, fh_object_fn fn, void *ctx);
/* Free every object without a mark bit (its pages go back to the kernel),
 * then clear the marks.  World stopped.  Returns the bytes freed. */
size_t los_sweep(large_object_space *s);
/* Free every object whose header is forwarded (zygote compaction copied
 * it); the others stay.  World stopped. */
void los_release_forwarded(large_object_space *s);
/* Forget this cycle's marks (a collection that failed after marking). */
void los_clear_marks(large_object_space *s);

#endif
