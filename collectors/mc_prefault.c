/* Faulting in the next allocation window after a compacting cycle
 * (mc_plan_prefault in the pause, mc_prefault by the thread that ends the
 * cycle), for mark_compact and concurrent_compact. */
#include <sys/mman.h>

#include "collectors/mc.h"
#include "heap/sizer.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

/* After the cycle the space above the new top is empty, so every page the
 * mutators allocate into until the next collection would take a first-touch
 * fault (~2 us each here) on the mutator's time; so would the holes pinned
 * ranges left (their pages are blank), which TLAB refills take first.  The
 * thread that ends the cycle, idle by then, faults in the start of that
 * window instead; pages a mutator already touched are skipped by the
 * kernel, nothing is written into them.  Bounded by sizer_resident_window
 * (a quarter of the allocation trigger, at most 32 MiB), so resident memory
 * grows only by what the mutators are about to use.  (`fhbench alloc`: mark_compact spent 5.4 ns per 32-byte object,
 * most of it in these faults, against 2.9 for concurrent_compact, whose
 * worker did this already.) */
#define MC_PREFAULT_MIN ((size_t)256 << 10)

void mc_plan_prefault(mc_state *m) {
  uintptr_t from = align_up(m->t.new_top, FWD_PAGE), end = m->t.begin + m->t.capacity;
  size_t want = sizer_resident_window(m->h);
  if (want > end - from) want = end - from;
  if (m->slid) {
    /* The slide left its pages resident up to dirty_end, holes included:
     * only the window's part above that may fault.  TLAB refills take the
     * holes first, so what they hold comes off the window: a stack word
     * pinning an object near the old top (conservative roots) leaves the
     * new top there and the trigger's worth of room below it, and
     * prefaulting a whole window above it kept 4 MiB resident that nothing
     * used (fhscheme's small programs: 8 of their 14 MiB). */
    /* All of them, not only the first MC_PREFAULT_HOLES: 1% of small
     * objects pinned leaves thousands of holes of a few KiB, and counting
     * 64 of them prefaulted a whole window (6 MiB) above the top that the
     * holes then served (fhbench pins). */
    size_t hb = mc_hole_bytes(m);
    want -= hb < want ? hb : want;
    uintptr_t dirty = m->h->bump[m->h->active].dirty_end;
    want = from + want > dirty ? from + want - (dirty > from ? dirty : from) : 0;
    if (dirty > from) from = dirty;
    /* A few pages: the mutators' own faults cost less than a thread. */
    if (want < MC_PREFAULT_MIN) want = 0;
    m->pf_from = from;
    m->pf_want = m->pf_above = want;
    m->pf_nholes = 0;
    return;
  }
  m->pf_from = from;
  m->pf_want = want;
  size_t n = mc_holes(m, m->pf_holes, MC_PREFAULT_HOLES);
  m->pf_nholes = n < MC_PREFAULT_HOLES ? n : MC_PREFAULT_HOLES;
  /* The first holes are faulted in (their blank pages are not resident
   * after a flip); all of them, listed or not, come off what goes above
   * the top, as after a slide. */
  size_t hb = mc_hole_bytes(m);
  m->pf_above = want > hb ? want - hb : 0;
}

static void prefault_range(mc_state *m, uintptr_t from, size_t want) {
  /* It runs after the cycle, so that nobody waits for it; the next
   * collection stops it (mc_join_worker) before it moves the space's pages,
   * since a page faulted in below the next cycle's registration would hide
   * a destination page.  2 MiB steps: it stops within one, and at once when
   * the kernel lacks MADV_POPULATE_WRITE. */
  for (size_t off = 0; off < want && !atomic_load(&m->stop_prefault); off += FH_PMD) {
    size_t n = want - off < FH_PMD ? want - off : FH_PMD;
    /* A failure leaves the window to first-touch faults: harmless. */
    if (sys_madvise((void *)(from + off), n, MADV_POPULATE_WRITE) != 0) break;
  }
}

void mc_prefault(mc_state *m) {
  size_t want = m->pf_want;
  for (size_t i = 0; i < m->pf_nholes && want; i++) {
    uintptr_t lo = align_up(m->pf_holes[i].lo + FWD_WORD, FWD_PAGE);
    uintptr_t hi = align_down(m->pf_holes[i].hi, FWD_PAGE);
    size_t n = hi > lo ? hi - lo : 0;
    if (n > want) n = want;
    prefault_range(m, lo, n);
    want -= n;
  }
  if (want > m->pf_above) want = m->pf_above;
  prefault_range(m, m->pf_from, align_down(want, FWD_PAGE));
}
