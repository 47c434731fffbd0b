/* Mark-compact: publishing the moving space's new top after a cycle, and
 * what happens to the pages above it (kept resident for the next
 * allocation window, handed back, or poisoned under verify=1). */
#include <sys/mman.h>

#include "collectors/mc.h"
#include "heap/object.h"
#include "heap/sizer.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

/* After a slide the pages above the new top still hold the old objects:
 * claims there zero them (dirty_end), cache-warm, and the start of the
 * next allocation window needs no fault.  What lies past that start
 * (sizer_resident_window: a quarter of the trigger's worth of allocation,
 * at most 32 MiB) goes back in one madvise, so the resident set shrinks
 * with the live data as after a build; discarded there, in the pause,
 * nothing can have been allocated into it. */
/* Whether this full cycle found under half the live data of the last
 * full one (then the window it keeps is the sizer's quarter: the heap
 * fell, and resident memory follows).  A steady heap's full cycle keeps
 * the whole next allocation window, as a young one does: handing back
 * what the mutators refill before the next collection was a fifth of
 * whippet-mt-gcbench's collector system time (its full slides' madvise),
 * plus their refaults.  Young cycles leave the figure alone. */
static int live_fell(mc_state *m) {
  size_t live = m->t.live_bytes, last = m->last_full_live;
  m->last_full_live = live;
  return live < last / 2;
}

static void publish_slid(mc_state *m, bump_space *b, uintptr_t top) {
  uintptr_t old_end = align_up(m->t.old_top, FH_PAGE);
  if (b->dirty_end < old_end) b->dirty_end = old_end;
  if (b->dirty_end < top) b->dirty_end = top;
  /* A young cycle keeps the young generation's pages (up to the next
   * trigger's worth): the mutators refill that very range before the next
   * young collection, so discarding it bought no lower peak, only a
   * madvise in the pause and a first-touch fault per page on the
   * mutators (binary-trees depth 21: 96 MiB per young collection, a
   * third of the run in faults and zeroing; fhbench young: 10 MiB per
   * pause).  The sizer's quarter window is for full cycles, after which
   * the heap may have fallen. */
  size_t window = m->gen.young || !live_fell(m) ? m->h->gc_trigger : sizer_resident_window(m->h);
  m->hole_window = window;
  size_t holes = mc_hole_bytes(m);
  /* TLAB refills take the holes pinned ranges left first (bump_space.h):
   * that much of the window is below the top, resident already.  Keeping
   * a whole window above the top as well held ~7 MiB that nothing used
   * next to 19 MiB of heap (fhbench pins, 1% pinned). */
  window -= holes < window ? holes : window;
  uintptr_t keep = window < b->dirty_end - top ? align_up(top + window, FH_PMD) : b->dirty_end;
  if (keep < b->dirty_end) {
    /* zeroes by hand if madvise fails; dirty_end could then stay, but the
     * bytes read as zero either way */
    uintptr_t was = b->dirty_end;
    reserve_discard(keep, align_up(b->dirty_end, FH_PAGE) - keep);
    b->dirty_end = keep;
    bump_space_clear_starts(b, keep, was); /* zero already: their pages go back too */
  }
  /* A full cycle also hands back whatever is resident above dirty_end
   * (zeroes: a prefault's huge pages past its window, pages an earlier,
   * larger heap left there): after fhbench phases' fall, 0.5-1.8 MiB of
   * them stayed in the moving space, and a flip moved them into
   * from-space past from_used, where nothing released them.  One
   * madvise over mostly unmapped page tables; young cycles, which keep
   * their window, skip it. */
  uintptr_t above = align_up(b->dirty_end > keep ? b->dirty_end : keep, FH_PAGE);
  if (!m->gen.young && above < b->space.end)
    (void)sys_madvise((void *)above, b->space.end - above, MADV_DONTNEED); /* memory only */
  /* verify=1: poison what the slide vacated (see below). */
  if (m->h->opt.verify && old_end > top) heap_poison(top, old_end < keep ? old_end : keep);
}

void mc_publish_top(mc_state *m) {
  bump_space *b = &m->h->bump[m->h->active];
  uintptr_t top = align_up(m->t.new_top, FWD_PAGE);
  atomic_store(&b->top, top);
  /* With MREMAP_DONTUNMAP everything above the new top reads as zero: the
   * old pages went to from-space, so claims there need no memset
   * (bump_space.h).  A cycle moved by copy discarded only up to the old
   * top; pages above it that an earlier cycle kept resident for reuse
   * (semispace's reset) still hold old objects, forwarded headers
   * included, and must still be zeroed by the claims that reach them. */
  if (m->slid) {
    publish_slid(m, b, top);
    return;
  }
  if (!m->moved_by_copy || b->dirty_end < top) b->dirty_end = top;
  /* verify=1: the tail the cycle vacated (above the new top, below the
   * old) is poisoned, so a stale pointer to an object that lay there reads
   * FH_POISON instead of zeroes.  Pages there are not registered with
   * userfaultfd (only the destination pages are), and the world is still
   * stopped; claims zero it again, as it now lies below dirty_end.  A
   * stale pointer below the new top lands in the objects slid there:
   * verify=1's checks on fh_write_ref and at each collection catch it
   * when it is stored, not when it is read. */
  uintptr_t old_end = align_up(m->t.old_top, FH_PAGE);
  if (m->h->opt.verify && old_end > top) {
    heap_poison(top, old_end);
    if (b->dirty_end < old_end) b->dirty_end = old_end;
  }
}

void mc_poison_last_page(mc_state *m) {
  uintptr_t lo = m->t.new_top, hi = align_up(lo, FWD_PAGE);
  if (!m->h->opt.verify || lo >= hi) return;
  uint64_t hd = *(uint64_t *)lo;
  /* The builder ends the page with a filler; nothing reads its payload. */
  if (hdr_type(hd) != FH_FILLER_TYPE || obj_bytes(hd) < hi - lo) return;
  heap_poison(lo + FH_HEADER_BYTES, hi);
}
