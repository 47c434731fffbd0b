/* The from-space ledger: which from-space pages a compaction cycle still
 * needs, so that each goes back to the system as soon as the last
 * destination page reading it is built, wherever that page is.
 *
 * Why: sliding compaction reads from-space while it builds destination
 * pages, and before this every from-space page stayed resident until an
 * address-order watermark passed it.  Mutators fault destination pages in
 * anywhere in the space, far ahead of the GC worker; each of those pages is
 * new resident memory whose sources could not be given back, and the
 * cycle's resident peak rose by about a fifth of the live data (fhbench
 * pause: 490 -> 548 MiB).  With the ledger the peak stays at the pre-cycle
 * figure plus one release batch (docs/architecture.md).
 *
 * What a destination page p reads (page_build, page_fix_in_place):
 *   - the live words that land on it, which lie in old addresses
 *     [src(p), src(p + 1)) where src(p) is the old address of the live word
 *     that lands on p's first byte (sliding keeps order, so the live words
 *     between two such addresses are exactly p's);
 *   - the header of its first object, which may start on an earlier page;
 *   - for an object with a custom trace function, anything in the object
 *     (the function may read any field to find its references).
 * Only pages holding a live word count: a dead page is read by nobody and
 * is ready at once.  readers[s] counts the destination pages that may read
 * from-space page s (a superset: a page is counted for a destination page
 * whose span reaches it even where only the next page's words lie there);
 * building p decrements the counts of its pages, and the one that reaches
 * zero marks s ready.  Pages of an object with a custom trace that spans
 * several destination pages are pinned: never ready before the cycle ends,
 * and never moved out of from-space by UFFDIO_MOVE either (its readers
 * could be any of those pages, and such objects are rare).  A releaser
 * turns ready pages into one process_madvise.
 *
 * Threads: ledger_plan in the pause (or ledger_plan_deferred, after it, on
 * the GC worker); ledger_page_built from any builder,
 * including a SIGBUS handler (atomics only, async-signal-safe); ledger_release
 * by one thread at a time (a flag makes others return at once). */
#ifndef FH_FROM_LEDGER_H_
#define FH_FROM_LEDGER_H_

#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "collectors/forwarding.h"
#include "heap/types.h"
#include "spaces/discard_batch.h"

/* Pages a releaser waits for before it gives them back: at most this much
 * from-space stays resident after it is no longer read (issue 5: released
 * in chunks of at least 8 MiB). */
#define LEDGER_RELEASE_PAGES 2048u
/* readers[s] of a pinned page: it goes back only at the end of the cycle. */
#define LEDGER_PINNED UINT32_MAX

typedef struct from_ledger {
  _Atomic uint32_t *readers; /* per from-space page */
  _Atomic uint64_t *ready;   /* bit per page: no reader left, not given back */
  size_t readers_bytes, ready_bytes;
  size_t npages;             /* from-space pages this cycle */
  uintptr_t src_end;         /* old address just past the last live word */
  _Atomic size_t ready_count;
  _Atomic int releasing;
  sem_t wake;                /* posted when ready_count reaches a batch */
  int wake_ok;               /* wake was initialised */
  discard_batch batch;       /* the releaser's */
  _Atomic size_t released_pages; /* this cycle, for statistics and tests */
  /* A plan made after the pause (ledger_plan_deferred): builders before it
   * only set their page's `built` bit; whoever sets `dropped` first (the
   * builder once `planned` is set, or the planner for a page built before)
   * drops that page's readers.  Bit per destination page. */
  _Atomic uint64_t *built, *dropped;
  size_t dest_pages;     /* destination pages this cycle */
  _Atomic int planned;   /* counts final: builders drop their readers */
  _Atomic int deferred;  /* 1: ledger_plan left the counting to ledger_plan_deferred;
                            2: that runs now */
  const fwd_tables *plan_t; /* the cycle's tables, for the deferred plan */
  uint64_t plan_ns;      /* the last plan's time, wherever it ran (FH_MC_TRACE) */
} from_ledger;

/* Tables for a moving space of `capacity` bytes (NORESERVE mappings).
 * 0, or -1 + fh_last_error(). */
int ledger_init(from_ledger *l, size_t capacity);
void ledger_destroy(from_ledger *l);

/* Count the readers of every from-space page for the cycle fwd_compute
 * just planned.  In the pause, before the space's pages move: it reads the
 * headers of objects spanning pages at their old addresses.  With
 * may_defer, and no type with a trace function (then no header is read
 * and nothing is pinned), only the sizes are set and the counting is left
 * to ledger_plan_deferred, after the pause (issue 16: 1.3-1.9 ms of the
 * flip pause on fhbench pause); returns 1 then.  Until it runs, nothing is
 * ready and builders only note their pages. */
int ledger_plan(from_ledger *l, const fwd_tables *t, const fh_type_registry *types,
                int may_defer);
/* The deferred plan, while builders run; nothing when there is none or
 * another thread makes it.  ledger_release makes it first, so the
 * releaser thread does (or the GC worker without one, or the pause's
 * stop-the-world build): from-space goes back while the worker waits for
 * a CPU.  Reads only the tables, which stay fixed for the cycle. */
void ledger_plan_deferred(from_ledger *l, const fwd_tables *t);

/* Destination page `page` no longer needs from-space (its bytes are built
 * elsewhere, or installed).  Exactly once per page.  Async-signal-safe. */
void ledger_page_built(from_ledger *l, const fwd_tables *t, size_t page);

/* Give back every ready page of from-space (at `shadow`), if at least
 * `min_pages` are ready and no other thread is releasing.  Returns the
 * pages given back. */
size_t ledger_release(from_ledger *l, uintptr_t shadow, size_t min_pages);

/* Keep releasers off from-space while the caller writes into pages that
 * may be ready (the GC worker's staging pages): 1 if held, 0 if a release
 * is running now.  ledger_release returns 0 while it is held. */
int ledger_try_hold(from_ledger *l);
void ledger_unhold(from_ledger *l);

/* A releaser thread's sleep: returns once ready_count has climbed to
 * LEDGER_RELEASE_PAGES since the last call (the builder whose page made it
 * so posts; sem_post is async-signal-safe, so a SIGBUS handler can), or
 * after ledger_wake.  Check ready_count before calling: a batch that is
 * already waiting posts nothing more. */
void ledger_wait_ready(from_ledger *l);
void ledger_wake(from_ledger *l);

/* Is from-space page s pinned for the whole cycle?  Such a page must also
 * never leave from-space by UFFDIO_MOVE (concurrent_compact.c). */
static inline int ledger_pinned(const from_ledger *l, size_t s) {
  return atomic_load_explicit(&l->readers[s], memory_order_relaxed) == LEDGER_PINNED;
}

/* Forget this cycle (after its last page is built). */
void ledger_reset(from_ledger *l);

#endif
