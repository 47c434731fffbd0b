/* The tracing layer every collector shares for what is not a plain strong
 * reference: ephemerons, finalization, and the heap's weak record tables
 * (heap/weak_records.h).  Collectors decide where objects go (copy, slide,
 * sweep); this layer decides what of the weakly held is live.
 *
 * A collector describes itself with trace_ops and runs a collection as:
 *
 *   trace_weak w; trace_weak_init(&w, h, &ops, tracer);
 *   ...strong closure: roots, then drain; its object scan hands every
 *      ephemeron to trace_ephemeron() instead of visiting key and value,
 *      and its "reached for the first time" path calls trace_weak_reached()...
 *   trace_weak_finish(&w);   ephemeron fix-point, finalization, clearing
 *   ...move / sweep; update passes also call weak_roots_visit()...
 *   trace_weak_destroy(&w);
 *
 * Ephemeron fix-point, linear in the number of ephemerons.  During the
 * strong closure an ephemeron is only recorded.  Afterwards each recorded
 * one whose key is live is resolved (key and value visited as strong
 * slots); the others go into an index by key address.  From then on every
 * object the collector reaches for the first time is looked up in the
 * index (trace_weak_reached), so an ephemeron is resolved the moment its
 * key is reached, whatever the order: a chain of n ephemerons, each value
 * the next key, resolves in one pass, not n.  Ephemerons found after the
 * strong closure (inside a resolved value) are classified at once.  When
 * nothing is left to resolve, the unresolved ephemerons' keys are dead:
 * finalization runs first (it may resurrect keys, which then resolve:
 * an object kept alive for finalization keeps its ephemerons, as in
 * Whippet), then the rest are cleared (key and value NULL).
 *
 * Without memory for the index the fix-point rescans the pending list until
 * nothing changes: quadratic in the worst case, but correct. */
#ifndef FH_TRACE_H_
#define FH_TRACE_H_

#include "collectors/mark_stack.h"
#include "heap/heap.h"

typedef struct trace_ops {
  /* obj was reached in this collection, or lies where this collection
   * collects nothing (immune spaces, native memory, to-space).  NULL: 1. */
  int (*is_live)(void *tracer, const void *obj);
  /* Reach *slot's referent as a strong reference would: mark it (and queue
   * it for scanning) or copy it; copying collectors update *slot. */
  fh_visit_fn visit;
  /* Scan everything reached and not yet scanned (with overflow recovery).
   * 0, or -1 when the tracer failed (its marking is incomplete). */
  int (*drain)(void *tracer);
} trace_ops;

typedef struct trace_weak {
  fh_heap *h;
  const trace_ops *ops;
  void *tracer;
  mark_stack found;    /* ephemerons recorded by the strong closure */
  mark_stack pending;  /* ephemerons whose key is not (yet) live */
  mark_stack resolved; /* ephemerons whose key became live: visit key, value */
  size_t *next;        /* pending index: chain links, parallel to pending */
  size_t *heads;       /* [nbuckets] first pending index + 1, 0: empty */
  size_t nbuckets, next_cap;
  int indexing;        /* after the strong closure: trace_weak_reached looks up */
  int no_index;        /* no memory for the index: rescan instead */
  int overflowed;      /* a record could not be kept: ephemeron treated strong */
  /* Figures for fh_dump and fhbench. */
  size_t ephemerons, cleared, finalized;
  uint64_t weak_ns; /* time in trace_weak_finish */
} trace_weak;

void trace_weak_init(trace_weak *w, fh_heap *h, const trace_ops *ops, void *tracer);
void trace_weak_destroy(trace_weak *w);

/* The collector scanned a live ephemeron (payload pointer at its current
 * address) instead of visiting its key and value. */
void trace_ephemeron(trace_weak *w, void *eph);

void trace_weak_reached_slow(trace_weak *w, const void *obj);
/* The collector reached obj (the address its referrers hold) for the first
 * time in this collection.  Costs a load and a branch until the strong
 * closure is over. */
static inline void trace_weak_reached(trace_weak *w, const void *obj) {
  if (__builtin_expect(w != NULL && w->indexing, 0)) trace_weak_reached_slow(w, obj);
}

/* After the strong closure, world stopped: resolve ephemerons, queue the
 * objects of finalization records found dead (resurrecting them), clear
 * the ephemerons whose keys stayed dead, and drop or update the records
 * of every weak table (for copying collectors through ops->visit). */
int trace_weak_finish(trace_weak *w); /* -1: ops->drain failed, nothing cleared */

/* Update passes of collectors that move objects after marking (sliding,
 * homogeneous and zygote compaction): visit the object slot of every
 * record of the heap's weak tables.  After trace_weak_finish every one of
 * them holds a live object. */
void weak_roots_visit(fh_heap *h, fh_visit_fn visit, void *ctx);

#endif
