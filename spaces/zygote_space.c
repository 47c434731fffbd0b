#include "spaces/zygote_space.h"

#include <string.h>

#include "heap/error.h"
#include "heap/object.h"
#include "spaces/reserve.h"

static size_t zygote_used(const fh_space *s) { return ((const zygote_space *)s)->used; }

static size_t zygote_resident(const fh_space *s) { return reserve_resident(s->begin, s->end); }

/* Only the start bitmap is consulted, never the gaps: the frozen arenas'
 * free extents and metadata lie between objects. */
static void zygote_walk(fh_space *s, fh_object_fn fn, void *ctx) {
  zygote_space *z = (zygote_space *)s;
  for (uintptr_t p = bitmap_next_set(&z->starts, s->begin, s->end); p;
       p = bitmap_next_set(&z->starts, p + 8, s->end))
    fn(obj_from_start(p), ctx);
}

static int zygote_is_object(const fh_space *s, const void *obj) {
  const zygote_space *z = (const zygote_space *)s;
  uintptr_t start = obj_start(obj);
  return start >= s->begin && start < s->end && (start & 7) == 0 && bitmap_test(&z->starts, start);
}

static const fh_space_ops zygote_ops = {zygote_used, zygote_resident, zygote_walk,
                                        zygote_is_object};

int zygote_space_prepare(zygote_space *z, uintptr_t begin, uintptr_t range_end) {
  if (z->starts.words) return 0; /* a later generation: the bitmap covers it already */
  memset(z, 0, sizeof *z);
  if (bitmap_init(&z->starts, begin, range_end - begin, 3) < 0) {
    fh_error_set("cannot map the zygote space's object-start bitmap (%zu KiB)",
                 (size_t)((range_end - begin) >> 6) >> 10);
    return -1;
  }
  z->space = (fh_space){"zygote space", SPACE_IMMUNE, begin, begin, NULL};
  z->range_end = range_end;
  return 0;
}

void zygote_space_publish(zygote_space *z, uintptr_t end) {
  z->space.end = end;
  z->space.ops = &zygote_ops;
  z->generations++;
}

int zygote_space_freeze_arena(zygote_space *z, const fh_arena *a) {
  if (z->nfrozen >= ZYGOTE_MAX_GENERATIONS) {
    fh_error_set("the zygote space already has %u generations, the most it can hold",
                 (unsigned)ZYGOTE_MAX_GENERATIONS);
    return -1;
  }
  fh_arena *f = &z->frozen[z->nfrozen];
  memcpy(f, a, sizeof *f);
  arena_moved(f); /* the hooks find their arena through this pointer */
  z->nfrozen++;
  return 0;
}

void zygote_space_destroy(zygote_space *z) {
  /* Destroying a frozen arena discards its extents: the heap is going away. */
  for (unsigned i = 0; i < z->nfrozen; i++) arena_destroy(&z->frozen[i]);
  if (z->starts.words) bitmap_destroy(&z->starts);
  memset(z, 0, sizeof *z);
}
