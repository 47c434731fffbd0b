/* fhbench phases: heap sizing when live data changes.
 *
 * Live data grows to BIG MiB (while three times as much garbage is
 * allocated around it), stays there while a tenth of it is replaced ten
 * times, then falls to SMALL MiB and stays there while as many bytes are
 * allocated again.  Run with heap_policy=fixed and =adaptive, alternating,
 * on the same collector.  Reported: wall time, total pause time, the
 * process's mean resident memory above what it held before the heap
 * existed (sampled every 16384 allocations, so a mean over allocation),
 * its peak, the live data every collection left (GiB, summed: the
 * tracing work, a measure of GC time that does not depend on the
 * machine's load, though it counts a young collection's old generation,
 * which it does not trace), the collector's CPU time (pauses and its
 * threads: GC time that neither the load's waits nor that count move),
 * and its resident memory once each of the first three
 * collections after the fall has finished, against the live data then
 * (issue 19: adaptive returns to within 2x live within three collections;
 * GC time within 1.1x of fixed for <= 0.85x its mean resident memory). */
#include "bench.h"

#include <faultheap.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NODE = 48, PER_ARRAY = 8192 };

typedef struct phase_sample {
  size_t base;         /* process RSS before the heap existed */
  double rss_sum;      /* process RSS above base, sampled every SAMPLE_EVERY allocations */
  size_t samples, peak;
  uint64_t ends;       /* collections ended so far */
  uint64_t allocs;     /* allocations so far */
  uint64_t fall_at;    /* collections ended when live fell (0: not yet) */
  size_t last_live;    /* live after the last collection */
  double traced;       /* the live bytes every collection left: its tracing work */
  /* process RSS once each of the 1st, 2nd and 3rd collections after the
   * fall has finished (its concurrent phase too), and the live data it
   * left; and just before the 2nd, 3rd and 4th start (the cycles' peaks) */
  size_t trough[3], trough_live[3];
  unsigned ntrough;
  size_t after_fall[3], live_after_fall[3];
  unsigned nafter;
  bench_trace *trace; /* the plot's samples (last round), or NULL */
} phase_sample;

/* One sample per 16384 allocations (~1 MiB of nodes): the mean is over
 * allocation, the program's own clock, the same for both policies. */
#define SAMPLE_EVERY 16384

static size_t rss_above(const phase_sample *ps) {
  size_t r = bench_rss_bytes();
  return r > ps->base ? r - ps->base : 0;
}

static void sample(phase_sample *ps) {
  size_t r = rss_above(ps);
  ps->rss_sum += (double)r;
  ps->samples++;
  if (r > ps->peak) ps->peak = r;
}

static void on_gc(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  phase_sample *ps = user;
  bench_trace_event(ps->trace, e);
  size_t r = rss_above(ps);
  if (r > ps->peak) ps->peak = r;
  if (!e->end && ps->fall_at && e->number > ps->fall_at + 1 && ps->nafter < 3) {
    ps->after_fall[ps->nafter] = r;
    ps->live_after_fall[ps->nafter++] = ps->last_live;
  }
  if (e->end) {
    ps->traced += (double)e->live_after;
    ps->last_live = e->live_after;
    ps->ends = e->number;
  }
}

/* In the mutator, after an allocation: once a collection since the fall
 * has ended, wait for its concurrent phase and read the process RSS. */
static void after_alloc(fh_heap *h, phase_sample *ps, unsigned allocs) {
  for (unsigned a = 0; a < allocs; a++)
    if (++ps->allocs % SAMPLE_EVERY == 0) sample(ps);
  if (!ps->fall_at || ps->ntrough >= 3 || ps->ends <= ps->fall_at + ps->ntrough) return;
  fh_gc_wait(h);
  ps->trough[ps->ntrough] = rss_above(ps);
  ps->trough_live[ps->ntrough++] = ps->last_live;
}

typedef struct phase_result {
  double wall_ms, pause_ms, mean_mib, peak_mib, collections;
  double gc_cpu_ms; /* the collector's CPU time: pauses and its threads' (fh_stats gc_*_ns) */
  double mean_before_mib, mean_after_mib; /* the mean before and after the fall */
  double traced_gib;                      /* sum of live after each collection */
  double after_fall_ratio[3];
  double trough_ratio[3];
} phase_result;

static int run_policy(const char *collector, int adaptive, size_t big_mib, size_t small_mib,
                      phase_result *out, bench_trace *trace) {
  fh_heap *h = wk_heap_create_with("phases", collector, (size_t)1 << 30,
                                   adaptive ? "heap_policy=adaptive" : "heap_policy=fixed");
  if (!h) return -1;
  static const uint32_t refs[] = {0};
  uint32_t node = fh_register_type(h, &(fh_type){.name = "node", .size = NODE, .nrefs = 1,
                                                 .ref_offsets = refs});
  uint32_t arr = fh_register_type(h, &(fh_type){.name = "arr", .flags = FH_TYPE_REF_ARRAY});
  phase_sample ps = {.trace = trace, .base = bench_rss_bytes()};
  bench_trace_restart(trace);
  fh_set_gc_callback(h, on_gc, &ps);
  fh_thread *t = fh_thread_attach(h);
  size_t per = NODE + 8, big = (big_mib << 20) / per, small = (small_mib << 20) / per;
  size_t narrays = (big + PER_ARRAY - 1) / PER_ARRAY;
  void **top = NULL;
  fh_root_add(h, (void **)&top);
  top = fh_alloc(t, arr, narrays * sizeof(void *));
  uint64_t t0 = bench_now_ns();
  fh_stats s0;
  fh_get_stats(h, &s0);
  uint64_t rng = 88172645463325252ull;
  int ok = top != NULL;
  /* Grow: live to `big`, three garbage nodes per live one. */
  for (size_t i = 0; i < big && ok; i++) {
    if (i % PER_ARRAY == 0) {
      void *a = fh_alloc(t, arr, PER_ARRAY * sizeof(void *));
      if (!a) { ok = 0; break; }
      fh_write_ref(t, top, &top[i / PER_ARRAY], a);
    }
    for (int g = 0; g < 3; g++) fh_alloc(t, node, NODE);
    void *n = fh_alloc(t, node, NODE);
    if (!n) { ok = 0; break; }
    void **a = top[i / PER_ARRAY];
    fh_write_ref(t, a, &a[i % PER_ARRAY], n);
    after_alloc(h, &ps, 4);
  }
  /* Steady at `big`: a tenth replaced, ten times. */
  for (size_t k = 0; k < big && ok; k++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t i = rng % big;
    void *n = fh_alloc(t, node, NODE);
    if (!n) { ok = 0; break; }
    void **a = top[i / PER_ARRAY];
    fh_write_ref(t, a, &a[i % PER_ARRAY], n);
    after_alloc(h, &ps, 1);
  }
  /* The fall: keep `small`. */
  for (size_t j = (small + PER_ARRAY - 1) / PER_ARRAY; j < narrays; j++) top[j] = NULL;
  ps.fall_at = ps.ends;
  double sum_before = ps.rss_sum;
  size_t n_before = ps.samples;
  /* Steady at `small`, allocating as much as the big phases did. */
  for (size_t k = 0; k < 4 * big && ok; k++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t i = rng % small;
    void *n = fh_alloc(t, node, NODE);
    if (!n) { ok = 0; break; }
    void **a = top[i / PER_ARRAY];
    fh_write_ref(t, a, &a[i % PER_ARRAY], n);
    after_alloc(h, &ps, 1);
  }
  fh_gc_wait(h);
  fh_stats s1;
  fh_get_stats(h, &s1);
  out->wall_ms = (double)(bench_now_ns() - t0) / 1e6;
  out->pause_ms = (double)(s1.pause_ns_total - s0.pause_ns_total) / 1e6;
  out->gc_cpu_ms =
      (double)(s1.gc_user_ns + s1.gc_sys_ns - s0.gc_user_ns - s0.gc_sys_ns) / 1e6;
  out->collections = (double)(s1.collections - s0.collections);
  out->mean_mib = ps.samples ? ps.rss_sum / (double)ps.samples / (1 << 20) : NAN;
  out->traced_gib = ps.traced / (double)(1 << 30);
  out->mean_before_mib = n_before ? sum_before / (double)n_before / (1 << 20) : NAN;
  out->mean_after_mib = ps.samples > n_before ? (ps.rss_sum - sum_before) /
                                                    (double)(ps.samples - n_before) / (1 << 20)
                                              : NAN;
  out->peak_mib = (double)ps.peak / (1 << 20);
  for (int k = 0; k < 3; k++)
    out->after_fall_ratio[k] = k < (int)ps.nafter && ps.live_after_fall[k]
                                   ? (double)ps.after_fall[k] / (double)ps.live_after_fall[k]
                                   : NAN;
  for (int k = 0; k < 3; k++)
    out->trough_ratio[k] = k < (int)ps.ntrough && ps.trough_live[k]
                               ? (double)ps.trough[k] / (double)ps.trough_live[k]
                               : NAN;
  fh_set_gc_callback(h, NULL, NULL);
  fh_root_remove(h, (void **)&top);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  if (!ok) fprintf(stderr, "phases: allocation failed: %s\n", fh_last_error());
  return ok ? 0 : -1;
}

/* The median over runs of the double at `offset` in each result. */
static double median_of(const phase_result *r, int runs, size_t offset) {
  double v[16];
  for (int k = 0; k < runs; k++) memcpy(&v[k], (const char *)&r[k] + offset, sizeof(double));
  return bench_median(v, (size_t)runs);
}

int wl_phases(int argc, char **argv) {
  static const char *const with_value[] = {"--collector", "--big", "--small", "--runs", NULL};
  static const char *const bare[] = {"--help", "-h", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h") ||
      bench_check_flags(argc, argv, with_value, bare) != 0) {
    printf("usage: fhbench phases [--collector X] [--big MIB] [--small MIB] [--runs R]\n"
           "Live data grows to MIB (default 256) among 3x as much garbage, is churned,\n"
           "falls to --small (16), and is churned again, with heap_policy=fixed and\n"
           "=adaptive alternating, R rounds (3).  Prints wall and pause time, mean and\n"
           "peak process resident memory (above the process before the heap), and\n"
           "resident/live after the fall.\n");
    return 0;
  }
  const char *collector = bench_flag(argc, argv, "--collector");
  const char *b = bench_flag(argc, argv, "--big"), *sm = bench_flag(argc, argv, "--small");
  size_t big = b ? (size_t)atol(b) : 256, small = sm ? (size_t)atol(sm) : 16;
  int runs = bench_runs_flag(argc, argv, 3);
  if (runs < 1 || runs > 16 || small < 1 || big <= small) return 2;
  phase_result r[2][16];
  bench_trace *trace[2] = {bench_trace_new(), bench_trace_new()}; /* the last round's */
  for (int k = 0; k < runs; k++)
    for (int j = 0; j < 2; j++) {
      int m = (k + j) % 2;
      bench_progress("phases: round %d/%d, %s", k + 1, runs, m ? "adaptive" : "fixed");
      if (run_policy(collector, m, big, small, &r[m][k], k == runs - 1 ? trace[m] : NULL) < 0)
        return 1;
    }
  bench_progress_done();
  bench_print_header(stdout);
  printf("phases: live grows to %zu MiB, falls to %zu MiB (%s), %d rounds; medians\n", big, small,
         collector ? collector : "default collector", runs);
  printf("%-9s %9s %9s %9s %6s %7s %10s %10s %10s %10s   %s\n", "policy", "wall ms", "pause ms",
         "GC CPU ms", "GCs", "traced",
         "mean RSS", "(before", "after)", "peak RSS", "RSS/live after the 1st, 2nd, 3rd collection since the fall: "
                     "once it has finished; at the next one's start");
  for (int m = 0; m < 2; m++)
    printf("%-9s %9.0f %9.1f %9.0f %6.0f %7.2f %10.1f %10.1f %10.1f %10.1f   %.2f, %.2f, %.2f; %.2f, %.2f, "
           "%.2f\n",
           m ? "adaptive" : "fixed",
           median_of(r[m], runs, offsetof(phase_result, wall_ms)),
           median_of(r[m], runs, offsetof(phase_result, pause_ms)),
           median_of(r[m], runs, offsetof(phase_result, gc_cpu_ms)),
           median_of(r[m], runs, offsetof(phase_result, collections)),
           median_of(r[m], runs, offsetof(phase_result, traced_gib)),
           median_of(r[m], runs, offsetof(phase_result, mean_mib)),
           median_of(r[m], runs, offsetof(phase_result, mean_before_mib)),
           median_of(r[m], runs, offsetof(phase_result, mean_after_mib)),
           median_of(r[m], runs, offsetof(phase_result, peak_mib)),
           median_of(r[m], runs, offsetof(phase_result, trough_ratio[0])),
           median_of(r[m], runs, offsetof(phase_result, trough_ratio[1])),
           median_of(r[m], runs, offsetof(phase_result, trough_ratio[2])),
           median_of(r[m], runs, offsetof(phase_result, after_fall_ratio[0])),
           median_of(r[m], runs, offsetof(phase_result, after_fall_ratio[1])),
           median_of(r[m], runs, offsetof(phase_result, after_fall_ratio[2])));
  char dir[PATH_MAX], csv[2][PATH_MAX + 64];
  if (bench_plot_dir(dir, sizeof dir) == 0) {
    const char *paths[2], *labels[2] = {"fixed", "adaptive"};
    for (int m = 0; m < 2; m++) {
      snprintf(csv[m], sizeof csv[m], "%s/phases-%s.csv", dir, labels[m]);
      bench_trace_write(trace[m], csv[m]);
      paths[m] = csv[m];
    }
    char title[96];
    snprintf(title, sizeof title, "live %zu MiB, then %zu MiB (%s)", big, small,
             collector ? collector : "default collector");
    (void)bench_plot("phases", title, paths, labels, 2);
  }
  for (int m = 0; m < 2; m++) bench_trace_free(trace[m]);
  return 0;
}
