/* Large objects that collections need not scan (issue 19).
 *
 * A large object whose reference slots hold nothing a collection could
 * mark or move (NULL, immediates, native memory, image and zygote objects)
 * is *quiet*: a collection marks it and scans nothing in it, and no update
 * pass visits it.  A reference store into it goes through fh_write_ref
 * (the API's rule for every store), which dirties the card of its payload
 * pointer; the card is the object's alone (objects start on pages), and
 * only the sweep and young collections that find nothing young in it
 * (heap_los_card_settled) clear it.  So "quiet and card clean"
 * means "still nothing to scan": a 50 MB vector of fixnums costs a
 * collection nothing once it has settled.  heap_sweep_nonmoving settles
 * the bits after each marking: a dirty card is cleared and the object
 * counts as not checked; a clean card on an object not checked since
 * gets its slots read once (stopping at the first collectable referent)
 * and the answer kept until the card is dirtied again, so an object that
 * does hold references is not read twice per collection. */
#ifndef FH_LARGE_OBJECTS_H_
#define FH_LARGE_OBJECTS_H_

#include "heap/barrier.h"
#include "heap/heap.h"

/* obj (a payload pointer in the large-object space) needs no scan. */
static inline int heap_los_quiet(fh_heap *h, const void *obj) {
  /* Atomic: a concurrent marker asks while mutators dirty cards. */
  return los_is_quiet(&h->los, obj) &&
         !atomic_load_explicit((_Atomic uint8_t *)card_for(h, (uintptr_t)obj), memory_order_relaxed);
}
/* A young collection found that obj (on a dirty card) refers to nothing
 * young: its card is cleared, as the sweep would (heap_sweep_nonmoving),
 * and its quiet bit forgotten until the next sweep reads it again.  A
 * large object is born with its card dirty (heap/alloc.c: its first
 * stores may be plain), and young collections never reach the sweep:
 * without this, every one of them scanned the object until the next full
 * collection (a 64 MiB array of NULLs: 27 ms per young pause). */
static inline void heap_los_card_settled(fh_heap *h, const void *obj) {
  uintptr_t start = obj_start(obj);
  *card_for(h, (uintptr_t)obj) = 0;
  bitmap_clear(&h->los.quiet, start);
  bitmap_clear(&h->los.checked, start);
}
/* The same for any object: 0 outside the large-object space. */
static inline int heap_skips_scan(fh_heap *h, const void *obj) {
  return los_contains(&h->los, obj) && heap_los_quiet(h, obj);
}

#endif
