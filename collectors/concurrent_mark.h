/* Concurrent marking (issue 16): the phase driver, collector-agnostic.
 *
 * A cycle, as ART's concurrent mark-sweep and CMC run it:
 *   1. initial pause (a collection's pause, world stopped): the collector
 *      clears the cards of the spaces it collects, pushes the roots on its
 *      tracer's stack and calls cmark_begin, which turns on black
 *      allocation (every object allocated from now on is marked) and starts
 *      the marker task on the GC pool;
 *   2. concurrently: the marker drains the stack while mutators run, then
 *      marks the references the barrier logged: while marking runs every
 *      fh_write_ref takes its slow path, which logs the reference it
 *      overwrites (snapshot at the beginning, Yuasa), and the ephemeron
 *      accessors log what they return (keep-alive);
 *   3. remark pause: the marker, or a collection requested meanwhile,
 *      stops the world; the collector's finish() marks the rest of the
 *      log, rescans the roots, drains, runs weak processing and starts the
 *      sweep.  Black allocation and the barrier end there.
 *   3'. or, for a collector with a remark() op (concurrent_compact): the
 *      marker's remark pause ends the marking only; the marker then does
 *      the collector's between() work (the forwarding) with the world
 *      running, and a second short pause (finish()) ends the cycle.
 * No read barrier.  A collector that tracks stores by cards instead can
 * give card ranges to pre-clean (cmark_preclean; mark_sweep gives none).
 *
 * What a collector provides: cmark_ops (mark, drain, step, rescan of a
 * card, finish, abandon), card ranges if any, and its collector ops (the
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
  /* Mark *slot's referent (a logged reference), as a root would be. */
  void (*mark)(void *tracer, void **slot);
  /* Trace from the tracer's stack until it is empty or the budget is over
   * (gc_budget_over: its stop flag set, or its burst of paced work spent;
   * heap/gc_pace.h).  Called again to go on. */
  void (*drain)(void *tracer, gc_budget *b);
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
  /* Optional: a remark that ends the marking without finishing the cycle.
   * Called in the marker's own remark pause (world stopped) before
   * finish; returns 0 to let finish do the whole remark now (nothing
   * done), 1 when marking is over and the cycle goes on: the world
   * resumes, with black allocation and the barrier off, the marker runs
   * between() beside the mutators, and its next pause (or any collection
   * requested meanwhile) calls finish, which then ends the cycle; -1 on
   * failure (error set, the cycle's state freed). */
  int (*remark)(fh_heap *h, cmark *cm);
  /* The concurrent work after such a remark; returns early when the
   * budget is over, and is called again to go on (paced), unless its stop
   * flag is set (finish then does the rest in the pause). */
  void (*between)(void *tracer, gc_budget *b);
  /* Optional, in the pause that began the marking: take the bump space's
   * holes (spaces/bump_space.h; the array, NULL when none, passes to it
   * on 1) and hand them out while marking runs, marking black what is
   * allocated there and above the top; 0: the caller frees them. */
  int (*keep_holes)(fh_heap *h, cmark *cm, struct bump_hole *holes, size_t n, size_t bytes);
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
  int task_pending;        /* begun in the pause, the task not started yet */
  size_t black_detached;   /* cm_black_bytes of threads detached meanwhile */
  /* Full SATB buffers handed over by mutators (cmark_satb_log), under
   * satb_lock; satb_failed: a buffer could not be allocated, the log is
   * incomplete and the remark marks again from scratch. */
  pthread_mutex_t satb_lock;
  void ***full;
  size_t nfull, capfull, logged;
  int satb_failed;
  int remarked; /* ops->remark ended the marking; finish ends the cycle */
  uint64_t begin_ns;
  /* Marker figures: wall and CPU time, pre-cleaning rounds and cards. */
  uint64_t marker_ns, marker_cpu_ns;
  size_t rounds, precleaned;
};

/* World stopped, the roots pushed: black allocation and the barrier on.
 * Returns 0.  The marker task starts after the world resumes
 * (cmark_start_task): started in the pause, a woken pool thread preempted
 * the pausing one on a busy machine (initial pauses of 2-17 ms on GCBench
 * instead of 0.1). */
int cmark_begin(fh_heap *h, cmark *cm);
/* gc_lock held, world running: start the marker of the cycle just begun
 * (not with h->cm_manual); without a thread the next collection finishes
 * the marking in its pause. */
void cmark_start_task(fh_heap *h);
/* In the pause that began a marking: the bump space's holes to its
 * collector's keep_holes (1: it took them), or 0 (the caller frees them). */
int cmark_keep_holes(fh_heap *h, struct bump_hole *holes, size_t n, size_t bytes);
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

/* The snapshot-at-the-beginning barrier's log (heap/barrier.c, the
 * ephemeron accessors): `old` was overwritten in, or read from, a heap
 * slot by t while marking runs. */
#define CMARK_SATB_ENTRIES 1024
void cmark_satb_log(fh_thread *t, void *old);
/* Hand t's partial buffer to the cycle (detach; world stopped). */
void cmark_satb_flush(fh_heap *h, cmark *cm, fh_thread *t);
/* Mark every logged reference, the threads' partial buffers included
 * (world stopped), or only the handed-over ones (the marker). */
void cmark_satb_drain(cmark *cm, int threads_too);
/* Free the cycle's buffers and the threads' (world stopped). */
void cmark_satb_forget(fh_heap *h, cmark *cm);

/* Tests (h->cm_manual): scan at most n objects of the running cycle;
 * pre-clean once.  With gc_lock not held, by a mutator: racy by design. */
size_t cmark_test_step(fh_heap *h, size_t n);
/* Tests (h->cm_manual with h->cm_manual_split): a GC_CAUSE_REMARK
 * collection splits the remark as the marker's does; this runs the
 * between() work the marker would (world running), and the next
 * GC_CAUSE_REMARK collection is the flip pause. */
void cmark_test_between(fh_heap *h);

#endif
