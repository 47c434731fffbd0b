/* A collector is a small function set chosen by the heap.  The driver
 * (driver.c) owns the protocol every collection shares: take the GC lock,
 * prepare, stop the world, retire TLABs, verify, collect, verify, account
 * the pause, resume. */
#ifndef FH_COLLECTOR_H_
#define FH_COLLECTOR_H_

#include "heap/heap.h"

typedef struct fh_collector_ops {
  const char *name;
  /* World stopped, TLABs retired.  Returns 0, or -1 + fh_last_error() with
   * the heap left consistent (no object lost, nothing half-moved). */
  int (*collect)(fh_heap *h, fh_thread *self, gc_cause cause);
  /* Optional, before the world stops (GC lock held, the previous
   * collection's concurrent phase over): work that needs no stopped world,
   * taken out of the pause.  Failure is left for collect to report. */
  void (*prepare)(fh_heap *h);
} fh_collector_ops;

extern const fh_collector_ops semi_space_collector;
extern const fh_collector_ops gen_semi_space_collector; /* semi_space.c, generational */
extern const fh_collector_ops mark_compact_collector;       /* mark_compact.c */
extern const fh_collector_ops concurrent_compact_collector; /* concurrent_compact.c */
/* concurrent_compact where userfaultfd works in this process, else
 * mark_compact, with fh_last_error() saying why. */
const fh_collector_ops *concurrent_compact_or_fallback(void);
/* A concurrent compaction phase still runs (h->concurrent_phase, locked). */
int mc_phase_open(fh_heap *h);
/* If a concurrent compaction phase is open, build its pages alongside the
 * GC worker until none is left to claim (then wait with fh_gc_wait). */
void mc_help_phase(fh_heap *h);
/* After the world resumed (gc_lock still held): start the end-of-cycle
 * task a slide left pending (mark_compact.c), outside the pause. */
void mc_after_pause(fh_heap *h);
/* Before any other collection (or zygote compaction) stops the world:
 * join that task, which may still be reading the moving space
 * (mc_gen_fill_walk) that the collection is about to move. */
void mc_quiesce(fh_heap *h);
/* After a pause that flipped, world running, gc_lock still held: start
 * the concurrent compaction's worker (started in the pause, a woken pool
 * thread can preempt the pausing one: flip pauses of 4-6 ms on a busy
 * machine instead of 0.5).  Until it runs, faulting mutators build their
 * own pages. */
void mc_start_worker(fh_heap *h);
extern const fh_collector_ops mark_sweep_collector;
extern const fh_collector_ops hspace_compact_collector;

/* The collector configured for an option value, or NULL + error when this
 * build does not provide it. */
const fh_collector_ops *collector_for(fh_collector c);

/* Run one collection of `kind` on behalf of `self`.  For a triggered
 * collection, `seen_collections` is the collection count the caller saw
 * before deciding to collect: when another thread collected meanwhile, this
 * returns 0 at once instead of collecting twice. */
/* Count one collection and its pause (started at t0); the world is still
 * stopped.  Every pause, gc_run's or fh_prefork's, goes through here. */
void gc_account_pause(fh_heap *h, uint64_t t0);

int gc_run(fh_thread *self, fh_collect_kind kind, gc_cause cause, uint64_t seen_collections);

struct gc_watch;
/* gc_run's pause, with gc_lock held by the caller (self may be NULL: the
 * concurrent marker runs its remark this way).  0 or -1 after a pause
 * (then gc_events_end(watch) is due), 1 when there was nothing to do, -2
 * when the world could not be stopped. */
int gc_collect_locked(fh_heap *h, fh_thread *self, const fh_collector_ops *ops, gc_cause cause,
                      int young, struct gc_watch *watch);

#endif
