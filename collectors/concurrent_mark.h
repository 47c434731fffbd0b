/* Concurrent marking (issue 16): the phase driver, collector-agnostic.
 *
 * A cycle, as ART's concurrent mark-sweep and CMC run it:
 *   1. initial pause (a collection's pause, world stopped): the collector
 *      clears the cards of the spaces it collects, pushes the roots on its
 *      tracer's stack and calls cmark_begin, which turns on black
 *      allocation (every object allocated from now on is marked) and starts
 *      the marker task on the GC pool;
 *   2. concurrently: the marker drains the stack while mutators run; then
 *      pre-cleaning rounds: each dirty card of the collected spaces is
 *      cleared, then the marked objects on it are scanned again (a card is
 *      dirtied by fh_write_ref after the store, with release order, and
 *      cleared with an acquire exchange: a marker that clears a card sees
 *      every store made before it was dirtied, and a store whose card it
 *      does not see dirty leaves the card dirty for the next round);
 *   3. remark pause: the marker, or a collection requested meanwhile,
 *      stops the world; the collector's finish() rescans the roots and the
 *      cards still dirty, drains, runs weak processing and starts the
 *      sweep.  Black allocation ends there.
 * Incremental update (Dijkstra/Steele through cards), no read barrier: a
 * reference hidden in an already scanned object is on a dirty card, and
 * one held only by a root is found by the remark's root scan.
 *
 * What a collector provides: cmark_ops (drain, rescan of a card, finish,
 * abandon), the card ranges to pre-clean, and its collector ops (the
 * marker runs the remark pause as a collection of cause GC_CAUSE_REMARK).
 * collectors/mark_sweep.c is the first user; concurrent_compact plugs in
 * the same way with mc_mark.c's tracer (docs/architecture.md).
 *
 * Lifecycle.  h->cm is set and cleared in pauses only, under gc_lock.  The
 * marker never takes a lock anyone holds while waiting for it: it takes
 * gc_lock with trylock, and only to run the remark; every gc_lock holder
 * that must not find marking running completes it (gc_run: any collection
 * requested meanwhile finishes this cycle first, never a second marker) or
 * abandons it (fork, fh_prefork, heap destroy), stopping and joining the
 * marker first. */
#ifndef FH_CONCURRENT_MARK_H_
#define FH_CONCURRENT_MARK_H_

#include "heap/heap.h"

struct fh_collector_ops;
typedef struct cmark cmark;

typedef struct cmark_ops {
  /* Trace from the tracer's stack until it is empty or *stop is nonzero. */
  void (*drain)(void *tracer, const _Atomic int *stop);
  /* Scan at most n objects (tests step the marker); 0 when none was left. */
  size_t (*step)(void *tracer, size_t n);
  /* The card [lo, hi) was dirty and is now clear: visit again the
   * references of every marked object whose payload pointer lies in it. */
  void (*rescan_card)(void *tracer, uintptr_t lo, uintptr_t hi);
  /* World stopped, the marker stopped: finish the cycle (remark, weak
   * processing, reclaim) and free the cycle's state.  0 or -1 + error. */
  int (*finish)(fh_heap *h, cmark *cm, gc_cause cause);
  /* World stopped, the marker stopped: forget the cycle (marks cleared),
   * free its state. */
  void (*abandon)(fh_heap *h, cmark *cm);
} cmark_ops;

#define CMARK_RANGES 2

struct cmark {
  fh_heap *h;
  const cmark_ops *ops;
  const struct fh_collector_ops *collector; /* the remark pause's collection */
  void *tracer;
  uintptr_t lo[CMARK_RANGES], hi[CMARK_RANGES]; /* pre-cleaned card ranges */
  unsigned nranges;
  _Atomic int stop;        /* the marker ends as soon as it reads it */
  _Atomic int marker_done; /* its concurrent part is over */
  size_t black_detached;   /* cm_black_bytes of threads detached meanwhile */
  uint64_t begin_ns;
  /* Marker figures: wall and CPU time, pre-cleaning rounds and cards. */
  uint64_t marker_ns, marker_cpu_ns;
  size_t rounds, precleaned;
};

/* World stopped, the roots pushed: black allocation on, the marker task
 * started (not with h->cm_manual).  0, or -1 (no pool thread): then the
 * caller finishes the cycle in this pause (cmark_complete). */
int cmark_begin(fh_heap *h, cmark *cm);
/* World stopped: stop and join the marker, then the collector's finish().
 * Black allocation ends (every thread's held bits published first). */
int cmark_complete(fh_heap *h, gc_cause cause);
/* World stopped (or no mutator left): stop and join the marker, forget the
 * cycle. */
void cmark_abandon(fh_heap *h);
/* Join the last marker task if it has not been (no lock needed; it may
 * still be returning from its remark). */
void cmark_join(fh_heap *h);
/* Clear every dirty card of cm's ranges and rescan the marked objects on
 * it; the number of dirty cards found. */
size_t cmark_preclean(cmark *cm);
/* Black allocation for every thread (world stopped). */
void cmark_set_black(fh_heap *h, int on);
/* Bytes allocated black this cycle (world stopped, after settling). */
size_t cmark_black_bytes(fh_heap *h, cmark *cm);

/* gc_lock held, world running: wait until the marker's concurrent part
 * is over (a triggered collection lets it finish rather than finishing its
 * work in the pause). */
void cmark_wait_marker(fh_heap *h);

/* Tests (h->cm_manual): scan at most n objects of the running cycle;
 * pre-clean once.  With gc_lock not held, by a mutator: racy by design. */
size_t cmark_test_step(fh_heap *h, size_t n);

#endif
