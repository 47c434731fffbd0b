/* A jemalloc arena whose memory comes only from one reserved address range.
 *
 * jemalloc provides size classes and free lists; our extent hooks hand it
 * extents from [begin, end) in address order and never give memory back to
 * the kernel except through purging (madvise), so every object and all of
 * the arena's own metadata stay inside the range.  Thread caches are
 * bypassed (MALLOCX_TCACHE_NONE): a cached free object would be invisible to
 * the heap's allocation bitmap, and a cached dead one would survive a reset. */
#ifndef FH_ARENA_H_
#define FH_ARENA_H_

#include <jemalloc/jemalloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fh_arena {
  extent_hooks_t hooks; /* first: jemalloc hands the hooks pointer back */
  unsigned index;       /* jemalloc arena index */
  uintptr_t begin, end;
  _Atomic uintptr_t frontier; /* extents are carved below this */
} fh_arena;

int arena_create(fh_arena *a, uintptr_t begin, size_t size);
void arena_destroy(fh_arena *a);
/* Zeroed, 16-byte aligned; NULL when the range is exhausted. */
void *arena_alloc(fh_arena *a, size_t bytes);
void arena_free(fh_arena *a, void *p);
/* Return every unused dirty page of the arena to the system. */
void arena_purge(fh_arena *a);
/* Bytes of the range handed to jemalloc so far. */
static inline size_t arena_mapped(const fh_arena *a) {
  return atomic_load_explicit(&a->frontier, memory_order_relaxed) - a->begin;
}

#endif
