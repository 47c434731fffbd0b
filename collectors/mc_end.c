/* The end of a compaction cycle: giving back from-space and clearing the
 * forwarding tables (mc_end_cycle), and where a slide's end runs: in its
 * pause, or in a pool task once the world runs (mc_end_slide,
 * mc_after_pause), which the next cycle joins (mc_join_worker) before it
 * touches the tables or the space. */
#include <string.h>
#include <sys/mman.h>

#include "collectors/mc.h"
#include "heap/sys.h"

void mc_end_cycle(mc_state *m) {
  uint64_t t0 = heap_now_ns();
  int young = m->t.young; /* fwd_reset clears it */
  /* What the ledger still holds (pinned pages, the last batch, staging
   * leftovers) goes back with the rest of from-space. */
  /* Harmless if it fails: memory only.  Nothing reads from-space after
   * the cycle, and the next cycle's flip replaces its mapping whole. */
  /* All of it, not only from_used: the flip moved the whole space
   * aside, pages past the old top and dirty_end included. */
  if (!m->slid) sys_madvise((void *)m->shadow, m->t.capacity, MADV_DONTNEED);
  ledger_reset(&m->ledger);
  if (m->t.npages)
    memset((void *)m->page_state, 0, m->t.npages * sizeof(uint32_t));
  m->t.slid = m->slid; /* a slide's tables stay resident (fwd_reset) */
  fwd_reset(&m->t);
  m->hole_bytes = 0; /* no range, no hole */
  if (m->slid) m->end_ns[young] = heap_now_ns() - t0;
}

/* Used space up to which a slide's end needs no thread: its bitmaps are
 * cleared by memset (spaces/bitmap.c: up to 16 pages, 2 MiB of space). */
#define MC_INLINE_END_BYTES ((size_t)2 << 20)

/* Above it, the end runs in the pause when the last one of the same kind
 * took at most this.  Handing it to a pool task costs more than a young
 * cycle's end usually does: the task's wakeup and context switch took
 * ~27 us of system time each (whippet-mt-gcbench, mark_compact: 11 of the
 * collector's 31 ms of system time over 411 hand-offs, bench/gc_systime.sh)
 * to spare the pause 4 us of clearing (a young cycle's tables are kept
 * and cleared where they were written: fwd_reset). */
#define MC_INLINE_END_NS ((uint64_t)50000)

/* Whether this slide's end-of-cycle work runs in the pause: not when
 * the allocation window is to be faulted in or a full cycle's walk
 * points filled (both can take milliseconds), nor when its clearing took
 * longer last time (or is not yet measured, above 2 MiB). */
static int end_in_pause(const mc_state *m) {
  if (m->pf_want) return 0;
  /* The first young cycle after a full one gives back the old
   * generation's tables below its floor (fwd_reset: release_below_floor,
   * 1/16 of the old generation's bytes: 0.66 ms for 185 MiB), which the
   * last young cycle's clearing says nothing of. */
  const fwd_tables *t = &m->t;
  uintptr_t released = t->released_below > t->begin ? t->released_below : t->begin;
  if (t->young && t->lo > released) return 0;
  if (m->old_used <= MC_INLINE_END_BYTES) return 1; /* walk points left unfilled: few cards */
  uint64_t last = m->end_ns[m->t.young != 0];
  return !m->gen.fill_walk && last && last <= MC_INLINE_END_NS;
}

static void *end_cycle_main(void *arg) {
  mc_state *m = arg;
  mc_end_cycle(m);
  mc_prefault(m);
  mc_gen_fill_walk(m); /* a full cycle's per-card walk points */
  return NULL;
}

void mc_end_slide(mc_state *m) {
  /* Clearing the tables (and faulting in what the allocation window
   * needs beyond the slide's resident pages) need not stop the world: a
   * pool task does it after the pause, and the next cycle joins it
   * (mc_join_worker) before it touches either.  Small tables are cleared
   * with a few memsets and nothing needs faulting in: done here, a task
   * would cost more than the work (end_in_pause). */
  if (end_in_pause(m)) {
    mc_end_cycle(m);
    return;
  }
  /* Started once the world runs (mc_after_pause): waking a pool thread
   * from inside the pause let the scheduler hand it this CPU when the
   * other one was busy, and the pause waited for it. */
  m->end_pending = 1;
}

void mc_quiesce(fh_heap *h) {
  if (h->mc) mc_join_worker(h->mc);
}

void mc_after_pause(fh_heap *h) {
  mc_state *m = h->mc;
  if (!m || !m->end_pending) return;
  m->end_pending = 0;
  if (gc_pool_start(&h->pool, &m->worker, "fh-release", end_cycle_main, m) == 0)
    m->worker_joinable = 1;
  else
    mc_end_cycle(m);
}
