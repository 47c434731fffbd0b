/* References out of the image space, found through its dirty cards.
 *
 * An image file holds references only to its own objects, so a reference
 * from an image object to anything else was stored after loading, through
 * fh_write_ref, which dirtied the card of the written object.  Collectors
 * treat the slots in dirty image cards as roots (roots_visit calls this),
 * and copying collectors update them in place: that writes only words the
 * mutator already wrote, so it never dirties a clean (shared) page.
 *
 * Image cards are never cleared: a card may hold a reference into a
 * collected space at any later collection, and telling would need a scan of
 * the card after every collection.  A card costs one byte and the scan of a
 * card is bounded by its 512 bytes (or its share of a large array). */
#include "heap/barrier.h"
#include "heap/image_load.h"
#include "heap/object.h"

typedef struct card_visit {
  uintptr_t lo, hi; /* the card */
  fh_visit_fn visit;
  void *ctx;
} card_visit;

static void visit_if_in_card(void **slot, void *ctx) {
  card_visit *c = ctx;
  uintptr_t a = (uintptr_t)slot;
  if (a >= c->lo && a < c->hi) c->visit(slot, c->ctx);
}

typedef struct dirty_visit {
  fh_heap *h;
  fh_visit_fn visit;
  void *ctx;
} dirty_visit;

static void visit_card(uintptr_t lo, uintptr_t hi, void *ctx) {
  dirty_visit *d = ctx;
  fh_heap *h = d->h;
  card_visit c = {lo, hi, d->visit, d->ctx};
  uintptr_t p = image_space_object_at(&h->image, lo);
  if (!p) p = h->image.space.begin;
  while (p < hi && p < h->image.space.end) {
    uint64_t hd = *(uint64_t *)p;
    size_t payload = hdr_payload(hd);
    const fh_type_info *ti = types_get(&h->types, hdr_type(hd));
    uintptr_t obj = p + FH_HEADER_BYTES;
    if (ti && (ti->flags & FH_TYPE_REF_ARRAY)) {
      /* Only the array's slots inside this card, not all of them. */
      uintptr_t from = lo > obj ? lo : obj, to = obj + (payload & ~(size_t)7);
      if (to > hi) to = hi;
      for (uintptr_t s = (from + 7) & ~(uintptr_t)7; s < to; s += 8) c.visit((void **)s, c.ctx);
    } else if (ti && ti->nrefs) {
      types_visit_refs(ti, (void *)obj, payload, visit_if_in_card, &c);
    }
    p += obj_total_bytes(payload);
  }
}

void image_visit_dirty_refs(fh_heap *h, fh_visit_fn visit, void *ctx) {
  if (!image_space_present(&h->image)) return;
  dirty_visit d = {h, visit, ctx};
  cards_visit_dirty(h, h->image.space.begin, h->image.space.end, visit_card, &d);
}
