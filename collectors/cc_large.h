/* Large reference arrays fixed after the flip, page by page (issue 16;
 * ART's linear-alloc arenas, research/art-cmc.md 2.5 and 2.6).
 *
 * A flip must leave no reference into from-space where a mutator can read
 * it (to-space invariant), and updating a large-object-space reference
 * array in the pause costs O(slots): fhbench pause's 30 MB root table, 3.7M
 * references, was 11-65 ms of a remark.  Instead, in the flip pause:
 *   - mc_update_outside skips every large reference array of at least
 *     FH_CC_LARGE_MIN bytes (default CC_LARGE_MIN_DEFAULT) that is not
 *     pinned (fh_pin, a conservative stack word: those may be handed to the
 *     kernel, which must find their pages present), and fixes only the
 *     slots on its header's page (cc_large_defer);
 *   - once the moving space's range is registered, each such object's
 *     other pages go aside with mremap(MREMAP_DONTUNMAP) to a reservation
 *     congruent to them modulo 2 MiB (so page tables move whole), and the
 *     emptied range is registered MISSING on the compactor's userfaultfd
 *     (cc_large_flip).
 * After the pause, the GC worker builds the pages first (cc_large_work,
 * before the moving space's): copy the page from aside, forward its slots
 * (mc_forward_slots), UFFDIO_COPY it into place (mc_install: the moving
 * space's install, with its fallbacks).  A mutator touching a page first
 * faults and builds it the same way, in its SIGBUS handler or through the
 * handler thread, claiming it in the page's state word as the moving
 * space's pages are claimed (PAGE_UNTOUCHED -> BUILDING -> MAPPED).  When
 * every page is mapped the range is retired and the reservation unmapped;
 * aside pages go back every 2 MiB as the worker passes them.
 *
 * Every failing step falls back to updating that object in the pause: no
 * reservation, mremap failing (the object stays where it is), registration
 * failing (the pages move back, or are copied back when that mremap fails
 * too), the uffd unusable for the moving space (cc_large_fallback). */
#ifndef FH_CC_LARGE_H_
#define FH_CC_LARGE_H_

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CC_LARGE_MAX 16 /* objects per cycle (each is one of the process's 64 uffd ranges) */
#define CC_LARGE_MIN_DEFAULT ((size_t)256 << 10)

struct mc_state;

typedef struct cc_large_obj {
  struct mc_state *m;
  uintptr_t start;        /* the header (page-aligned) */
  size_t nslots;          /* payload slots */
  uintptr_t lo, hi;       /* its pages past the header's page: registered */
  uintptr_t aside;        /* where [lo, hi) lies meanwhile */
  uintptr_t res;          /* the reservation holding aside */
  size_t res_len;
  _Atomic uint32_t *state; /* PAGE_* per page of [lo, hi) */
  int range_id;
} cc_large_obj;

typedef struct cc_large_set {
  cc_large_obj obj[CC_LARGE_MAX];
  size_t n;         /* deferred this pause; after cc_large_flip: registered */
  int defer;        /* mc_update_outside may defer (mc_prepare_move) */
  size_t min_bytes; /* FH_CC_LARGE_MIN, read once */
  /* the last flip's figures (FH_MC_TRACE, tests) */
  size_t last_objects, last_pages, last_fallbacks;
  uint64_t last_flip_ns, last_work_ns;
  /* Clock readings of the last flip pause (FH_MC_TRACE: where the flip's
   * time goes): outside references updated, cc_large_flip begun, ended. */
  uint64_t at_updated, at_flip_begin, at_flip_end;
  uint64_t total_objects, total_fallbacks; /* since the state was made */
} cc_large_set;

/* mc_update_outside, world stopped, on a reference array of nslots slots:
 * 1 when it was deferred (its header page's slots forwarded now, the rest
 * by cc_large_flip or cc_large_fallback), 0 when the caller updates it. */
int cc_large_defer(struct mc_state *m, void *obj, size_t nslots);
/* Flip pause, the moving space's range registered: move the deferred
 * objects' pages aside and register them; those that fail are updated
 * now. */
void cc_large_flip(struct mc_state *m);
/* The flip will not happen (userfaultfd unusable now): update every
 * deferred object in the pause. */
void cc_large_fallback(struct mc_state *m);
/* The GC worker, first thing: build every registered page, wait for those
 * mutators build, retire the ranges, unmap the reservations. */
void cc_large_work(struct mc_state *m, uint8_t *buf);

#endif
