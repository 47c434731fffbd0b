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

#include "heap/sys.h"

typedef struct fh_arena fh_arena;
/* The hooks jemalloc was given.  jemalloc keeps that pointer for good (its
 * metadata allocations use it even after arena.<i>.extent_hooks is
 * rewritten), so the hooks live in a block of their own that points back at
 * the fh_arena: a struct copy of an fh_arena (zygote compaction freezes a
 * non-moving space's arena that way) is followed by arena_moved(). */
typedef struct arena_hooks {
  extent_hooks_t hooks; /* first: jemalloc hands this pointer back */
  fh_arena *owner;
} arena_hooks;

struct fh_arena {
  arena_hooks *hooks;   /* NULL: no arena */
  unsigned index;       /* jemalloc arena index */
  uintptr_t begin, end;
  _Atomic uintptr_t frontier; /* extents are carved below this */
  /* verify=1 (arena_guard): [frontier, guarded_end) is PROT_NONE, so a
   * stale pointer into memory a compaction vacated faults at once; each
   * extent carved there is made read-write again first. */
  _Atomic uintptr_t guarded_end;
};
static inline void arena_moved(fh_arena *a) {
  if (a->hooks) a->hooks->owner = a;
}

int arena_create(fh_arena *a, uintptr_t begin, size_t size);
/* arena_create in two steps, for a space that may never need jemalloc:
 * arena_open only records the range (frontier at its start, no jemalloc
 * call); arena_start creates the jemalloc arena, which carves its extents
 * from the frontier as it then is (the space may have used the range below
 * it by itself).  Until started, destroy and purge do nothing and no
 * allocation may be made from it (hooks is NULL).  Why wait: the process's
 * first mallctl costs ~0.065 ms (jemalloc's ctl statistics, ~40 page
 * faults) and arenas.create ~0.045 more, with ~0.2 MiB resident. */
void arena_open(fh_arena *a, uintptr_t begin, size_t size);
int arena_start(fh_arena *a);
/* The size of range an arena needs so that `limit` bytes of allocations
 * fit, and one allocation of `limit` bytes fits in the empty arena: besides
 * the objects, jemalloc keeps its own metadata in the range (the first
 * block, carved at arenas.create, is a whole huge page) and rounds each
 * allocation up to its size class (a large one also gets a page of pad).
 * A range of exactly `limit` bytes loses 2 MiB to the metadata: a 1 or 2
 * MiB space could not hold a single object. */
/* jemalloc's size class of a request (what nallocx says), computed: not
 * asked of jemalloc, whose first call initialises it (its code and
 * metadata, ~1 MiB resident), and arena_range_bytes runs at every heap's
 * creation, in processes whose heap may never start an arena. */
size_t arena_size_class(size_t bytes);
size_t arena_range_bytes(size_t limit);
void arena_destroy(fh_arena *a);
/* Zeroed, 16-byte aligned; NULL when the range is exhausted. */
void *arena_alloc(fh_arena *a, size_t bytes);
void arena_free(fh_arena *a, void *p);
/* Return every unused dirty page of the arena to the system. */
void arena_purge(fh_arena *a);
/* verify=1, after a reset: make the range from the frontier up to `upto`
 * inaccessible until jemalloc carves it again.  0, or -1 (mprotect failed:
 * nothing guarded). */
int arena_guard(fh_arena *a, uintptr_t upto);

/* Forget every allocation at once and give the whole range back to the
 * system (destroy + recreate over the same range: jemalloc's own metadata
 * lives in the range too, so a plain arena.<i>.reset followed by madvise of
 * the range would wipe it).  Every explicit tcache that ever held memory of
 * this arena must have been flushed first.  0, or -1 + error (the arena is
 * then unusable: its index is 0 and allocations fail). */
int arena_reset(fh_arena *a);

/* Explicit thread caches (mallctl tcache.create).  jemalloc's caches are
 * keyed by size class, not by arena, so one tcache must only ever serve one
 * arena between flushes.  Returns the id, or -1 + error. */
int arena_tcache_create(void);
/* 0, or -1 + error: the cache still holds regions, and must not serve
 * another arena, nor may their arena be reset, until a flush succeeds. */
int arena_tcache_flush(int tcache);
void arena_tcache_destroy(int tcache);
/* Zeroed, at least 16-byte aligned for bytes >= 16 (jemalloc's size classes
 * from 16 up are multiples of 16); tcache < 0 bypasses caching. */
static inline void *arena_alloc_cached(fh_arena *a, size_t bytes, int tcache) {
  return sys_mallocx(bytes, MALLOCX_ARENA(a->index) | MALLOCX_ZERO |
                            (tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE((unsigned)tcache)));
}
static inline void arena_free_cached(void *p, int tcache) {
  dallocx(p, tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE((unsigned)tcache));
}
/* Bytes of the range handed to jemalloc so far. */
static inline size_t arena_mapped(const fh_arena *a) {
  return atomic_load_explicit(&a->frontier, memory_order_relaxed) - a->begin;
}

#endif
