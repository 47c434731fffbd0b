/* See heap/object_check.h. */
#include "heap/object_check.h"

#include "heap/error.h"
#include "heap/object.h"

/* The end of the part of h's space around a that holds objects (0: a lies
 * in no space, or in a part never handed out).  The ranges only grow
 * while mutators run, except at collections, which the caller's thread
 * cannot be in the middle of. */
static uintptr_t used_end(fh_heap *h, uintptr_t a) {
  for (int i = 0; i < 2; i++) {
    bump_space *b = &h->bump[i];
    if (a >= b->space.begin && a < b->space.end)
      return atomic_load_explicit(&b->top, memory_order_acquire);
  }
  non_moving_space *nm = &h->non_moving;
  if (a >= nm->space.begin && a < nm->space.end) {
    /* The zygote space (fh_prefork) sits at the start of this range. */
    if (zygote_space_present(&h->zygote) && a >= h->zygote.space.begin && a < h->zygote.space.end)
      return h->zygote.space.end;
    return nm->space.begin + arena_mapped(&nm->arena);
  }
  /* A large object's header is at a start bit (its payload may hold
   * anything that looks like one). */
  if (los_contains(&h->los, (const void *)a))
    return los_is_start(&h->los, a) ? atomic_load_explicit(&h->los.frontier, memory_order_acquire)
                                     : 0;
  if (h->has_malloc_spaces)
    for (int i = 0; i < 2; i++)
      if (space_contains(&h->malloc[i].space, (const void *)a))
        return malloc_space_frontier(&h->malloc[i]);
  if (zygote_space_present(&h->zygote) && a >= h->zygote.space.begin && a < h->zygote.space.end)
    return h->zygote.space.end;
  if (image_space_present(&h->image) && a >= h->image.space.begin && a < h->image.space.end)
    return h->image.space.end;
  return 0;
}

int heap_object_plausible(fh_heap *h, const void *obj) {
  uintptr_t a = (uintptr_t)obj;
  if (!obj || (a & (FH_OBJ_ALIGN - 1)) || a - h->resv_begin >= h->resv_size) return 0;
  uintptr_t start = a - FH_HEADER_BYTES, end = used_end(h, start);
  if (!end || a > end) return 0;
  /* The header lies in used (so mapped) memory: read it. */
  /* Atomic: fh_object_hash may be setting hash bits meanwhile. */
  uint64_t hd = __atomic_load_n(obj_header(obj), __ATOMIC_RELAXED);
  uint32_t type = hdr_type(hd);
  if (hdr_is_forwarded(hd) || type == FH_FILLER_TYPE || type >= FH__MAX_TYPES) return 0;
  uint32_t want = FH__TYPE_SIZE(h->types.sizes, type);
  size_t n = hdr_payload(hd);
  if (want == FH__NO_TYPE) return 0;
  if (want != FH__VAR_SIZE && want != FH__VAR_CHECKED && want != n) return 0;
  return n <= end - a;
}

int heap_check_object(fh_heap *h, const void *obj, const char *fn) {
  if (heap_object_plausible(h, obj)) return 0;
  uintptr_t a = (uintptr_t)obj;
  if (a - h->resv_begin >= h->resv_size)
    fh_error_set("%s: %p is not an object of this heap (outside its reservation)", fn, obj);
  else
    fh_error_set("%s: %p is not an object of this heap (not the start of an allocated object; "
                 "a stale or interior pointer?)", fn, obj);
  return -1;
}
