/* fhbench: shared declarations of the benchmark runner.
 *
 * Each workload lives in its own file bench/wl_<name>.c and exports
 *     int wl_<name>(int argc, char **argv);
 * argv[0] is the workload name; the workload parses its own flags (every
 * workload accepts --json FILE, and --runs N where repetition makes sense),
 * prints a table on stdout, checks its own results (a wrong answer is exit
 * status 1) and returns the exit status.  bench/fhbench.c holds the dispatch
 * table (one line per workload) and `fhbench default`, the short table that
 * `make bench` prints.  Helpers shared by workloads are in bench_util.c. */
#ifndef FH_BENCH_H_
#define FH_BENCH_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* monotonic clock in nanoseconds */
uint64_t bench_now_ns(void);
/* median of n doubles (sorts a copy) */
double bench_median(const double *v, size_t n);
/* percentile p in [0,100] of n doubles (sorts a copy) */
double bench_percentile(const double *v, size_t n, double p);
/* one line describing the machine: CPUs, kernel, uffd capabilities */
void bench_print_machine(FILE *out);
/* the value following flag `name` in argv, or NULL */
const char *bench_flag(int argc, char **argv, const char *name);
/* resident set size of this process in bytes (from /proc/self/statm) */
size_t bench_rss_bytes(void);

#endif
