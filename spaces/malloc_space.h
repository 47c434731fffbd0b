/* A malloc space (ART's RosAlloc/DlMalloc space): with collector=mark_sweep,
 * movable objects live here instead of in bump spaces.  Memory comes from a
 * jemalloc arena whose extent hooks carve only this space's reserved range
 * (spaces/arena.c); jemalloc supplies the size classes and free lists.
 *
 * jemalloc cannot enumerate its allocations, so a side allocation bitmap
 * (one bit per 16-byte granule) says exactly which objects exist: the bit is
 * set after the header is written and cleared by the sweeper before the
 * object goes back to jemalloc.  Mutators allocate through explicit
 * per-thread tcaches (fast, no arena lock); a tcache only ever holds memory
 * that is *not* an object (free slots), so it cannot hide an object from the
 * sweeper, and every collection flushes all tcaches before it frees or
 * resets anything.
 *
 * The heap has two of these of the same capacity, main and backup:
 * homogeneous compaction copies main's live objects into backup, resets
 * main (arena destroyed and recreated, range discarded) and swaps roles. */
#ifndef FH_MALLOC_SPACE_H_
#define FH_MALLOC_SPACE_H_

#include <pthread.h>
#include <stdatomic.h>

#include "heap/object.h"
#include "spaces/arena.h"
#include "spaces/bitmap.h"
#include "spaces/space.h"

#define MS_GRANULE_SHIFT 4
#define MS_GRANULE 16u

typedef struct malloc_space {
  fh_space space;
  fh_arena arena;
  fh_bitmap alloc_bits;
  fh_bitmap mark_bits;
  /* Granules covered by objects that marking found live, for run objects
   * (spaces/malloc_runs.c): a run's holes are where it is clear. */
  fh_bitmap cover_bits;
  _Atomic size_t used; /* bytes of allocated objects (16-byte rounded, header included) */
  size_t limit;        /* capacity in object bytes (tests may lower it) */
  /* A sweep running after the pause (malloc_space_sweep_begin/_step):
   * bitmap words [.., sweep_last) not yet claimed start at sweep_next. */
  _Atomic size_t sweep_next;
  size_t sweep_last, sweep_total;
  _Atomic size_t sweep_done;  /* words swept */
  _Atomic size_t sweep_freed; /* bytes freed by this sweep */
  /* How the pending sweep finds dead objects.  0 (prepare_sweep): the mark
   * bitmap was turned into the dead bitmap.  1 (sweep_begin): the two
   * bitmaps were swapped, so mark_bits holds the allocation bits as they
   * were at the pause and alloc_bits the marked objects (plus what mutators
   * allocate since): dead = mark & ~alloc, found word by word as the sweep
   * goes, which leaves mark_bits clear behind it. */
  int sweep_swapped;
  /* Runs (spaces/malloc_runs.c): per page of the range, run_page says
   * which page of a run it is (0: none, 1: the first); per first page,
   * run_state and the free-list link run_next (page index + 1). */
  _Atomic uint8_t *run_page;
  _Atomic uint8_t *run_state;
  _Atomic uint8_t *run_cold; /* per first page: pages discarded since listed */
  uint32_t *run_next;
  size_t run_table_pages;             /* pages the tables cover */
  pthread_mutex_t run_lock;           /* the two lists */
  int run_lock_ready;
  uint32_t run_partial, run_empty;    /* list heads (page index + 1; 0: empty) */
  size_t run_nempty;                  /* runs on run_empty */
  _Atomic size_t runs;                /* runs carved from jemalloc */
  /* This sweep derives the runs' cover bits from the survivors' headers
   * instead of trusting marking's: concurrent marking leaves them alone
   * (collectors/mark.h).  Set in the pause that begins the sweep. */
  int derive_cover;
} malloc_space;

int malloc_space_init(malloc_space *s, const char *name, uintptr_t begin, size_t capacity,
                      size_t limit);
void malloc_space_destroy(malloc_space *s);

/* ---- runs (spaces/malloc_runs.c) ----
 * Objects up to MS_RUN_OBJ_MAX bytes are bump-allocated into the holes of
 * runs: 28 KiB jemalloc allocations of the space's arena that the heap
 * carves itself (one jemalloc call per run, none per object). */
#define MS_RUN_PAGES 7u
#define MS_RUN_BYTES ((size_t)MS_RUN_PAGES * 4096u)
#define MS_RUN_WORDS (MS_RUN_BYTES >> (MS_GRANULE_SHIFT + 6)) /* bitmap words */
#define MS_RUN_OBJ_MAX 512u
/* Homogeneous compaction packs live objects up to this many bytes into
 * fresh runs (collectors/hspace_compact.c): no size-class rounding. */
#define MS_RUN_PACK_MAX 4096u
#define MS_RUN_MIN_ROOM (MS_RUN_BYTES / 32) /* less free: not worth listing */
enum { MS_RUN_HELD = 1, MS_RUN_LISTED = 2, MS_RUN_TO_SWEEP = 3 };

int malloc_runs_init(malloc_space *s);
void malloc_runs_destroy(malloc_space *s);
/* A new run from jemalloc (owned by the caller), or 0 when jemalloc has no
 * room in the range. */
uintptr_t malloc_run_new(malloc_space *s);
/* A swept run with room (partial ones first), owned by the caller, or 0. */
uintptr_t malloc_run_pop(malloc_space *s);
/* An empty run from the lists, or 0. */
uintptr_t malloc_run_pop_empty(malloc_space *s);
/* Give the runs on the empty list back to jemalloc. */
void malloc_runs_release_empty(malloc_space *s);
/* End of a sweep: the empty runs past the `keep` lowest stay listed with
 * their pages discarded; past a cap they go back to jemalloc. */
void malloc_runs_trim_empty(malloc_space *s, size_t keep);
/* World stopped, before a sweep: every run up to `end` is to be swept, and
 * the lists are emptied (their runs are among them). */
void malloc_runs_begin_sweep(malloc_space *s, uintptr_t end);
/* Before a marking that cannot fail (world stopped): the runs still
 * listed forget their cover bits, which that marking sets again.  (Never
 * before one that may fail: a listed run's bits must cover every live
 * object in it.) */
void malloc_runs_clear_listed(malloc_space *s);
/* A thread is done with `run`: its cover bits go (heap/malloc_heap.c). */
void malloc_run_clear_cover(malloc_space *s, uintptr_t run);
/* The arena is gone (reset): no runs. */
void malloc_runs_forget(malloc_space *s, uintptr_t end);
/* Sweep the run whose first page is `page` if it is still to be swept:
 * clear its dead objects' bits, then hand it to *adopt (when adopt and
 * *adopt == 0) if it has room, else list it (empty or partial).  Returns
 * the dead objects' bytes when `count`, else 0. */
size_t malloc_run_sweep(malloc_space *s, size_t page, int count, uintptr_t *adopt);

/* Bytes an object of `payload` bytes takes (jemalloc rounds further up to
 * its size class; that slack is the space's internal fragmentation). */
static inline size_t malloc_object_bytes(size_t payload) {
  return (payload + 8 + MS_GRANULE - 1) & ~(size_t)(MS_GRANULE - 1);
}

/* Bytes an object occupying `footprint` bytes (obj_bytes) takes. */
static inline size_t malloc_object_bytes_for(size_t footprint) {
  return (footprint + MS_GRANULE - 1) & ~(size_t)(MS_GRANULE - 1);
}
/* Bytes the object with header hd takes (its hash word included). */
static inline size_t malloc_object_bytes_hd(uint64_t hd) {
  return (obj_bytes(hd) + MS_GRANULE - 1) & ~(size_t)(MS_GRANULE - 1);
}

/* A zeroed object with its header written and its allocation bit set, or
 * NULL when the space's limit would be passed or jemalloc found no memory
 * left in the range (fragmentation, when used + bytes <= limit).
 * tcache < 0: uncached. */
void *malloc_space_alloc(malloc_space *s, uint32_t type, size_t payload, int tcache);
/* Raw memory for a copy of an object (homogeneous compaction): counted in
 * `used`, not zeroed; the caller writes all `bytes` of the object and then
 * publishes it (malloc_space_publish). */
void *malloc_space_alloc_raw(malloc_space *s, size_t bytes, int tcache);
/* The mutator's path: like malloc_space_alloc, but `used` was already
 * charged for it (the heap hands threads prepaid budgets, heap/malloc_heap.c,
 * so the common case touches no shared counter).  NULL: jemalloc found no
 * room in the range. */
static inline void *malloc_space_alloc_prepaid(malloc_space *s, uint32_t type, size_t payload,
                                               int tcache) {
  void *mem = arena_alloc_cached(&s->arena, malloc_object_bytes(payload), tcache);
  if (!mem) return NULL;
  *(uint64_t *)mem = ((uint64_t)payload << 32) | ((uint64_t)type << 8);
  /* Published after the header: a collector that sees the bit (after the
   * stop-the-world handshake) sees the header too. */
  bitmap_set(&s->alloc_bits, (uintptr_t)mem);
  return (char *)mem + 8;
}

/* Make a copy written into malloc_space_alloc_raw memory an object: its
 * allocation bit is set once its header and payload are in place. */
static inline void malloc_space_publish(malloc_space *s, void *start, size_t bytes) {
  (void)bytes;
  bitmap_set(&s->alloc_bits, (uintptr_t)start);
}
/* Free every allocated object without a mark bit (through `tcache`, flushed
 * before returning), clear the marks.  World stopped.  Returns bytes freed. */
size_t malloc_space_sweep(malloc_space *s, int tcache);
/* The same in two steps, so the second can run after the world resumes:
 * prepare (world stopped) turns the mark bitmap over [begin, end) into the
 * bitmap of dead objects (allocated and unmarked); sweep_dead frees them
 * and leaves the mark bitmap clear.  Mutators may allocate during
 * sweep_dead: their new objects are not in the dead bitmap, and a region it
 * frees can be reused at once. */
void malloc_space_prepare_sweep(malloc_space *s, uintptr_t end);
/* The dead objects' bits of bitmap word w of the pending sweep, whichever
 * way it was begun (sweep_swapped); their allocation bits are clear and
 * the word's old marks gone when it returns.  The sweep's own. */
uint64_t malloc_space_take_dead(malloc_space *s, size_t w);
size_t malloc_space_sweep_dead(malloc_space *s, uintptr_t end, int tcache);
/* The same shared out: begin (world stopped) swaps the allocation and mark
 * bitmaps (O(1): no pass over the bitmaps in the pause; see sweep_swapped)
 * and sets a cursor over the words; then any thread may claim and sweep up to `words`
 * words at a time through its own tcache (flush: flush it before the words
 * count as done).  Returns the words claimed, 0 when none are left; the
 * sweep is complete when sweep_done reaches sweep_total. */
/* sweep_begin also takes `used` down to `live` (the bytes marking found)
 * at once, and sweep_freed is then the bytes the sweep will free; steps
 * do not count.  A step that meets a run with room while *adopt == 0
 * hands it over there instead of listing it (malloc_run_sweep). */
void malloc_space_sweep_begin(malloc_space *s, uintptr_t end, size_t live);
size_t malloc_space_sweep_step_adopt(malloc_space *s, size_t words, int tcache, int flush,
                                     uintptr_t *adopt);
static inline size_t malloc_space_sweep_step(malloc_space *s, size_t words, int tcache,
                                             int flush) {
  return malloc_space_sweep_step_adopt(s, words, tcache, flush, NULL);
}
static inline int malloc_space_sweep_pending(const malloc_space *s) {
  return atomic_load_explicit(&s->sweep_next, memory_order_relaxed) < s->sweep_last;
}
/* Forget every object at once: arena destroyed and recreated, range and
 * bitmaps given back to the system.  All tcaches flushed first.  0 or -1. */
int malloc_space_reset(malloc_space *s);
/* After a reset whose arena could not be recreated (arena.end == 0): try
 * again.  0 when the space has an arena, or -1 + error. */
int malloc_space_revive(malloc_space *s);
/* Give unused dirty pages back to the system. */
static inline void malloc_space_purge(malloc_space *s) {
  malloc_runs_release_empty(s); /* the empty runs first: their pages too */
  if (s->arena.end) arena_purge(&s->arena); /* none while unusable (revive) */
}

/* The first granule index in [i, e) whose cover bit is `want` (e: none). */
static inline size_t malloc_run_next_cover(const fh_bitmap *c, size_t i, size_t e, int want) {
  size_t w = i >> 6;
  uint64_t flip = want ? 0 : ~(uint64_t)0;
  uint64_t word = (atomic_load_explicit(&c->words[w], memory_order_relaxed) ^ flip) &
                  (~(uint64_t)0 << (i & 63));
  while (!word) {
    if (++w > (e - 1) >> 6) return e;
    word = atomic_load_explicit(&c->words[w], memory_order_relaxed) ^ flip;
  }
  size_t bit = (w << 6) + (size_t)__builtin_ctzll(word);
  return bit < e ? bit : e;
}

/* The first hole of at least `min` bytes in [from, end) of a swept run (a
 * clear stretch of its cover bits): its start, its end in *hole_end; 0
 * when there is none.  Inline: called about once per hole filled. */
static inline uintptr_t malloc_run_hole(const malloc_space *s, uintptr_t from, uintptr_t end,
                                        size_t min, uintptr_t *hole_end) {
  const fh_bitmap *c = &s->cover_bits;
  size_t i = bitmap_index(c, from), e = bitmap_index(c, end), need = min >> MS_GRANULE_SHIFT;
  while (i + need <= e) {
    size_t z = malloc_run_next_cover(c, i, e, 0);
    if (e - z < need) return 0;
    size_t o = malloc_run_next_cover(c, z, e, 1);
    if (o - z >= need) {
      *hole_end = bitmap_addr(c, o);
      return bitmap_addr(c, z);
    }
    i = o;
  }
  return 0;
}

/* Marking (one thread, world stopped): the live object at `start` covers
 * `bytes`.  Objects too large for a run are never in one: not recorded.
 * Mutators put objects up to MS_RUN_OBJ_MAX in runs, homogeneous
 * compaction up to MS_RUN_PACK_MAX (up to 256 granules: several words). */
static inline void malloc_space_cover(malloc_space *s, uintptr_t start, size_t bytes) {
  if (bytes > MS_RUN_PACK_MAX) return;
  size_t i = bitmap_index(&s->cover_bits, start), n = bytes >> MS_GRANULE_SHIFT;
  while (n) {
    unsigned b = (unsigned)(i & 63);
    size_t k = 64 - b < n ? 64 - b : n;
    uint64_t bits = (k == 64 ? ~(uint64_t)0 : ((uint64_t)1 << k) - 1) << b;
    _Atomic uint64_t *w = &s->cover_bits.words[i >> 6];
    atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) | bits,
                          memory_order_relaxed);
    i += k;
    n -= k;
  }
}

static inline int malloc_space_mark(malloc_space *s, const void *obj) {
  return bitmap_test_and_set(&s->mark_bits, (uintptr_t)obj - 8);
}
static inline int malloc_space_is_marked(const malloc_space *s, const void *obj) {
  return bitmap_test(&s->mark_bits, (uintptr_t)obj - 8);
}
static inline size_t malloc_space_used(const malloc_space *s) {
  return atomic_load_explicit(&s->used, memory_order_relaxed);
}
/* End of the part of the range jemalloc has been given (walks stop here). */
static inline uintptr_t malloc_space_frontier(const malloc_space *s) {
  return s->space.begin + arena_mapped(&s->arena);
}
/* Resident bytes of the range (mincore over the carved part). */
size_t malloc_space_resident(const malloc_space *s);

#endif
