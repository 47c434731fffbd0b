/* How a concurrent_compact cycle compacts (issue 17): slide in the pause,
 * or flip and build concurrently.  Policy only (DESIGN.md section 8): pure
 * functions of figures the mechanism measures, testable on their own
 * (tests/test_mc_policy.c).
 *
 * A flip costs a fixed amount whatever the heap holds: the mremap of the
 * whole space, registering it, the worker and releaser threads, the
 * mutators' first faults on every page they touch before the worker maps
 * it, the end of the phase (unregistering, giving from-space back).  A
 * slide costs the pause time it takes to update the references of the
 * live data and move what lies above the dense prefix, and no system
 * call.  When the slide's estimate is below the flip's fixed cost, the
 * cycle slides: the pause grows by less than the flip would cost. */
#ifndef FH_MC_POLICY_H_
#define FH_MC_POLICY_H_

#include <stddef.h>
#include <stdint.h>

typedef struct mc_slide_model {
  /* Measured on the last slides (mc_policy_learn), ns per byte: the
   * reference update per live byte, the memmove per byte that moves. */
  double update_ns_per_byte, move_ns_per_byte;
  /* What a flip costs beyond the work both ways share (ns). */
  double flip_fixed_ns;
  /* A flip builds and maps the pages pinned objects cover inside its
   * pause (forwarding.h): ns per such page, learned from every flip that
   * built some (mc_policy_pinned_built). */
  double pinned_page_ns;
  int force; /* FH_MC_SLIDE: 0 never slide, 1 always, -1 choose */
  /* Concurrently marked cycles (mc_policy_choose_slide_for_pause), from
   * their own pauses: what a slide took over the default rates' estimate,
   * and a flip's pause less its pinned pages (ns). */
  double pause_slide_scale, pause_flip_ns;
} mc_slide_model;

/* Defaults measured on this project's 2-vCPU VM (docs/architecture.md,
 * "Choosing per cycle"); FH_MC_SLIDE and FH_MC_FLIP_COST_US override. */
void mc_policy_init(mc_slide_model *p);
/* Estimated pause time of a slide of live_bytes, move_bytes of which move. */
uint64_t mc_policy_slide_ns(const mc_slide_model *p, size_t live_bytes, size_t move_bytes);
/* 1: slide in the pause; 0: flip.  *est_ns (may be NULL) gets the slide's
 * estimate. */
int mc_policy_choose_slide(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                           uint64_t *est_ns);
/* The same, for a cycle whose flip would build pinned_pages pages in its
 * pause: they add to the flip's cost, so that a heap whose pins cover most
 * of its pages (1% of small objects pinned evenly covers nearly all)
 * slides instead of building page by page in the pause what the slide
 * moves with memmove (fhbench pins: a 17-19 ms flip pause against an 11
 * ms slide). */
int mc_policy_choose_slide_pinned(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                                  size_t pinned_pages, uint64_t *est_ns);
/* What a flip costs a heap beyond its fixed cost and its pinned pages,
 * from what a slide would keep and the flip gives away (ns):
 * - refault_bytes: the pages above the new top a slide keeps resident
 *   for the next allocation window (the old objects' pages, zeroed by the
 *   claims, cache-warm) and a flip hands back with from-space: the
 *   mutators fault each one in again before the next collection.
 * - young_kept: with generations, the young survivors a slide would keep
 *   young (mc_gen_keepable_bytes) and a flip promotes.  Usually a
 *   structure being built (GCBench's stretch tree, binary-trees' trees):
 *   it dies old, so a later full collection marks and moves it again, and
 *   meanwhile it lifts the trigger, whose pages are faulted in.  Priced
 *   as a slide of it plus a fault per page of it.
 * thp: the space uses transparent huge pages (a cheaper fault per byte).
 * At most 7x the flip's fixed cost: a slide longer than 8x is a pause
 * the concurrent collector exists to avoid. */
double mc_policy_flip_extra_ns(const mc_slide_model *p, size_t refault_bytes, size_t young_kept,
                               int thp);
/* mc_policy_choose_slide_pinned with the flip's cost raised by extra_ns. */
int mc_policy_choose_slide_extra(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                                 size_t pinned_pages, double extra_ns, uint64_t *est_ns);
/* The same for a cycle that marked concurrently: it is there for its
 * pauses, so a flip is weighed by its pause alone (its mremap, the
 * update outside the moving space, the registration and its pinned
 * pages), not by its concurrent work.  fhscheme with concurrent_mark=1
 * slid 2-5 MiB of live data in 3-11 ms remarks that a flip holds to
 * about half a millisecond.  Both sides as those pauses measured them
 * (mc_policy_learn_pause): the rates alone left out the update outside
 * the moving space and the slide's end, and estimated fhscheme rewrite's
 * slides at half what they took (0.45-1.5 ms against 0.25-0.45 ms
 * flips). */
int mc_policy_choose_slide_for_pause(const mc_slide_model *p, size_t live_bytes,
                                     size_t move_bytes, size_t pinned_pages, uint64_t *est_ns);
/* A concurrently marked cycle's compaction took pause_ns of its pause
 * after the choice: a slide of live_bytes (the walks' bytes, as given to
 * the choice), move_bytes of which moved, or a flip that built
 * pinned_pages pinned pages.  Running averages weighing the newest 1/4;
 * not drifted back on flips, as the rates are: a slide learned too dear
 * costs flips, which hold the pause short anyway, and small heaps still
 * slide and teach it again. */
void mc_policy_learn_pause(mc_slide_model *p, int slid, size_t live_bytes, size_t move_bytes,
                           size_t pinned_pages, uint64_t pause_ns);
/* A flip built `pages` pinned pages in its pause in `ns`. */
void mc_policy_pinned_built(mc_slide_model *p, size_t pages, uint64_t ns);
/* A slide measured: update_ns for live_bytes, slide_ns for move_bytes
 * (either may be 0 and is then not learned from).  Running averages that
 * weigh the newest cycle 1/4. */
void mc_policy_learn(mc_slide_model *p, size_t live_bytes, uint64_t update_ns, size_t move_bytes,
                     uint64_t slide_ns);
/* A flip ran: the rates drift a quarter of the way back to the defaults.
 * Only slides are measured, so one slide slowed by preemption (this VM is
 * shared) would otherwise keep its rates, and every later cycle would
 * flip however little it had to move (fhbench gcbench's conservative
 * variant: 4 MiB live, a slide of ~1.5 ms, flipping for the rest of the
 * run after one 15 ms pause).  A slide that is truly dear is learned again
 * the next time the drift lets one run. */
void mc_policy_flipped(mc_slide_model *p);

#endif
