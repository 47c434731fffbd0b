/* Generational mark-compact (issue 17 point 2; ART's generational CMC):
 * generations are address ranges of the one moving space,
 *
 *   old  [begin, old_end)     survived two collections (or a full one)
 *   mid  [old_end, mid_end)   survived one young collection
 *   young [mid_end, top)      allocated since the last collection
 *
 * A young collection marks [old_end, top) from the roots and from the old
 * objects on dirty cards (the card table that fh_write_ref dirties is the
 * remembered set: old bump objects, the non-moving space, large objects;
 * image and zygote cards come with roots_visit), treats the old
 * generation as the dense prefix (not marked, not moved; references
 * updated in place on dirty cards only), slides mid and young, and leaves
 * the non-moving and large-object spaces alone (old: live by assumption).
 * Afterwards mid becomes old and the young survivors mid, so an object
 * reaches old after surviving two young collections.  A full collection
 * that flips makes every survivor old: nothing is younger, so no card
 * needs keeping; one that slides keeps its youngest survivors mid when
 * they are a good part of what it keeps (mc_gen_full_cards), and then
 * walks the old generation to dirty the cards that must be.
 *
 * Boundaries are object boundaries, not pages: the slide moves objects
 * one by one in address order, so nothing needs a page-aligned boundary,
 * and an exact one never moves an old object back nor promotes a young
 * one early (ART rounds its page-aligned mid boundary up for the first
 * reason).  The tables' floor is the boundary rounded down to a chunk,
 * with the old words below the boundary counted live (forwarding.h).
 *
 * The old generation's objects are found on a card from walk points: per
 * card, the start of an object at or below its first byte (the one
 * covering it once known): exact for what a young cycle promotes when it
 * walks the promoted objects (dirty_promoted), per page from the
 * forwarding's page_first when it finds them on their cards
 * (promoted_on_cards) and after a full cycle, refined as card walks pass;
 * objects between are walked by their headers.  Marking logs the old objects on dirty cards that refer into
 * the collected part; the update forwards those only.
 *
 * Invariant after every collection (verify=1 checks it): every object of
 * the old generation, the non-moving, large-object, image and zygote
 * spaces that refers into [old_end, top) has its card dirty (the card of
 * its payload pointer).  The mutator keeps it with fh_write_ref; a young
 * collection keeps it by dirtying the cards of promoted objects that point
 * into the new mid generation and re-checking the dirty cards it scanned. */
#ifndef FH_MC_GEN_H_
#define FH_MC_GEN_H_

#include <stddef.h>
#include <stdint.h>

#include "collectors/mark_stack.h"
#include "heap/gen_policy.h"
#include "heap/heap.h"

typedef struct mc_state mc_state;

typedef struct mc_gen {
  uintptr_t old_end, mid_end;
  /* Live bytes of the old generation (the last full collection's survivors
   * plus what young ones promoted since), not old_end's address range: a
   * pinned object left high by a full collection makes that range mostly
   * a hole, and the budget and the policy would grow from it. */
  size_t old_live;
  /* Valid while h->collections == at (any other collection, fh_prefork,
   * a rebuilt compactor state make the next one full). */
  uint64_t at;
  int valid;
  int seen; /* a collection ran on this state */
  /* The last cycle was full and left walk points per page only:
   * mc_gen_fill_walk makes them per card, outside the pause. */
  int fill_walk;
  uintptr_t fill_end; /* where it stops: the old end or the first hole */
  /* This young cycle's boundary once mc_young_boundary found it: the
   * update asks before the slide, mc_gen_end after it (the same answer,
   * and with conservative roots a popcount over the last cycle's gaps). */
  uintptr_t yb_old_end, yb_keep_lo;
  int yb_valid;
  int fill_past_fillers; /* and not at fillers: none of them is a hole */
  /* stack_roots=conservative: the holes this cycle's pins left below it
   * (the new old end) are not handed out (mc_holes.c); 0: all are. */
  uintptr_t hole_floor;
  /* Live bytes the last cycle left mid (its survivors above the old end,
   * less the gaps there): what the next young cycle's survival share of
   * mid is measured against (mc_gen_holes.c: young_hole_cost). */
  size_t mid_kept;
  /* The gaps the last cycle left in mid, in address order: holes handed
   * to the allocator since (or fillers).  What the next young cycle finds
   * alive there was allocated since, not kept.  mid_gaps_ok 0: the record
   * could not be made (out of memory), and no survival share is known. */
  struct mc_mid_gap {
    uintptr_t lo, hi;
  } *mid_gaps;
  size_t nmid_gaps, mid_gaps_cap;
  int mid_gaps_ok;
  /* This cycle runs because an allocation failed (set with generations
   * on or off: concurrent_compact's choice to slide reads it too). */
  int alloc_failure;
  uintptr_t *walk; /* per card of the space: an object start at or below it */
  size_t walk_bytes;
  size_t walk_hw; /* bytes of walk that may be resident (a full cycle hands back the rest) */
  /* This young cycle's old bump objects that refer into the collected
   * part, found while marking from the dirty cards: the update forwards
   * their slots only instead of walking the cards again.  refs_ok: the
   * log is complete (no push failed) for this cycle. */
  mark_stack refs;
  int refs_ok;
  /* This young cycle's dirty cards among the objects it promotes (their
   * addresses before the slide: void * for the stack's sake), noted
   * before the update clears them: mc_gen_end looks for references into
   * the new mid generation on them only (promoted_on_cards).  cards_ok:
   * the cycle qualifies and the list is complete. */
  mark_stack cards;
  int cards_ok;
  size_t promotions_on_cards; /* young cycles that took that path (tests) */
  mark_stack stack; /* marking's own stack, kept between cycles (mc_mark) */
  /* The card walks' work since the heap began (tests): headers stepped
   * over, and old objects found on dirty cards.  A walk that restarts far
   * below its card makes the first grow much faster than the second. */
  size_t card_steps, card_objects;
  /* The last full cycle's allocation budget and the heap_max it was
   * computed under (0: none yet): young cycles' is never larger while the
   * cap stays (mc_account). */
  size_t full_budget, full_budget_limit;
  size_t black; /* this cycle's bytes allocated while marking (mc_account) */
  /* this cycle */
  int young;
  uintptr_t promote_below; /* mid_end at the start: below it, becomes old */
  /* A full cycle with the generations known: objects at or above it (the
   * old mid_end: allocated since the last collection) may stay young;
   * keep_mid: this slid full cycle keeps them, as mid (mc_gen_full_cards). */
  uintptr_t keep_from;
  int keep_mid;
  uintptr_t keep_at; /* keep_mid: where the old generation ends (new address) */
  int keep_split;    /* keep_mid at a hole below keep_from's (conservative roots) */
  uint64_t t0;
  size_t collected, promoted;
  /* throughput (bytes freed per ms of pause, running averages), and the
   * policy's inputs */
  double young_tp, full_tp;
  /* A full cycle's pause per live byte (running average): what a full
   * cycle would cost now, for mc_gen_full_tp_now. */
  double full_ns_per_byte;
  /* A slid full cycle kept this much young, as mid (keep_mid): live at
   * that full cycle, and counted in its old_after_full; the next young
   * cycle promotes it without the old generation growing past what the
   * full cycle found live (mc_gen_end). */
  size_t kept_mid_bytes;
  /* h->bytes_allocated when the last full cycle ended: the allocation
   * since, for GEN_WHY_OLD_UNCHECKED (gen_policy.h). */
  uint64_t allocated_at_full;
  uint64_t full_end_ns; /* and when it ended (heap_now_ns) */
  gen_policy_in last;
  char how[96]; /* h->gc_how of this cycle */
} mc_gen;

/* Generations on for this heap's mark-compact (option generational, on
 * the mark_compact and concurrent_compact collectors). */
int mc_gen_enabled(fh_heap *h);
/* At the start of a collection: choose young or full (gen_policy_choose,
 * recorded in h->gen.choice), set the tables' floor.  Returns 1 for young. */
int mc_gen_begin(mc_state *m, gc_cause cause);
/* Marking, world stopped: scan_old(obj, ctx) for every old bump object on
 * a dirty card, which returns whether the object may refer into the
 * collected part (logged for the update), and fn(obj, ctx) for the
 * non-moving and large objects on dirty cards. */
void mc_gen_visit_old(fh_heap *h, int (*scan_old)(void *obj, void *ctx), fh_object_fn fn,
                      void *ctx);
/* A young cycle's mc_update_outside: roots, weak tables, the objects on
 * dirty cards (their cards cleared unless they still point into the new
 * mid generation), the young part's cards forgotten. */
void mc_gen_update_outside(mc_state *m);
/* A full cycle's mc_update_outside, after it: whether the cycle keeps its
 * youngest survivors young (a slide whose young survivors are a good part
 * of what it keeps); if not, nothing young remains, so the non-moving
 * space's cards are cleared. */
void mc_gen_full_cards(mc_state *m);
/* Before a full cycle compacts (forwarding computed): the bytes of young
 * survivors a slide would keep young (mc_gen_full_cards' rule), which a
 * flip would promote instead; 0 without generations. */
size_t mc_gen_keepable_bytes(mc_state *m);
/* After the objects moved (slide) or the forwarding is final (flip), while
 * the tables still hold it: new boundaries, walk points, promoted objects'
 * cards, the policy's figures. */
void mc_gen_end(mc_state *m);
/* After a full cycle, outside its pause, with every page of the space in
 * place (the end-of-cycle task; a flip's worker once its phase ended):
 * walk the old generation by its headers and give every card its walk
 * point, so that the first young cycle's card walks start at most one
 * object back instead of at the page's first object (fhbench young: 4
 * ms of marking in that cycle against 0.5 in the next ones).  Stops at
 * the first gap below a pinned range (a hole mutators may be allocating
 * into), at any filler, and when m->stop_prefault is set (the next
 * collection is joining the task). */
void mc_gen_fill_walk(mc_state *m);
/* verify=1: the invariant above; names the holder and aborts. */
void mc_gen_verify(mc_state *m, const char *when);
void mc_gen_destroy(mc_gen *g);
/* Bytes the last young cycle kept (0 after a full one): how much the next
 * young cycle may expect to mark. */
size_t mc_gen_last_young_live(const mc_gen *g);
/* The full throughput the policy compares young collections' with: what
 * a full collection would free now over its measured cost per live byte
 * times the live data now (the running average of past full collections'
 * own figures until that is known). */
double mc_gen_full_tp_now(const mc_gen *g);

#endif
