/* fhbench pins: what pinning costs the compacting collectors.
 *
 * A live set of LIVE 32-byte nodes (rooted in arrays), rebuilt piecewise
 * over ROUNDS collections: each round replaces a third of the nodes with
 * new ones, so every collection has garbage interleaved with live objects
 * and compacts.  With --pct P, P% of the live nodes (evenly spread) are
 * pinned with fh_pin for the whole run (and replaced pins move to new
 * nodes, as I/O buffers come and go).  Pinned and unpinned runs alternate
 * on the same work, each in a fresh child process (`fhbench pins --child
 * --collector C --pct P`): run in one process, the pinned and unpinned
 * runs' resident memory depended on their order, as the allocator's
 * freed-page caches of an earlier run were counted against the next one
 * (jemalloc's resident bytes 3.4 MiB in the first run, 4.5 MiB in every
 * later one).  Reported per collector: the mean collection pause, the
 * heap's resident bytes after the last collection and at its peak
 * (sampled as each collection starts), and their ratios (issue 18's
 * target: <= 1.10 for time, <= 1.05 for memory at 1%). */
#include "bench.h"

#include <faultheap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIVE = 300000, CHUNK = 30000, ROUNDS = 30 };

typedef struct pin_result {
  double pause_ms, resident_mib, peak_mib;
  double cpu_ms;  /* GC CPU time per collection: pause thread and GC workers */
  double rss_mib; /* the process's resident memory after the last collection,
                     less what it held before the heap was created */
  double hwm_mib; /* the most it held meanwhile (VmHWM, reset at the start) */
  int ok;
} pin_result;

/* The process's peak resident memory since the last reset_hwm (VmHWM):
 * it sees what sampling at collections cannot, a flip's from-space and
 * to-space both resident during its concurrent phase.  0 if unknown. */
static size_t hwm_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb << 10;
}

/* Make VmHWM the current resident size (Linux >= 4.0). */
static void reset_hwm(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return;
  fputs("5", f);
  fclose(f);
}

/* The most the heap held: sampled when each collection starts. */
static void on_gc(fh_heap *h, const fh_gc_event *e, void *user) {
  if (e->end) return;
  size_t r = wk_heap_resident(h), *peak = user;
  if (r > *peak) *peak = r;
}

static int run_once(const char *collector, unsigned pct, pin_result *out) {
  uint8_t *pinned = calloc(LIVE, 1);
  if (!pinned) return -1;
  /* The benchmark's own bookkeeping, resident in both kinds of run (the
   * pinned run's writes faulted its 300 KB in, counted as pins' cost).
   * Written through a volatile pointer: a memset of zeroes there was
   * dropped by the compiler (calloc'd memory is zero), so the unpinned
   * run never touched these pages. */
  for (size_t i = 0; i < LIVE; i += 1024) ((volatile uint8_t *)pinned)[i] = 0;
  reset_hwm();
  size_t rss0 = bench_rss_bytes();
  fh_heap *h = wk_heap_create("pins", collector, (size_t)256 << 20);
  if (!h) {
    free(pinned);
    return -1;
  }
  static const uint32_t refs[] = {0};
  uint32_t node = fh_register_type(h, &(fh_type){.name = "node", .size = 24, .nrefs = 1,
                                                 .ref_offsets = refs});
  uint32_t arr = fh_register_type(h, &(fh_type){.name = "arr", .flags = FH_TYPE_REF_ARRAY});
  size_t peak = 0;
  fh_set_gc_callback(h, on_gc, &peak);
  fh_thread *t = fh_thread_attach(h);
  enum { NCHUNKS = LIVE / CHUNK };
  void **chunks[NCHUNKS] = {0};
  for (int c = 0; c < NCHUNKS; c++) fh_root_add(h, (void **)&chunks[c]);
  unsigned every = pct ? 100 / pct : 0;
  int ok = 1;
  for (int c = 0; c < NCHUNKS; c++) chunks[c] = fh_alloc(t, arr, CHUNK * sizeof(void *));
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  for (int r = 0; r <= ROUNDS; r++) {
    /* Round 0 fills everything; later rounds replace every third node. */
    for (int i = r % 3; i < LIVE; i += r ? 3 : 1) {
      void **a = chunks[i / CHUNK];
      size_t k = (size_t)i % CHUNK;
      if (pinned[i]) {
        fh_unpin(t, a[k]);
        pinned[i] = 0;
      }
      /* Garbage between live nodes, allocated first: n is not a root, so
       * no allocation (a collection may come with any) may separate it
       * from its store. */
      fh_alloc(t, node, 24);
      uint64_t *n = fh_alloc(t, node, 24);
      if (!n) { ok = 0; break; }
      n[1] = (uint64_t)i;
      a = chunks[i / CHUNK];  /* may have moved (it is rooted) */
      fh_write_ref(t, a, &a[k], n);
      if (every && i % every == 0) {
        if (fh_pin(t, n) != 0) { ok = 0; break; }
        pinned[i] = 1;
      }
    }
    if (r == 0) fh_get_stats(h, &s0);
    fh_collect(t, FH_COLLECT_DEFAULT);
    fh_gc_wait(h);
  }
  fh_get_stats(h, &s1);
  size_t rss1 = bench_rss_bytes(), hwm = hwm_bytes();
  for (int i = 0; i < LIVE && ok; i++) {
    uint64_t *n = chunks[i / CHUNK][i % CHUNK];
    ok &= n && n[1] == (uint64_t)i;
  }
  out->pause_ms = (double)(s1.pause_ns_total - s0.pause_ns_total) / 1e6 /
                  (double)(s1.collections - s0.collections);
  out->cpu_ms = (double)(s1.gc_user_ns + s1.gc_sys_ns - s0.gc_user_ns - s0.gc_sys_ns) / 1e6 /
                (double)(s1.collections - s0.collections);
  out->rss_mib = (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (1 << 20);
  out->hwm_mib = (double)(hwm > rss0 ? hwm - rss0 : 0) / (1 << 20);
  out->resident_mib = (double)wk_heap_resident(h) / (1 << 20);
  out->peak_mib = (double)peak / (1 << 20);
  fh_set_gc_callback(h, NULL, NULL);
  out->ok = ok;
  for (int i = 0; i < LIVE; i++)
    if (pinned[i]) fh_unpin(t, chunks[i / CHUNK][i % CHUNK]);
  free(pinned);
  for (int c = 0; c < NCHUNKS; c++) fh_root_remove(h, (void **)&chunks[c]);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return ok ? 0 : -1;
}

/* `fhbench pins --child --collector C --pct P`: one run, as k=v on stdout. */
static int pins_child(const char *collector, unsigned pct) {
  pin_result r;
  if (run_once(collector, pct, &r) < 0) return 1;
  printf("pause_ms=%.4f resident_mib=%.4f peak_mib=%.4f cpu_ms=%.4f rss_mib=%.4f hwm_mib=%.4f\n",
         r.pause_ms, r.resident_mib, r.peak_mib, r.cpu_ms, r.rss_mib, r.hwm_mib);
  return 0;
}

/* One run of collector with pct% pinned (0: none) in a child process. */
static int run_child(const char *collector, unsigned pct, pin_result *out) {
  char pct_s[16];
  snprintf(pct_s, sizeof pct_s, "%u", pct);
  char *argv[] = {(char *)bench_self_exe(), "pins", "--child", "--collector", (char *)collector,
                  "--pct", pct_s, NULL};
  bench_child c;
  if (bench_run_child(argv, &c) != 0 || c.exit_status != 0) return -1;
  double *field[] = {&out->pause_ms, &out->resident_mib, &out->peak_mib,
                     &out->cpu_ms,   &out->rss_mib,      &out->hwm_mib};
  static const char *const key[] = {"pause_ms", "resident_mib", "peak_mib",
                                    "cpu_ms",   "rss_mib",      "hwm_mib"};
  for (size_t k = 0; k < sizeof key / sizeof *key; k++)
    if ((*field[k] = bench_kv(c.out, key[k])) < 0) return -1;
  out->ok = 1;
  return 0;
}

int wl_pins(int argc, char **argv) {
  static const char *const with_value[] = {"--collector", "--pct", "--runs", NULL};
  static const char *const bare[] = {"--help", "-h", "--child", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h") ||
      bench_check_flags(argc, argv, with_value, bare) != 0) {
    printf("usage: fhbench pins [--collector X] [--pct P] [--runs R]\n"
           "300k live nodes rebuilt a third at a time over 30 collections, with P%%\n"
           "(default 1) of them pinned vs none, alternating, R rounds (default 3);\n"
           "per collector (default: mark_compact, concurrent_compact, semispace):\n"
           "mean pause and the heap's resident memory after the last collection.\n");
    return 0;
  }
  const char *one = bench_flag(argc, argv, "--collector"), *p = bench_flag(argc, argv, "--pct");
  unsigned pct = p ? (unsigned)atoi(p) : 1;
  int runs = bench_runs_flag(argc, argv, 3);
  if (bench_has_flag(argc, argv, "--child")) return one && pct <= 50 ? pins_child(one, pct) : 2;
  if (pct < 1 || pct > 50 || runs < 1) return 2;
  static const char *const all[] = {"mark_compact", "concurrent_compact", "semispace"};
  const char *const *list = one ? &one : all;
  size_t nlist = one ? 1 : sizeof all / sizeof *all;
  bench_print_header(stdout);
  printf("pins: %d live nodes, a third replaced per collection, %d collections, %u%% pinned, "
         "%d rounds\n", LIVE, ROUNDS, pct, runs);
  printf("%-20s %14s %14s %6s %11s %11s %6s %11s %11s %6s\n", "collector", "pause unpinned",
         "pause pinned", "ratio", "after, none", "after, 1%", "ratio", "peak, none", "peak, 1%",
         "ratio");
  int status = 0;
  char second[4][200]; /* the second table's rows, printed after the first */
  for (size_t c = 0; c < nlist; c++) {
    double pause[2][16], res[2][16], pk[2][16], cpu[2][16], rss[2][16], hw[2][16];
    int n = runs > 16 ? 16 : runs;
    for (int r = 0; r < n; r++)
      for (int k = 0; k < 2; k++) {
        int m = (r + k) % 2;
        bench_progress("pins: %s round %d/%d, %s", list[c], r + 1, n, m ? "pinned" : "unpinned");
        pin_result res1;
        if (run_child(list[c], m ? pct : 0, &res1) < 0) {
          bench_progress_done();
          fprintf(stderr, "pins: %s %s run failed\n", list[c], m ? "pinned" : "unpinned");
          return 1;
        }
        pause[m][r] = res1.pause_ms;
        res[m][r] = res1.resident_mib;
        pk[m][r] = res1.peak_mib;
        cpu[m][r] = res1.cpu_ms;
        rss[m][r] = res1.rss_mib;
        hw[m][r] = res1.hwm_mib;
      }
    bench_progress_done();
    double pu = bench_median(pause[0], (size_t)n), pp = bench_median(pause[1], (size_t)n);
    double ru = bench_median(res[0], (size_t)n), rp = bench_median(res[1], (size_t)n);
    double ku = bench_median(pk[0], (size_t)n), kp = bench_median(pk[1], (size_t)n);
    printf("%-20s %11.2f ms %11.2f ms %6.2f %7.1f MiB %7.1f MiB %6.2f %7.1f MiB %7.1f MiB %6.2f\n",
           list[c], pu, pp, pp / pu, ru, rp, rp / ru, ku, kp, kp / ku);
    double cu = bench_median(cpu[0], (size_t)n), cp = bench_median(cpu[1], (size_t)n);
    double su = bench_median(rss[0], (size_t)n), sp = bench_median(rss[1], (size_t)n);
    double hu = bench_median(hw[0], (size_t)n), hp = bench_median(hw[1], (size_t)n);
    snprintf(second[c < 4 ? c : 3], sizeof second[0],
             "%-20s %11.2f ms %11.2f ms %6.2f %7.1f MiB %7.1f MiB %6.2f %7.1f MiB %7.1f MiB %6.2f",
             list[c], cu, cp, cp / cu, su, sp, sp / su, hu, hp, hp / hu);
  }
  /* Collection time as CPU (the pausing thread and every GC worker: a
   * concurrent compaction's pause is a part of its cycle, and with pins it
   * builds in the pause what it otherwise builds after it), and resident
   * memory as the process holds it (the heap's whole reservation and its
   * side tables: pages above the top kept for the next allocations count,
   * as the gaps pins leave below it do), after the last collection and at
   * its peak over the run. */
  printf("%-20s %14s %14s %6s %11s %11s %6s %11s %11s %6s\n", "collector", "cpu unpinned",
         "cpu pinned", "ratio", "rss, none", "rss, 1%", "ratio", "hwm, none", "hwm, 1%", "ratio");
  for (size_t c = 0; c < nlist && c < 4; c++) printf("%s\n", second[c]);
  return status;
}
