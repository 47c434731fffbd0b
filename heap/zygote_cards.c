/* References out of the zygote space, found through its dirty cards.
 *
 * When fh_prefork froze it, zygote objects referred only to zygote and
 * image objects (and native memory), and its cards were cleared.  A
 * reference to anything newer can only have been stored since, through
 * fh_write_ref, which dirtied the card of the holder's payload pointer
 * (not the slot's: a slot of a large object may lie on a later, clean
 * card).  So a dirty card stands for the objects whose payload pointer lies
 * on it, and we visit every slot of exactly those: the set the barrier
 * could have written.
 *
 * Cards stay dirty for the life of the process, as for the image space: a
 * slot may point into a collected space at any later collection.  The cost
 * is bounded by what the program wrote. */
#include "heap/barrier.h"
#include "heap/object.h"
#include "heap/zygote.h"

typedef struct dirty_visit {
  fh_heap *h;
  fh_visit_fn visit;
  void *ctx;
} dirty_visit;

static void visit_card(uintptr_t lo, uintptr_t hi, void *ctx) {
  dirty_visit *d = ctx;
  zygote_space *z = &d->h->zygote;
  /* Headers sit 8 bytes before the payload pointer the barrier used. */
  uintptr_t from = lo - FH_HEADER_BYTES < z->space.begin ? z->space.begin : lo - FH_HEADER_BYTES;
  for (uintptr_t p = bitmap_next_set(&z->starts, from, hi - FH_HEADER_BYTES); p;
       p = bitmap_next_set(&z->starts, p + 8, hi - FH_HEADER_BYTES)) {
    uint64_t hd = *(uint64_t *)p;
    const fh_type_info *ti = types_get(&d->h->types, hdr_type(hd));
    if (ti) types_visit_refs(ti, obj_from_start(p), hdr_payload(hd), d->visit, d->ctx);
  }
}

void zygote_visit_dirty_refs(fh_heap *h, fh_visit_fn visit, void *ctx) {
  if (!zygote_space_present(&h->zygote)) return;
  dirty_visit d = {h, visit, ctx};
  cards_visit_dirty(h, h->zygote.space.begin, h->zygote.space.end, visit_card, &d);
}
