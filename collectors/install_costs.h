/* Which install the concurrent GC worker uses for its runs: UFFDIO_COPY or
 * UFFDIO_MOVE from staged from-space pages (concurrent_compact.c).
 *
 * MOVE saves the kernel's page allocation, zeroing and copy, but flushes
 * the TLB of every CPU running this mm for each page (kernels before 6.19
 * do not batch that flush): with mutators busy on the other CPUs that
 * shootdown costs more than it saves (fhbench pause), with an idle or
 * single mutator it wins (GCBench).  So the worker measures both as it goes
 * (CPU time per page of build + install) and uses the cheaper.  Each
 * method's cost is the median of its last three timed runs: single runs swing by
 * 20x here (an interrupt storm, a preempted vCPU), and with a running
 * average one such run sent the worker to the costlier method for
 * thousands of pages.  The other method is re-tried after an interval that
 * doubles each time it loses again (32 runs up to 1024): a losing MOVE run
 * costs 16 shootdowns, and re-trying it every 32 runs cost ~15% of the
 * worker's time.  One worker thread owns an install_costs: no locking. */
#ifndef FH_INSTALL_COSTS_H_
#define FH_INSTALL_COSTS_H_

#include <stdint.h>

typedef struct install_costs {
  uint64_t last[2][3]; /* [0] COPY, [1] MOVE: ns per page of recent runs */
  unsigned samples[2], runs, interval, next_retry;
  int retrying; /* the current run tries the costlier one */
} install_costs;

void install_costs_init(install_costs *c);
/* 1: MOVE the next run, 0: COPY it. */
int install_choose_move(install_costs *c);
/* Whether to time the run install_choose_move just chose (`move`): the
 * thread CPU-time clock is a system call (~0.5 us here), and with the
 * mutators building a third of the pages the worker's runs average under
 * three pages, so timing every run cost ~10% of the worker's time.  Timed:
 * every retry, every run of a method with fewer than three samples, and
 * one run in INSTALL_SAMPLE_EVERY otherwise.  Only timed runs are recorded. */
#define INSTALL_SAMPLE_EVERY 8u
int install_wants_timing(const install_costs *c, int move);
/* After a timed run: `chosen` is what install_choose_move said, `move`
 * what ran (a MOVE run goes through COPY when it cannot stage). */
void install_record(install_costs *c, int chosen, int move, uint64_t ns_per_page);
/* The current estimate for COPY (0) or MOVE (1), ns per page. */
uint64_t install_cost_of(const install_costs *c, int move);

#endif
