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
 * Ephemeron fix-point, linear in the number of ephemerons.  When the
 * collector scans an ephemeron (its cache line is hot then), a cleared one
 * costs nothing more and one whose key is already reached is resolved at
 * once: key and value are visited as strong slots.  Only the others are
 * recorded, with their key, so nothing has to read the ephemeron again
 * until it is cleared.  After the strong closure each recorded one whose
 * key is now live is resolved; the rest go into an index by key address.
 * From then on every object the collector reaches for the first time is
 * looked up in the index (trace_weak_reached), so an ephemeron is resolved
 * the moment its key is reached, whatever the order: a chain of n
 * ephemerons, each value the next key, resolves in one pass, not n.
 * Ephemerons found after the strong closure (inside a resolved value) are
 * classified at once.  When nothing is left to resolve, the unresolved
 * ephemerons' keys are dead: finalization runs first (it may resurrect
 * keys, which then resolve: an object kept alive for finalization keeps
 * its ephemerons, as in Whippet), then the rest are cleared (key and value
 * NULL).
 *
 * Without memory for the records an ephemeron is traced as a strong pair
 * for the cycle; without memory for the index the fix-point rescans the
 * pending list until nothing changes (quadratic at worst, but correct). */
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
  /* Optional: start loading what is_live(obj) will read. */
  void (*prefetch)(void *tracer, const void *obj);
} trace_ops;

typedef struct trace_weak {
  fh_heap *h;
  const trace_ops *ops;
  void *tracer;
  mark_stack found;    /* (ephemeron, key) pairs recorded by the strong closure */
  mark_stack resolved; /* ephemerons whose key became live: visit key, value */
  struct trace_pending *pending; /* ephemerons whose key is not (yet) live */
  size_t npending, pending_cap;
  uint32_t *heads;     /* [nbuckets] index of pending by key: first entry + 1 */
  size_t nbuckets;
  int indexing;        /* after the strong closure: trace_weak_reached looks up */
  int no_index;        /* no memory for the index: rescan instead */
  size_t kept_strong;  /* ephemerons traced as strong pairs for lack of memory */
  /* Figures for fh_dump and fhbench. */
  size_t ephemerons, cleared, finalized;
  uint64_t weak_ns; /* time in trace_weak_finish */
} trace_weak;

void trace_weak_init(trace_weak *w, fh_heap *h, const trace_ops *ops, void *tracer);
void trace_weak_destroy(trace_weak *w);

/* The collector scanned a live ephemeron (payload pointer at its current
 * address) instead of visiting its key and value. */
void trace_ephemeron(trace_weak *w, void *eph);
/* For a tracer that cannot call the layer while it scans (the parallel
 * marker's helpers): an ephemeron it recorded itself, with the key it read
 * then, handed over after the strong closure. */
void trace_ephemeron_recorded(trace_weak *w, void *eph, void *key);

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
/* Its two parts: the finalization records, and the records of the hashed
 * objects' vacated addresses (heap/identity_hash.h), which no mutator
 * reads: a flip's pause leaves those to the GC worker (mark_compact.c). */
void weak_roots_visit_finalizers(fh_heap *h, fh_visit_fn visit, void *ctx);
void weak_roots_visit_vacated(fh_heap *h, fh_visit_fn visit, void *ctx);

#endif
