/* Watching collections: the trace=1 line and fh_set_gc_callback's events
 * (heap/gc_events.c).  The driver brackets each collection with them. */
#ifndef FH_GC_EVENTS_H_
#define FH_GC_EVENTS_H_

#include "heap/heap.h"

typedef struct gc_watch {
  fh_gc_event e;      /* filled as the collection goes */
  uint64_t moved0, faults0, weak0;
  const char *how; /* h->gc_how at the end of the pause */
  /* A concurrent marking's remark pause: the trace line says so, under
   * the number of the cycle it ends, but fh_set_gc_callback's events are
   * the cycle's (its initial pause's): one start and one end per
   * collection, in order. */
  int remark;
} gc_watch;

/* Before the world stops (GC lock and stats_lock held): the start
 * event's figures; announce (stats_lock released: the callback may read
 * the statistics) reports it. */
void gc_events_start(fh_heap *h, gc_watch *w, const char *collector, gc_cause cause);
void gc_events_announce(fh_heap *h, gc_watch *w);
/* With the world still stopped, after the collection: its figures. */
void gc_events_collected(fh_heap *h, gc_watch *w, uint64_t pause_ns);
/* After the world resumed and the GC lock is released: the end event and
 * the trace line. */
void gc_events_end(fh_heap *h, gc_watch *w);

#endif
