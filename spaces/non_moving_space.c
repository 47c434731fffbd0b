#include "spaces/non_moving_space.h"

#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "heap/error.h"
#include "heap/object.h"
#include "spaces/reserve.h"

static size_t nm_used(const fh_space *s) {
  return atomic_load(&((const non_moving_space *)s)->used);
}

static size_t nm_resident(const fh_space *s) {
  const non_moving_space *n = (const non_moving_space *)s;
  return reserve_resident(s->begin, s->begin + arena_mapped(&n->arena));
}

static void nm_walk(fh_space *s, fh_object_fn fn, void *ctx) {
  non_moving_space *n = (non_moving_space *)s;
  uintptr_t end = s->begin + arena_mapped(&n->arena);
  for (uintptr_t p = bitmap_next_set(&n->alloc_bits, s->begin, end); p;
       p = bitmap_next_set(&n->alloc_bits, p + 16, end))
    fn(obj_from_start(p), ctx);
}

static int nm_is_object(const fh_space *s, const void *obj) {
  const non_moving_space *n = (const non_moving_space *)s;
  uintptr_t start = obj_start(obj);
  return start >= s->begin && start < s->end && (start & 15) == 0 &&
         bitmap_test(&n->alloc_bits, start);
}

static const fh_space_ops nm_ops = {nm_used, nm_resident, nm_walk, nm_is_object};

int non_moving_space_init(non_moving_space *s, const char *name, uintptr_t begin,
                          size_t capacity, size_t limit) {
  memset(s, 0, sizeof *s);
  s->space = (fh_space){name, SPACE_NON_MOVING, begin, begin + capacity, &nm_ops};
  s->limit = limit < capacity ? limit : capacity;
  if (bitmap_init(&s->alloc_bits, begin, capacity, NM_GRANULE_SHIFT) < 0 ||
      bitmap_init(&s->mark_bits, begin, capacity, NM_GRANULE_SHIFT) < 0) {
    fh_error_set("cannot map the bitmaps of %s", name);
    non_moving_space_destroy(s);
    return -1;
  }
  arena_open(&s->arena, begin, capacity);
  atomic_flag_clear(&s->start_lock);
  s->prefix_end = begin + (NM_PREFIX_BYTES < capacity ? NM_PREFIX_BYTES : capacity);
  return 0;
}

/* Before the arena exists: a bump allocation from the prefix, or else the
 * arena started (once, by whichever thread gets here first) and NULL, so
 * the caller allocates from it.  *failed: the arena could not start (the
 * error is set). */
static void *nm_prefix_alloc(non_moving_space *s, size_t bytes, int *failed) {
  void *mem = NULL;
  *failed = 0;
  while (atomic_flag_test_and_set_explicit(&s->start_lock, memory_order_acquire)) sched_yield();
  if (!atomic_load_explicit(&s->arena_ready, memory_order_relaxed)) {
    uintptr_t f = atomic_load_explicit(&s->arena.frontier, memory_order_relaxed);
    if (bytes <= s->prefix_end - f) {
      /* Never handed out before: reads as zero, as arena_alloc's memory. */
      atomic_store_explicit(&s->arena.frontier, f + bytes, memory_order_release);
      mem = (void *)f;
    } else {
      /* The arena carves from the frontier up: below it, only the prefix. */
      uintptr_t limit = s->prefix_end;
      s->prefix_end = f;
      if (arena_start(&s->arena) < 0) {
        s->prefix_end = limit; /* still bumping: a later call tries again */
        atomic_store_explicit(&s->start_failed, 1, memory_order_relaxed);
        *failed = 1;
      } else {
        atomic_store_explicit(&s->start_failed, 0, memory_order_relaxed);
        atomic_store_explicit(&s->arena_ready, 1, memory_order_release);
      }
    }
  }
  atomic_flag_clear_explicit(&s->start_lock, memory_order_release);
  return mem;
}

static int nm_ensure_arena(non_moving_space *s) {
  if (atomic_load_explicit(&s->arena_ready, memory_order_acquire)) return 0;
  int failed;
  /* A request larger than the whole prefix always starts the arena. */
  (void)nm_prefix_alloc(s, SIZE_MAX, &failed);
  return failed ? -1 : 0;
}

static void *nm_alloc_bytes(non_moving_space *s, size_t bytes) {
  if (!atomic_load_explicit(&s->arena_ready, memory_order_acquire)) {
    int failed;
    void *mem = nm_prefix_alloc(s, bytes, &failed);
    if (mem || failed) return mem;
  }
  return arena_alloc(&s->arena, bytes);
}

void non_moving_space_destroy(non_moving_space *s) {
  arena_destroy(&s->arena); /* nothing if never started */
  bitmap_destroy(&s->alloc_bits);
  bitmap_destroy(&s->mark_bits);
}

void *non_moving_space_alloc(non_moving_space *s, uint32_t type, size_t payload) {
  size_t bytes = non_moving_object_bytes(payload);
  /* Counted before allocating so racing threads cannot overshoot the limit. */
  size_t old = atomic_fetch_add(&s->used, bytes);
  if (old + bytes > s->limit) {
    atomic_fetch_sub(&s->used, bytes);
    return NULL;
  }
  void *mem = nm_alloc_bytes(s, bytes);
  if (!mem) {
    atomic_fetch_sub(&s->used, bytes);
    return NULL;
  }
  *(uint64_t *)mem = fh__make_header(type, payload);
  /* The bit is published after the header: a collector that sees the bit
   * (after the stop-the-world handshake) sees the header too. */
  bitmap_set(&s->alloc_bits, (uintptr_t)mem);
  return obj_from_start((uintptr_t)mem);
}

void *non_moving_space_alloc_raw(non_moving_space *s, size_t bytes, int tcache) {
  size_t old = atomic_fetch_add(&s->used, bytes);
  if (old + bytes > s->limit) {
    atomic_fetch_sub(&s->used, bytes);
    return NULL;
  }
  if (nm_ensure_arena(s) < 0) {
    atomic_fetch_sub(&s->used, bytes);
    return NULL;
  }
  void *mem = sys_mallocx(bytes, MALLOCX_ARENA(s->arena.index) |
                                     (tcache < 0 ? MALLOCX_TCACHE_NONE
                                                 : MALLOCX_TCACHE((unsigned)tcache)));
  if (!mem) atomic_fetch_sub(&s->used, bytes);
  return mem;
}

size_t non_moving_space_sweep(non_moving_space *s) {
  uintptr_t begin = s->space.begin, end = begin + arena_mapped(&s->arena);
  size_t freed = 0;
  for (uintptr_t p = bitmap_next_set(&s->alloc_bits, begin, end); p;
       p = bitmap_next_set(&s->alloc_bits, p + 16, end)) {
    if (bitmap_test(&s->mark_bits, p)) continue;
    size_t bytes = non_moving_object_bytes_hd(*(uint64_t *)p);
    bitmap_clear(&s->alloc_bits, p);
    if (p >= s->prefix_end) arena_free(&s->arena, (void *)p); /* else bumped: forgotten */
    freed += bytes;
  }
  atomic_fetch_sub(&s->used, freed);
  bitmap_clear_range(&s->mark_bits, begin, end);
  return freed;
}
