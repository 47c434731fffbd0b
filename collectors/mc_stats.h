/* Figures of the last compaction cycles, for the benchmark runner (an
 * internal interface: the bench links the static library).  Times are
 * nanoseconds unless named otherwise. */
#ifndef FH_MC_STATS_H_
#define FH_MC_STATS_H_

#include <stdint.h>

#include "faultheap.h"

typedef struct mc_cycle_figures {
  uint64_t faults;              /* resolver calls since mc_figures_reset */
  double fault_p50_us, fault_p99_us, fault_max_us; /* resolver time */
  uint64_t mremap_ns, register_ns; /* kernel part of the last flip */
  uint64_t mark_ns, forward_ns, update_ns; /* the last pause's other parts */
  uint64_t worker_ns;           /* last cycle: GC worker busy time (wall) */
  uint64_t worker_cpu_ns;       /* ... and the CPU time it got meanwhile */
  uint64_t worker_bytes;        /* ... and the destination bytes it built */
  uint64_t release_cpu_ns;      /* ... CPU time of the from-space releaser */
  uint64_t fault_ns_total;      /* resolver time, summed over all faults
                                   since mc_figures_reset (page building on
                                   the mutators' or handler thread's time) */
  uint64_t build_ns;            /* stop-the-world: page building wall time */
  unsigned build_threads;       /* ... and the threads that built */
  uint64_t build_cpu_ns;        /* ... and their CPU time, summed */
  uint64_t table_bytes;         /* the last cycle's side tables: bitmaps,
                                   offsets, page states, ledger */
  uint64_t live_bytes;          /* moving-space live bytes of the last cycle */
  uint64_t pinned_ranges, pinned_bytes; /* its pinned ranges, pinned objects' bytes */
  uint64_t moving_capacity;
} mc_cycle_figures;

/* Zero the fault histogram (between benchmark runs). */
void mc_figures_reset(fh_heap *h);
void mc_figures_get(fh_heap *h, mc_cycle_figures *out);
/* Bytes of the helper markers' bitmaps resident now, never more than is
 * there (they come and go inside a cycle, so they are not in table_bytes).
 * Any thread may ask, but not across a semi-space collection, which
 * replaces the compactor's state. */
size_t mc_figures_marker_bytes(fh_heap *h);
/* 1 while a concurrent compaction phase runs (a non-blocking fh_gc_wait). */
int mc_figures_phase_open(fh_heap *h);

#endif
