/* Finalization, the embedder's side (heap/finalizer.c). */
#ifndef FH_FINALIZER_H_
#define FH_FINALIZER_H_

#include "heap/heap.h"

/* After a collection has resumed the world and released the GC lock: call
 * the notify callback if that collection took the queue from empty to
 * non-empty (trace_weak_finish sets h->fin_queue_filled in the pause). */
void finalizer_notify_if_filled(fh_heap *h);

#endif
