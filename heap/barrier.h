#ifndef FH_BARRIER_H_
#define FH_BARRIER_H_

#include "heap/heap.h"

#define FH_CARD_BYTES ((uintptr_t)1 << FH__CARD_SHIFT)

int cards_init(fh_heap *h);
void cards_destroy(fh_heap *h);
static inline uint8_t *card_for(fh_heap *h, uintptr_t a) {
  return &h->cards[(a - h->resv_begin) >> FH__CARD_SHIFT];
}
void cards_clear_range(fh_heap *h, uintptr_t begin, uintptr_t end);
/* Dirty the cards over [begin, end), as stores by fh_write_ref would (a
 * mutator's slow path: objects born where a young collection reads only
 * dirty cards, heap/alloc.c). */
void cards_dirty_range(fh_heap *h, uintptr_t begin, uintptr_t end);
/* Call fn for every dirty card overlapping [begin, end). */
void cards_visit_dirty(fh_heap *h, uintptr_t begin, uintptr_t end,
                       void (*fn)(uintptr_t card_begin, uintptr_t card_end, void *ctx), void *ctx);

#endif
