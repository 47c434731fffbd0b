/* Marking shared by the non-moving collectors (mark-sweep, homogeneous
 * compaction's first phase): from the roots through every space, with side
 * mark bitmaps and an explicit mark stack, never writing object headers.
 *
 * Where marks go: the main malloc space and the non-moving space have their
 * own mark bitmaps (cleared again by their sweeps); objects of the active
 * bump space (present when a semi-space heap asks for FH_COLLECT_MARK_SWEEP)
 * get a temporary bitmap owned by the marker.  Immune spaces (image,
 * zygote) are never marked or written: their objects are scanned only where
 * a card is dirty, since only a barriered store can have made them point
 * into a collected space. */
#ifndef FH_MARK_H_
#define FH_MARK_H_

#include "collectors/mark_stack.h"
#include "collectors/trace.h"
#include "heap/heap.h"
#include "spaces/bitmap.h"

typedef struct marker marker;
struct marker {
  fh_heap *h;
  slot_tags tags;      /* how slots hold references (heap/slot.h) */
  mark_stack stack;
  int overflowed;      /* a push failed: some marked objects are unscanned */
  malloc_space *ms;    /* the main malloc space, or NULL */
  fh_bitmap bump_marks; /* over the active bump space's objects, if any */
  uintptr_t bump_lo, bump_hi;
  /* Called once per object as it is scanned (depth-first order), before its
   * references are visited; NULL: nothing. */
  void (*on_scan)(marker *m, void *obj);
  void *user;
  size_t ms_live; /* bytes of main malloc space objects scanned */
  /* Mark stack overflow recovery rescans marked objects, which would call
   * on_scan twice for them; a marker with on_scan fails instead. */
  int failed;
  trace_weak weak; /* ephemerons and finalization (collectors/trace.h) */
  /* Concurrent marking (collectors/concurrent_mark.h): mutators run while
   * this marker traces; mark bits are set with a locked OR and the runs'
   * cover bits are left alone. */
  int concurrent;
  int recounted; /* overflow recovery recounted ms_live from the mark bits */
  /* A paced drain (drain_until with a budget) scans reference arrays of
   * more than MARK_ARRAY_CHUNK slots a chunk at a time, looking at its
   * budget between chunks: the array being scanned and the next slot.
   * fhbench pause's 30 MB root table, scanned whole, held the marker's CPU
   * for 100 ms. */
  int chunk_arrays;
  void **array;
  size_t array_next, array_n;
};

/* 0, or -1 + error (no memory for the stack or the bump bitmap). */
int marker_init(marker *m, fh_heap *h);
void marker_destroy(marker *m);
/* Mark everything reachable: roots, dirty cards of immune spaces, then the
 * transitive closure, then ephemerons and finalization (trace_weak_finish:
 * unreachable finalizable objects are queued and marked, ephemerons with
 * dead keys cleared).  World stopped.  Returns 0, or -1 when m->failed
 * (then nothing was cleared). */
int marker_run(marker *m);
/* marker_run in steps, for concurrent marking: start (the weak layer),
 * mark the roots (push them), drain (concurrently, until *stop), rescan
 * objects whose cards were dirtied, finish (drain with overflow recovery,
 * then weak processing: world stopped). */
void marker_start(marker *m);
void marker_mark_roots(marker *m);
void marker_drain_until(marker *m, gc_budget *b);
/* Scan at most n objects from the stack (tests step the marker). */
size_t marker_step(marker *m, size_t n);
/* Visit obj's references again (a marked object on a dirty card); its
 * bytes are not counted again. */
void marker_rescan(marker *m, void *obj);
int marker_is_marked(marker *m, const void *obj);
int marker_finish(marker *m);
/* After marking, overwrite every unmarked object of the active bump space
 * with fillers (runs of them merged into one).  A non-moving collection
 * cannot empty a bump space, but it frees the dead objects of the other
 * spaces that dead bump objects may still refer to: left as they were,
 * those would be objects holding references to freed memory, which heap
 * walks (verify=1) would report as a live object's bad reference.  World
 * stopped; nothing refers to a dead object but other dead objects. */
void marker_fill_dead_bump(marker *m);
/* The visitor that marks one slot's referent (usable as fh_visit_fn). */
void marker_visit(void **slot, void *ctx);

/* Call fn for every object of every immune space that lies on a dirty card
 * (it may hold a reference into a collected space). */
void immune_visit_dirty_objects(fh_heap *h, fh_object_fn fn, void *ctx);

#endif
