#include "spaces/non_moving_space.h"

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
  if (arena_create(&s->arena, begin, capacity) < 0) {
    non_moving_space_destroy(s);
    return -1;
  }
  return 0;
}

void non_moving_space_destroy(non_moving_space *s) {
  if (s->arena.end) arena_destroy(&s->arena);
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
  void *mem = arena_alloc(&s->arena, bytes);
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
    arena_free(&s->arena, (void *)p);
    freed += bytes;
  }
  atomic_fetch_sub(&s->used, freed);
  bitmap_clear_range(&s->mark_bits, begin, end);
  return freed;
}
