/* The card table: one byte per 512-byte card over the heap's whole
 * reservation, dirtied by fh_write_ref.  Collections use the dirty cards of
 * immune spaces (image, zygote) to find references into collected spaces
 * without scanning, or writing, the immune pages themselves. */
#include "heap/barrier.h"

#include <sys/mman.h>

#include "heap/error.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

int cards_init(fh_heap *h) {
  h->cards_bytes = align_up(h->resv_size >> FH__CARD_SHIFT, FH_PAGE);
  void *p = reserve_map_table(h->cards_bytes);
  if (!p) {
    fh_error_set("cannot map the card table (%zu bytes)", h->cards_bytes);
    return -1;
  }
  h->cards = p;
  return 0;
}

void cards_destroy(fh_heap *h) {
  if (h->cards) sys_munmap(h->cards, h->cards_bytes);
  h->cards = NULL;
}

void cards_clear_range(fh_heap *h, uintptr_t begin, uintptr_t end) {
  uint8_t *b = card_for(h, begin), *e = card_for(h, end - 1) + 1;
  for (uint8_t *c = b; c < e; c++) *c = 0;
}

void cards_visit_dirty(fh_heap *h, uintptr_t begin, uintptr_t end,
                       void (*fn)(uintptr_t card_begin, uintptr_t card_end, void *ctx), void *ctx) {
  for (uintptr_t a = align_down(begin, FH_CARD_BYTES); a < end; a += FH_CARD_BYTES)
    if (*card_for(h, a)) fn(a < begin ? begin : a, a + FH_CARD_BYTES > end ? end : a + FH_CARD_BYTES, ctx);
}

void fh_write_ref_slow(fh_thread *t, void *obj, void **slot, void *value) {
  if (!t || !slot || !obj) {
    fh_error_set("fh_write_ref: %s is NULL", !t ? "thread" : !obj ? "object" : "slot");
    return;
  }
  fh_error_set("fh_write_ref: %p is not an object of this heap; nothing was stored", obj);
  (void)value;
}
