/* The card table: one byte per 512-byte card over the heap's whole
 * reservation, dirtied by fh_write_ref.  Collections use the dirty cards of
 * immune spaces (image, zygote) to find references into collected spaces
 * without scanning, or writing, the immune pages themselves. */
#include "heap/barrier.h"

#include <string.h>
#include <sys/mman.h>

#include "collectors/concurrent_mark.h"
#include "heap/error.h"
#include "heap/object.h"
#include "heap/object_check.h"
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

/* Card ranges of at least this many pages are handed back rather than
 * written: a collection clears the cards of all the space it collected,
 * and after live data falls that reaches far past the space the mutators
 * will use next (fhbench phases: 1.4 MiB of clean cards stayed resident
 * for 18 MiB of live data).  Below it, writing is cheaper than madvise and
 * the faults that follow when stores dirty them again. */
#define CARDS_RELEASE_PAGES 16

void cards_clear_range(fh_heap *h, uintptr_t begin, uintptr_t end) {
  uint8_t *b = card_for(h, begin), *e = card_for(h, end - 1) + 1;
  uintptr_t pb = align_up((uintptr_t)b, FH_PAGE), pe = align_down((uintptr_t)e, FH_PAGE);
  if (pe > pb && pe - pb >= CARDS_RELEASE_PAGES * FH_PAGE &&
      sys_madvise((void *)pb, pe - pb, MADV_DONTNEED) == 0) {
    /* Zero pages now: only the partial pages at either end are written. */
    memset(b, 0, pb - (uintptr_t)b);
    memset((void *)pe, 0, (uintptr_t)e - pe);
    return;
  }
  for (uint8_t *c = b; c < e; c++) *c = 0;
}

void cards_dirty_range(fh_heap *h, uintptr_t begin, uintptr_t end) {
  /* Byte by byte with the barrier's own atomic stores: other mutators
   * dirty cards of the same range meanwhile.  Relaxed: the stores this
   * covers follow on this thread, and a collection reads the cards only
   * once every mutator has stopped. */
  for (uintptr_t a = align_down(begin, FH_CARD_BYTES); a < end; a += FH_CARD_BYTES)
    atomic_store_explicit((_Atomic uint8_t *)card_for(h, a), FH__CARD_DIRTY, memory_order_relaxed);
}

void cards_visit_dirty(fh_heap *h, uintptr_t begin, uintptr_t end,
                       void (*fn)(uintptr_t card_begin, uintptr_t card_end, void *ctx), void *ctx) {
  /* Eight clean cards at a time: a young collection scans the whole old
   * generation's cards twice, and one byte at a time that was a sixth of
   * its pause (64 MiB old: 128k cards).  A word with a dirty card is read
   * again byte by byte, so fn sees what it would have one card at a
   * time (a card fn dirtied ahead of the scan, say). */
  for (uintptr_t a = align_down(begin, FH_CARD_BYTES); a < end;) {
    const uint8_t *c = card_for(h, a);
    if (!((uintptr_t)c & 7) && a + 8 * FH_CARD_BYTES <= end) {
      uint64_t w;
      memcpy(&w, c, sizeof w);
      if (!w) {
        a += 8 * FH_CARD_BYTES;
        continue;
      }
    }
    if (*c) fn(a < begin ? begin : a, a + FH_CARD_BYTES > end ? end : a + FH_CARD_BYTES, ctx);
    a += FH_CARD_BYTES;
  }
}

/* Reached when the inline barrier's range test fails (obj outside this
 * heap's reservation: refused), on NULL arguments, and for every store on a
 * verify=1 heap, whose threads have the inline path switched off so that
 * each store is checked here: obj must be an object of this heap, slot must
 * lie inside its payload, and value must be NULL, an object of this heap,
 * or memory outside every heap (native memory, which collectors ignore). */
void fh_write_ref_slow(fh_thread *t, void *obj, void **slot, void *value) {
  if (thread_check(t, "fh_write_ref") < 0) return;
  if (!slot || !obj) {
    fh_error_set("fh_write_ref: %s is NULL", !obj ? "object" : "slot");
    return;
  }
  fh_heap *h = t->heap;
  uintptr_t a = (uintptr_t)obj;
  if (a - h->resv_begin >= h->resv_size) {
    fh_error_set("fh_write_ref: %p is not an object of this heap; nothing was stored", obj);
    return;
  }
  if (h->opt.verify) {
    if (heap_check_object(h, obj, "fh_write_ref") < 0) {
      fh_error_prefix("nothing was stored");
      return;
    }
    uintptr_t off = (uintptr_t)slot - a;
    if (off >= hdr_payload(*obj_header(obj)) || ((uintptr_t)slot & 7)) {
      fh_error_set("fh_write_ref: slot %p is not inside object %p; nothing was stored",
                   (void *)slot, obj);
      return;
    }
    /* The value as a slot holds it: an immediate is no reference, a
     * tagged pointer refers to the object under its tag. */
    void *target = slot_object(h->tags, value);
    uintptr_t v = (uintptr_t)target;
    if (target && v - h->resv_begin < h->resv_size ? !heap_object_plausible(h, target)
                                                   : target && heap_containing(target) != NULL) {
      fh_error_set("fh_write_ref: value %p is not an object of this heap%s; nothing was stored",
                   value, v - h->resv_begin < h->resv_size ? "" : " (another heap's object)");
      return;
    }
  }
  /* Concurrent marking runs (every thread's barrier span is 0 meanwhile):
   * the snapshot-at-the-beginning barrier logs the reference about to be
   * overwritten, so that everything reachable when marking began is
   * marked, wherever the mutators move references meanwhile. */
  if (t->ms_black) cmark_satb_log(t, __atomic_load_n(slot, __ATOMIC_RELAXED));
  /* As the inline barrier: the slot atomically, then the card with
   * release (include/faultheap_inline.h says why). */
  __atomic_store_n(slot, value, __ATOMIC_RELAXED);
  atomic_store_explicit((_Atomic uint8_t *)card_for(h, a), FH__CARD_DIRTY, memory_order_release);
}
