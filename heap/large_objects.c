/* The sweep of the spaces that never move, and the quiet bits of large
 * objects (heap/large_objects.h). */
#include "heap/large_objects.h"

#include "heap/object.h"
#include "heap/slot.h"

/* Could the value in a slot keep alive or move anything?  Only objects of
 * the collected spaces: not NULL, immediates, native memory, image or
 * zygote objects. */
static int collectable(fh_heap *h, void *v) {
  uintptr_t a = slot_target(h->tags, (uintptr_t)v);
  if (!a || a - h->resv_begin >= h->resv_size) return 0;
  if (image_space_present(&h->image) && space_contains(&h->image.space, (void *)a)) return 0;
  if (zygote_space_present(&h->zygote) && space_contains(&h->zygote.space, (void *)a)) return 0;
  return 1;
}

static int collectable_slot(void **slot, void *ctx) { return collectable(ctx, *slot); }

/* Does obj hold no collectable referent? */
static int holds_nothing(fh_heap *h, void *obj) {
  uint64_t hd = *obj_header(obj);
  const fh_type_info *ti = types_get(&h->types, hdr_type(hd));
  return !ti || !types_any_ref(ti, obj, hdr_payload(hd), collectable_slot, h);
}

static void settle(void *obj, void *ctx) {
  fh_heap *h = ctx;
  large_object_space *s = &h->los;
  uintptr_t start = obj_start(obj);
  uint8_t *card = card_for(h, (uintptr_t)obj);
  if (*card) { /* written since: read it again once it rests */
    *card = 0;
    bitmap_clear(&s->quiet, start);
    bitmap_clear(&s->checked, start);
    return;
  }
  if (bitmap_test(&s->checked, start)) return;
  if (holds_nothing(h, obj)) bitmap_set(&s->quiet, start);
  else bitmap_clear(&s->quiet, start);
  bitmap_set(&s->checked, start);
}

size_t heap_sweep_nonmoving(fh_heap *h) {
  size_t freed = non_moving_space_sweep(&h->non_moving);
  if (h->los.space.ops) {
    freed += los_sweep(&h->los);
    h->los.space.ops->walk(&h->los.space, settle, h);
  }
  return freed;
}
