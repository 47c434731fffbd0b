/* The remembered set of the generational collector: the card table.
 *
 * Invariant (checked by verify=1 around young collections): every object
 * outside the bump spaces that holds a reference into the active bump
 * space (the young generation) has a dirty card, the card of its payload
 * pointer, as fh_write_ref dirties it.  The mutator keeps it by storing
 * through fh_write_ref; the collector keeps it for the references it
 * writes itself: a promoted object's card is dirtied when it is copied,
 * and after each collection gen_cards_clean clears the non-moving space's
 * cards whose objects no longer point into the young space (the image's
 * and the zygote's stay dirty for good: heap/image_cards.c). */
#ifndef FH_GEN_CARDS_H_
#define FH_GEN_CARDS_H_

#include "heap/heap.h"

/* World stopped.  fn(obj, ctx) for every non-moving object whose payload
 * pointer lies on a dirty card; large(fn, ctx) for every large object
 * whose card is dirty. */
void gen_cards_visit_old(fh_heap *h, fh_object_fn fn, fh_object_fn large, void *ctx);
/* The large part of it alone. */
void gen_cards_visit_large(fh_heap *h, fh_object_fn large, void *ctx);
/* World stopped, after a collection (the new active space is the young
 * one): clear the non-moving space's dirty cards on which no object holds
 * a reference into the active bump space. */
void gen_cards_clean(fh_heap *h);
/* After a full collection: the large-object space's sweep clears the
 * cards of large objects (heap/large_objects.h: they also say whether the
 * object needs scanning); dirty again those of large objects that point
 * into the active bump space.  Large objects' cards are otherwise left to
 * that sweep: a young collection never clears one. */
void gen_cards_redirty_large(fh_heap *h);
/* verify=1: check the invariant above over every space but the bump
 * spaces; on a violation print the holder (address, type, slot) and abort. */
void gen_cards_verify(fh_heap *h, const char *when);
/* The same for a young range [young_lo, young_hi) of the moving space
 * (generational mark-compact, mc_gen.h), the old generation's objects in
 * [old_lo, old_hi) (walked by headers) checked with the other spaces. */
void gen_cards_verify_range(fh_heap *h, const char *when, uintptr_t young_lo, uintptr_t young_hi,
                            uintptr_t old_lo, uintptr_t old_hi);
/* Only the holders in [holder_lo, hi) of the moving space, walked by
 * headers: the mid generation's, whose references to what was allocated
 * since the last collection the young collection takes from dirty cards
 * (mc_gen.c: promoted_on_cards; mc_slide.c: mc_update_floor). */
void gen_cards_verify_bump(fh_heap *h, const char *when, uintptr_t young_lo, uintptr_t young_hi,
                           uintptr_t holder_lo, uintptr_t holder_hi);

#endif
