/* The markers of mark-compact (collectors/mc_mark.c) and their crew of
 * helpers for parallel marking (collectors/mc_mark_crew.c): private to the
 * two files. */
#ifndef FH_MC_MARKER_H_
#define FH_MC_MARKER_H_

#include <pthread.h>

#include "collectors/mark_stack.h"
#include "collectors/mc.h"
#include "collectors/trace.h"

/* Parallel marking (gc_threads markers): each marker has its own stack;
 * one with work to spare while others are idle gives half of it (or half
 * of the rest of an array it is scanning) to a shared pool, idle markers
 * take from it, and marking ends when every marker is idle and the pool is
 * empty.  Each marker sets bits only in bitmaps of its own (forwarding.h:
 * extra_mark), merged when marking ends. */
#define MAX_ARRAY_CONTS 64

typedef struct array_cont {
  void **slots;
  size_t next, n;
} array_cont;

typedef struct mark_pool {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  mark_stack items;
  array_cont ranges[MAX_ARRAY_CONTS]; /* parts of arrays still to scan */
  unsigned nranges;
  unsigned nthreads, idle;
  int done;
  unsigned merged; /* markers whose share of the merge is done */
  /* Read without the lock: a marker is idle and the pool has nothing for
   * it (so a busy marker should share).  Kept by pool_hint under it. */
  _Atomic int hungry;
  /* Bit k: marker k's bitmaps are faulted in (marker 0's always are), so
   * the others may read its start bits (see look_for_others). */
  _Atomic unsigned bitmaps_ready;
} mark_pool;

/* A reference array is scanned ARRAY_CHUNK slots at a time: the rest waits
 * as a continuation until the objects found in the chunk are drained.
 * Scanning a huge array at once would push every element it reaches (the
 * fhbench pause table: 6.7M nodes, a 53 MiB mark stack, resident memory
 * the cycle then had to account for); in chunks the stack stays small, and
 * the rest of an array can be split with an idle marker.  The
 * continuations are few (one per array being scanned, nested only through
 * arrays reached from arrays); when they run out, an array is scanned
 * whole, as before. */
#define ARRAY_CHUNK 512

/* Claims a card scan keeps in flight (defer_claim). */
#define CLAIM_AHEAD 16

typedef struct marker {
  fh_heap *h;
  slot_tags tags;             /* how slots hold references (heap/slot.h) */
  fwd_tables *t;
  unsigned index;             /* 0: the collecting thread */
  _Atomic uint64_t *own_mark; /* the start bits this marker sets */
  fh_bitmap *own_live;        /* and live-word bits */
  _Atomic uint64_t *other_mark[FWD_MAX_MARKERS - 1]; /* the others' start bits */
  unsigned nothers;
  unsigned unseen;     /* bit k: marker k, whose start bits are not read yet */
  mark_stack stack;
  array_cont arrays[MAX_ARRAY_CONTS];
  unsigned narrays;
  int overflowed;
  unsigned hits;       /* slots found referring into [ylo, old_top) (scan_old) */
  mark_pool *pool;     /* NULL: marking alone */
  mc_mark_crew *crew;  /* the helpers' crew, for helpers */
  /* Ephemerons: marker 0 hands them to the tracing layer; helpers keep
   * theirs here until marking is over (the layer is single-threaded). */
  trace_weak *weak;
  mark_stack ephs;
  /* Concurrent marking (collectors/cc_concurrent.c): drain returns once
   * the budget is over (checked every 64 objects); NULL with the world
   * stopped. */
  gc_budget *budget;
  /* Concurrent marking with the holes handed out (cc_keep_holes): the
   * cards of the claims carved from them (spaces/bump_space.h), whose
   * objects the remark marks black and this marker leaves alone (the
   * mutators may still be writing them).  NULL otherwise. */
  const _Atomic uint64_t *black;
  uintptr_t black_base;
  /* Young referents found on dirty cards, waiting for their claim while
   * their start-bit word is prefetched (defer_claim). */
  void *pend[CLAIM_AHEAD];
  unsigned pend_head, pend_n;
} marker;

/* The helper markers of one marking, kept until mc_mark_end: after the
 * merge they give their own bitmaps back while the collecting thread goes
 * on with the pause (fwd_compute reads only the shared bitmaps). */
struct mc_mark_crew {
  mark_pool pool;
  marker helpers[FWD_MAX_MARKERS - 1];
  gc_task tasks[FWD_MAX_MARKERS - 1];
  gc_pool *threads;
  unsigned nh;
};

/* Marker k's view of the bitmaps (k of n). */
void mc_marker_setup(marker *m, fh_heap *h, fwd_tables *t, unsigned k, unsigned n,
                     mark_pool *pool);
/* Mark until this marker's work is done: alone, until its stack is empty;
 * in a crew, until every marker is idle and the pool empty; concurrently,
 * also until its budget is over. */
void mc_marker_drain(marker *m);
/* How many markers this marking gets (gc_threads, FH_MC_MARK_THREADS). */
unsigned mc_markers_wanted(const fh_heap *h, const fwd_tables *t);
/* Start up to n - 1 helpers; NULL when none started. */
mc_mark_crew *mc_crew_start(fh_heap *h, fwd_tables *t, unsigned n);
/* Merge this marker's share of the helpers' bitmaps, then wait for all. */
void mc_merge_and_wait(marker *m, unsigned nmarkers);

#endif
