/* The zygote space and the pre-fork API, as the rest of the heap sees them:
 * zygote compaction (collectors/zygote_compact.c), the dirty-card scan of
 * the zygote space (heap/zygote_cards.c) and the fork bookkeeping
 * (heap/fork.c). */
#ifndef FH_ZYGOTE_H_
#define FH_ZYGOTE_H_

#include "heap/heap.h"

/* Visit every reference slot of a zygote object that lies on a dirty card:
 * the only places where a zygote object can refer to an object outside the
 * immune spaces.  Nothing is written (a visitor that rewrites a slot writes
 * a word the mutator already wrote).  No zygote space: nothing. */
void zygote_visit_dirty_refs(fh_heap *h, fh_visit_fn visit, void *ctx);

/* Zygote compaction (fh_prefork, after a full collection; world stopped,
 * gc_lock and stats_lock held, `self` the only attached thread).  Copies
 * every live movable object into a bump region after the non-moving space's
 * used range, freezes that space and the region into the zygote space,
 * starts a fresh non-moving space and empties the moving spaces.  0, or -1
 * + error with the heap unchanged. */
int zygote_compact(fh_heap *h);

/* Every heap is on a process-wide list that the pthread_atfork handlers
 * walk (registered once per process by the first heap).  0 or -1 + error. */
int fork_register_heap(fh_heap *h);
/* The handlers registered (once per process), before a heap's first
 * jemalloc call: a fork while the private jemalloc starts up must find
 * them (heap/fork.c).  0 or -1 + error. */
int fork_install_handlers(void);
void fork_unregister_heap(fh_heap *h);

#endif
