/* Generational mark-compact (collectors/mc_gen.h) around pinned objects:
 * a slide leaves a gap below each pinned range, and where the old
 * generation ends decides whether those gaps stay young (handed to the
 * allocator as young holes), or become old (stranded until a full cycle,
 * or handed out old from birth).  Internal to mc_gen.c. */
#ifndef FH_MC_GEN_HOLES_H_
#define FH_MC_GEN_HOLES_H_

#include <stddef.h>
#include <stdint.h>

#include "collectors/forwarding.h"
#include "collectors/mc_gen.h"

/* With conservative stack roots no hole handed to the allocator lies in
 * the old generation (see the definition). */
int mc_holes_stay_young(const fh_heap *h);

/* Bytes of the gaps below pinned ranges inside [lo, hi) (new addresses). */
size_t mc_gap_bytes(const fwd_tables *t, uintptr_t lo, uintptr_t hi);

typedef struct young_bound {
  uintptr_t old_end; /* new address: everything below becomes old */
  uintptr_t keep_lo; /* old address: survivors at or above it become mid */
} young_bound;

/* A young cycle's boundary, from the forwarding. */
young_bound mc_young_boundary(mc_state *m);

/* Conservative roots: where a full slide ends the old generation so that
 * the holes it hands out below end are young; 0 without such a hole. */
uintptr_t mc_hole_boundary(const mc_state *m, uintptr_t end);

/* Records the gaps in [new_old, new_top) for the next young cycle's
 * survival share (mc_gen.mid_gaps). */
void mc_record_mid_gaps(mc_gen *g, const fwd_tables *t, uintptr_t new_old);

#endif
