/* Malloc spaces: a jemalloc arena over a reserved range plus side bitmaps
 * (see malloc_space.h for the design). */
#include "spaces/malloc_space.h"

#include <string.h>

#include "heap/error.h"
#include "heap/object.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

static size_t ms_used(const fh_space *s) { return malloc_space_used((const malloc_space *)s); }

size_t malloc_space_resident(const malloc_space *s) {
  return reserve_resident(s->space.begin, malloc_space_frontier(s));
}

static size_t ms_resident(const fh_space *s) {
  return malloc_space_resident((const malloc_space *)s);
}

static void ms_walk(fh_space *s, fh_object_fn fn, void *ctx) {
  malloc_space *m = (malloc_space *)s;
  uintptr_t end = malloc_space_frontier(m);
  for (uintptr_t p = bitmap_next_set(&m->alloc_bits, s->begin, end); p;
       p = bitmap_next_set(&m->alloc_bits, p + MS_GRANULE, end))
    fn(obj_from_start(p), ctx);
}

static int ms_is_object(const fh_space *s, const void *obj) {
  const malloc_space *m = (const malloc_space *)s;
  uintptr_t start = obj_start(obj);
  return start >= s->begin && start < s->end && (start & (MS_GRANULE - 1)) == 0 &&
         bitmap_test(&m->alloc_bits, start);
}

static const fh_space_ops ms_ops = {ms_used, ms_resident, ms_walk, ms_is_object};

int malloc_space_init(malloc_space *s, const char *name, uintptr_t begin, size_t capacity,
                      size_t limit) {
  memset(s, 0, sizeof *s);
  s->space = (fh_space){name, SPACE_MALLOC, begin, begin + capacity, &ms_ops};
  s->limit = limit;
  if (bitmap_init(&s->alloc_bits, begin, capacity, MS_GRANULE_SHIFT) < 0 ||
      bitmap_init(&s->mark_bits, begin, capacity, MS_GRANULE_SHIFT) < 0 ||
      bitmap_init(&s->cover_bits, begin, capacity, MS_GRANULE_SHIFT) < 0) {
    fh_error_set("cannot map the bitmaps of the %s", name);
    malloc_space_destroy(s);
    return -1;
  }
  if (malloc_runs_init(s) < 0) {
    fh_error_set("cannot map the run tables of the %s", name);
    malloc_space_destroy(s);
    return -1;
  }
  if (arena_create(&s->arena, begin, capacity) < 0) {
    fh_error_prefix(name);
    malloc_space_destroy(s);
    return -1;
  }
  return 0;
}

void malloc_space_destroy(malloc_space *s) {
  if (s->arena.end) arena_destroy(&s->arena);
  s->arena.end = 0;
  malloc_runs_destroy(s);
  bitmap_destroy(&s->alloc_bits);
  bitmap_destroy(&s->mark_bits);
  bitmap_destroy(&s->cover_bits);
}

/* Counted before allocating so racing threads cannot overshoot the limit. */
static void *alloc_counted(malloc_space *s, size_t bytes, int tcache, int zero) {
  size_t old = atomic_fetch_add_explicit(&s->used, bytes, memory_order_relaxed);
  void *mem = NULL;
  if (old + bytes <= s->limit)
    mem = sys_mallocx(bytes, MALLOCX_ARENA(s->arena.index) | (zero ? MALLOCX_ZERO : 0) |
                             (tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE((unsigned)tcache)));
  if (!mem) atomic_fetch_sub_explicit(&s->used, bytes, memory_order_relaxed);
  return mem;
}

void *malloc_space_alloc_raw(malloc_space *s, size_t bytes, int tcache) {
  return alloc_counted(s, bytes, tcache, 0); /* the copy overwrites it all */
}

void *malloc_space_alloc(malloc_space *s, uint32_t type, size_t payload, int tcache) {
  void *mem = alloc_counted(s, malloc_object_bytes(payload), tcache, 1);
  if (!mem) return NULL;
  *(uint64_t *)mem = fh__make_header(type, payload);
  /* The bit is published after the header: a collector that sees the bit
   * (after the stop-the-world handshake) sees the header too. */
  bitmap_set(&s->alloc_bits, (uintptr_t)mem);
  return obj_from_start((uintptr_t)mem);
}

void malloc_space_prepare_sweep(malloc_space *s, uintptr_t end) {
  uintptr_t begin = s->space.begin;
  if (end <= begin) return;
  malloc_runs_begin_sweep(s, end);
  s->sweep_swapped = 0;
  size_t first = bitmap_index(&s->alloc_bits, begin) >> 6;
  size_t last = (bitmap_index(&s->alloc_bits, end - 1) >> 6) + 1;
  for (size_t w = first; w < last; w++) {
    uint64_t mark = atomic_load_explicit(&s->mark_bits.words[w], memory_order_relaxed);
    uint64_t alloc = atomic_load_explicit(&s->alloc_bits.words[w], memory_order_relaxed);
    if (mark || alloc)
      atomic_store_explicit(&s->mark_bits.words[w], alloc & ~mark, memory_order_relaxed);
  }
}

uint64_t malloc_space_take_dead(malloc_space *s, size_t w) {
  uint64_t marks = atomic_load_explicit(&s->mark_bits.words[w], memory_order_relaxed);
  if (!marks) return 0;
  atomic_store_explicit(&s->mark_bits.words[w], 0, memory_order_relaxed);
  if (s->sweep_swapped) {
    /* `marks` are the allocation bits at the pause; the live ones are in
     * alloc_bits since the swap.  Mutators only add bits there, for objects
     * in memory that was free at the pause (no bit in `marks`), so reading
     * the word while they do is safe; nothing here writes it. */
    return marks & ~atomic_load_explicit(&s->alloc_bits.words[w], memory_order_relaxed);
  }
  /* Bits cleared before the objects go back to jemalloc; atomically,
   * since mutators may be setting other bits of the word meanwhile (a
   * dead object's own bit cannot be set again before it is freed). */
  atomic_fetch_and_explicit(&s->alloc_bits.words[w], ~marks, memory_order_relaxed);
  return marks;
}

/* Free the dead objects of bitmap words [first, last) through `flags`'s
 * tcache, and sweep the runs whose first word is among them (the rest of
 * a run's words are its own: skipped).  Returns the bytes freed, taken off
 * `used`, when `count`; else `used` was charged already (a precounted sweep,
 * malloc_space_sweep_begin) and the result is 0.  adopt: see
 * malloc_run_sweep. */
static size_t sweep_words(malloc_space *s, size_t first, size_t last, int flags, int count,
                          uintptr_t *adopt) {
  size_t freed = 0;
  size_t page_words = FH_PAGE >> (MS_GRANULE_SHIFT + 6);
  for (size_t w = first; w < last; w++) {
    /* A page that becomes part of a new run while we look was free in
     * jemalloc, so its dead words were cleared already: nothing to race. */
    uint8_t k = atomic_load_explicit(&s->run_page[w / page_words], memory_order_relaxed);
    if (k) {
      if (k == 1 && w % page_words == 0) freed += malloc_run_sweep(s, w / page_words, count, adopt);
      continue;
    }
    uint64_t dead = malloc_space_take_dead(s, w);
    if (!dead) continue;
    while (dead) {
      size_t bit = (w << 6) + (size_t)__builtin_ctzll(dead);
      dead &= dead - 1;
      uintptr_t p = bitmap_addr(&s->alloc_bits, bit);
      size_t bytes = malloc_object_bytes_hd(*(uint64_t *)p);
      freed += bytes;
      /* Sized: jemalloc takes the size class from `bytes` instead of
       * looking the pointer up in its radix tree (a cache miss each). */
      sdallocx((void *)p, bytes, flags);
    }
  }
  if (!count) return 0;
  atomic_fetch_sub(&s->used, freed);
  return freed;
}

static int tcache_flags(int tcache) {
  return tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE((unsigned)tcache);
}

size_t malloc_space_sweep_dead(malloc_space *s, uintptr_t end, int tcache) {
  uintptr_t begin = s->space.begin;
  if (end <= begin) return 0;
  size_t first = bitmap_index(&s->alloc_bits, begin) >> 6;
  size_t last = (bitmap_index(&s->alloc_bits, end - 1) >> 6) + 1;
  size_t freed = sweep_words(s, first, last, tcache_flags(tcache), 1, NULL);
  /* A failed flush leaves free regions of this arena in the cache, where
   * they wait for the next flush: every reset or arena switch flushes
   * first and refuses on failure (hspace, zygote). */
  (void)arena_tcache_flush(tcache);
  return freed;
}

void malloc_space_sweep_begin(malloc_space *s, uintptr_t end, size_t live) {
  malloc_runs_begin_sweep(s, end);
  /* Swap instead of turning the mark bitmap into a dead bitmap here: that
   * pass read two bitmaps and wrote one over the whole frontier, 0.65-1 ms
   * of a concurrent mark-sweep's 0.8 ms remark at 256 MiB (ART's
   * SwapBitmaps serves the same end).  The sweep finds the dead word by
   * word (malloc_space_take_dead) and clears the old bits as it goes, so
   * the mark bitmap is clear again when it is done.  Both bitmaps cover the
   * same range with the same granule, and nothing outside a pause holds
   * their words but the threads' cached pointer (refreshed by the caller:
   * malloc_heap_rebind_bits). */
  fh_bitmap swap = s->alloc_bits;
  s->alloc_bits = s->mark_bits;
  s->mark_bits = swap;
  s->sweep_swapped = 1;
  /* `used` drops to the live bytes now, not as the sweep frees: what the
   * next allocations may take no longer depends on how far the sweep got
   * (docs/architecture.md, "Runs"). */
  size_t used = atomic_load(&s->used);
  atomic_store(&s->sweep_freed, used > live ? used - live : 0);
  atomic_store(&s->used, used > live ? live : used);
  size_t first = bitmap_index(&s->alloc_bits, s->space.begin) >> 6;
  size_t last = end > s->space.begin ? (bitmap_index(&s->alloc_bits, end - 1) >> 6) + 1 : first;
  s->sweep_last = last;
  s->sweep_total = last - first;
  atomic_store(&s->sweep_done, 0);
  atomic_store(&s->sweep_next, first);
}

size_t malloc_space_sweep_step_adopt(malloc_space *s, size_t words, int tcache, int flush,
                                     uintptr_t *adopt) {
  if (atomic_load_explicit(&s->sweep_next, memory_order_relaxed) >= s->sweep_last) return 0;
  size_t first = atomic_fetch_add(&s->sweep_next, words);
  if (first >= s->sweep_last) return 0;
  size_t last = first + words < s->sweep_last ? first + words : s->sweep_last;
  (void)sweep_words(s, first, last, tcache_flags(tcache), 0, adopt);
  if (flush) (void)arena_tcache_flush(tcache); /* may fail: see sweep_dead */
  atomic_fetch_add(&s->sweep_done, last - first); /* last: after the flush */
  return last - first;
}

size_t malloc_space_sweep(malloc_space *s, int tcache) {
  uintptr_t end = malloc_space_frontier(s);
  malloc_space_prepare_sweep(s, end);
  return malloc_space_sweep_dead(s, end, tcache);
}

int malloc_space_revive(malloc_space *s) {
  if (s->arena.end) return 0;
  /* The range was discarded and its bits cleared when the arena went. */
  if (arena_create(&s->arena, s->space.begin, s->space.end - s->space.begin) < 0) {
    s->arena.end = 0;
    fh_error_prefix(s->space.name);
    return -1;
  }
  return 0;
}

int malloc_space_reset(malloc_space *s) {
  uintptr_t end = malloc_space_frontier(s);
  bitmap_clear_range(&s->alloc_bits, s->space.begin, end);
  bitmap_clear_range(&s->mark_bits, s->space.begin, end);
  bitmap_clear_range(&s->cover_bits, s->space.begin, end);
  atomic_store(&s->used, 0);
  /* A lazy sweep still under way has nothing left to sweep: the bits it
   * would read are gone.  (Left pending, it resumed when the space became
   * the main one again, two compactions later, adopting runs from stale
   * words.) */
  atomic_store(&s->sweep_next, s->sweep_last);
  atomic_store(&s->sweep_done, s->sweep_total);
  malloc_runs_forget(s, end);
  if (arena_reset(&s->arena) < 0) {
    fh_error_prefix(s->space.name);
    return -1;
  }
  return 0;
}
