/* References out of the image space, found through its dirty cards.
 *
 * An image file holds references only to its own objects, so a reference
 * from an image object to anything else was stored after loading, through
 * fh_write_ref, which dirtied the card of the written object.  Collectors
 * treat the slots of objects on dirty image cards as roots (roots_visit
 * calls this), and copying collectors update them in place: only slots
 * that point out of the image change, and the mutator wrote those, so a
 * collection never dirties a clean (shared) page.
 *
 * Image cards are never cleared: a card may hold a reference into a
 * collected space at any later collection, and telling would need a scan of
 * the card after every collection.  The cost of a dirty card is the slots of
 * the objects starting on it: bounded by what the program wrote. */
#include "heap/barrier.h"
#include "heap/image_load.h"
#include "heap/object.h"

typedef struct dirty_visit {
  fh_heap *h;
  fh_visit_fn visit;
  void *ctx;
} dirty_visit;

/* fh_write_ref dirties the card of the holder's payload pointer, not the
 * slot's (a slot of a large object may lie on a later, clean card).  So a
 * dirty card stands for the objects whose payload pointer lies on it, and
 * every slot of those objects is visited. */
static void visit_object(dirty_visit *d, uintptr_t start) {
  uint64_t hd = *(uint64_t *)start;
  const fh_type_info *ti = types_get(&d->h->types, hdr_type(hd));
  if (ti) types_visit_refs(ti, obj_from_start(start), hdr_payload(hd), d->visit, d->ctx);
}

static void visit_card(uintptr_t lo, uintptr_t hi, void *ctx) {
  dirty_visit *d = ctx;
  image_space *is = &d->h->image;
  uintptr_t base = is->space.begin;
  if (hi - base <= FH_HEADER_BYTES) return;
  /* Header offsets (the starts bitmap counts from base) whose payload, 8
   * bytes on, lies in [lo, hi). */
  uintptr_t off = lo - base < FH_HEADER_BYTES ? 0 : lo - base - FH_HEADER_BYTES;
  uintptr_t to = hi - base - FH_HEADER_BYTES;
  /* bitmap_next_set answers 0 for "none", which is also the first
   * object's offset: that one is tested on its own. */
  if (off == 0) {
    if (bitmap_test(&is->starts, 0)) visit_object(d, base);
    off = 8;
  }
  for (off = bitmap_next_set(&is->starts, off, to); off;
       off = bitmap_next_set(&is->starts, off + 8, to))
    visit_object(d, base + off);
}

void image_visit_dirty_refs(fh_heap *h, fh_visit_fn visit, void *ctx) {
  if (!image_space_present(&h->image)) return;
  dirty_visit d = {h, visit, ctx};
  cards_visit_dirty(h, h->image.space.begin, h->image.space.end, visit_card, &d);
}
