/* The generational collector's young-or-full policy (heap/gen_policy.h). */
#include "heap/gen_policy.h"

size_t gen_policy_old_threshold(size_t old_after_full, size_t heap_max) {
  size_t floor = heap_max / 16 < GEN_PROMOTE_MIN ? heap_max / 16 : GEN_PROMOTE_MIN;
  size_t grown = old_after_full / 100 * GEN_FULL_GROWTH_PCT;
  return grown > floor ? grown : floor;
}

/* GEN_WHY_OLD_UNCHECKED's test (gen_policy.h).  Old generations under
 * GEN_PROMOTE_MIN are not worth a check: their growth brings a full
 * collection soon enough. */
static int old_unchecked(const gen_policy_in *in) {
  size_t old = in->old_after_full + in->promoted_since_full;
  if (!in->check_old || !in->last_young || old < GEN_PROMOTE_MIN || in->full_ns_per_byte <= 0 ||
      old / GEN_UNCHECKED_OLD_PER_WINDOW < in->young_window)
    return 0;
  double scale = (double)((uint64_t)1 << in->unchecked_shift);
  return (double)in->allocated_since_full >= (double)old * scale &&
         (double)in->ns_since_full >=
             GEN_UNCHECKED_TIME_PER_COST * in->full_ns_per_byte * (double)old;
}

unsigned gen_policy_next_shift(unsigned shift, int checked, size_t old_before, size_t live) {
  if (live <= old_before / 2) return 0; /* half of it or more was garbage */
  if (checked && live >= old_before / 4 * 3 && shift < GEN_UNCHECKED_SHIFT_MAX) return shift + 1;
  return shift;
}

gen_choice gen_policy_choose(const gen_policy_in *in) {
  gen_choice c = {0, GEN_WHY_EXPLICIT};
  if (in->no_generations) return (gen_choice){0, GEN_WHY_NO_GENERATIONS};
  if (in->requested_young) return (gen_choice){1, GEN_WHY_REQUESTED_YOUNG};
  if (in->explicit_full) return c;
  if (in->alloc_failure) return (gen_choice){0, GEN_WHY_ALLOC_FAILURE};
  if (in->promote_failed) return (gen_choice){0, GEN_WHY_PROMOTE_FULL};
  if (in->promoted_since_full >= gen_policy_old_threshold(in->old_after_full, in->heap_max))
    return (gen_choice){0, GEN_WHY_OLD_GREW};
  /* freed / collected < pct, without a division (collected may be 0).
   * Not when the last full collection freed little too: the program is
   * building something that all stays live, and a full collection would
   * mark it all again to free no more (binary-trees at depth 21: five full
   * collections of its 256 MiB stretch tree, 130-150 ms each, freed
   * nothing).  The old generation's growth still brings one.  The same
   * holds for the throughput rule below, whose estimate counts what was
   * promoted since as freeable. */
  if (in->young_collected && !in->full_freed_little &&
      (uint64_t)in->young_freed * 100 < (uint64_t)in->young_collected * GEN_MIN_FREED_PCT)
    return (gen_choice){0, GEN_WHY_FREED_LITTLE};
  /* ART (heap.cc): the next collection stays young while young ones free
   * at least half as much per unit of time as full ones.  A full one does
   * at least the young one's work (it marks everything the young one
   * marks) and frees at most what was promoted since the last full one
   * more, so its throughput can reach twice the young one's only when
   * that is at least what the young one freed: below, a higher full
   * figure is an estimate off by the noise of two measured pauses (the
   * young one that moved Whippet's quads tree while it was built took
   * 17-35 ms, and the full one after it freed nothing). */
  if (old_unchecked(in)) return (gen_choice){0, GEN_WHY_OLD_UNCHECKED};
  if (in->last_young && !in->full_freed_little && in->young_tp > 0 && in->full_tp > 0 &&
      in->young_tp * GEN_YOUNG_TP_ADJUST < in->full_tp &&
      in->promoted_since_full >= in->young_freed)
    return (gen_choice){0, GEN_WHY_THROUGHPUT};
  return (gen_choice){1, GEN_WHY_YOUNG};
}

const char *gen_why_name(gen_why w) {
  switch (w) {
  case GEN_WHY_REQUESTED_YOUNG: return "young requested";
  case GEN_WHY_YOUNG: return "young";
  case GEN_WHY_EXPLICIT: return "full: explicit";
  case GEN_WHY_ALLOC_FAILURE: return "full: allocation failing";
  case GEN_WHY_PROMOTE_FULL: return "full: promote space refused an object";
  case GEN_WHY_OLD_GREW: return "full: old generation grew";
  case GEN_WHY_FREED_LITTLE: return "full: young collection freed little";
  case GEN_WHY_THROUGHPUT: return "full: young throughput below half of full";
  case GEN_WHY_OLD_UNCHECKED: return "full: old generation unchecked";
  case GEN_WHY_NO_GENERATIONS: return "full: no generations yet";
  }
  return "?";
}
