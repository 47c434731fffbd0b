/* fhbench largeobj: what a live 50 MB array costs each collection (issue
 * 19: "a 50 MB live array costs no copying: collection pauses with and
 * without it differ by < 1 ms").
 *
 * For each collector, a heap holding --live MiB (8) of small live nodes
 * (a rooted table, a dead node after each live one) runs --gcs (10)
 * explicit default collections, each after a fresh --garbage MiB (16) of
 * garbage.  Every setup runs with min_alloc_trigger=256M, so that the
 * trigger, which counts the array as live data, is the same with and
 * without it: otherwise a setup with the larger trigger skips the
 * triggered collections between the explicit ones (mark_sweep then
 * sweeps all the garbage inside the explicit pause) and mark_compact
 * prefaults 32 MiB instead of 16 after each cycle, which both cost the
 * pause more than the array does;
 * the pause of each (fh_stats.pause_ns_total's step; concurrent
 * compaction: its stop-the-world pause) is recorded.  Four setups:
 *   none      no large array
 *   bytes     plus a live 50 MB pointer-free array (the default
 *             los_threshold: the large-object space)
 *   refs      plus a live 50 MB reference array, every slot NULL (the
 *             space too; quiet, so once settled no collector reads its
 *             6.25M slots: heap/large_objects.h)
 *   bytes_nolos  the pointer-free array with los_threshold=0 (before the
 *             space: a bump or malloc-space object, copied or slid)
 * --options "k=v,..." adds heap options to every heap.
 * Reported per collector and setup: the median pause over --runs runs (3)
 * of each run's median pause, the shortest pause of all runs (what the
 * work costs when the machine's other load does not interfere), each with
 * its difference to `none`, and the process RSS after the last
 * collection. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "faultheap.h"

typedef struct lnode {
  struct lnode *next;
  uint64_t value, pad[2];
} lnode;

enum { S_NONE, S_BYTES, S_REFS, S_BYTES_NOLOS, NSETUPS };
static const char *const setup_names[NSETUPS] = {"none", "bytes", "refs", "bytes_nolos"};
static const char *const collectors[] = {"semispace", "mark_sweep", "mark_compact",
                                         "concurrent_compact"};
#define NCOLL (sizeof collectors / sizeof *collectors)

/* One run: the median and shortest pause in ms, the RSS after in MiB; -1
 * on failure. */
static const char *extra_options = "";
static size_t garbage_mib = 16;

static int one_run(const char *collector, int setup, size_t live_mib, int gcs, double *pause_ms,
                   double *min_ms, double *rss_mib) {
  char spec[512];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=1G,min_alloc_trigger=256M%s%s%s", collector,
           setup == S_BYTES_NOLOS ? ",los_threshold=0" : "", *extra_options ? "," : "",
           extra_options);
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, spec) < 0) {
    fprintf(stderr, "largeobj: %s\n", fh_last_error());
    return -1;
  }
  fh_heap *h = fh_heap_create(&o);
  if (!h) {
    fprintf(stderr, "largeobj: %s\n", fh_last_error());
    return -1;
  }
  fh_type nt = {.name = "lnode", .size = sizeof(lnode), .nrefs = 1, .ref_offsets = (uint32_t[]){0}};
  fh_type at = {.name = "array", .size = 0, .flags = FH_TYPE_REF_ARRAY};
  fh_type bt = {.name = "bytes", .size = 0};
  uint32_t node = fh_register_type(h, &nt), arr = fh_register_type(h, &at),
           bytes = fh_register_type(h, &bt);
  fh_thread *t = fh_thread_attach(h);
  int rc = -1;
  if (!node || !arr || !bytes || !t) goto out;
  size_t n = live_mib * 1024 * 1024 / (2 * (sizeof(lnode) + 8));
  void **table = fh_alloc(t, arr, n * sizeof(void *));
  void *big = NULL;
  fh_push_root(t, (void **)&table);
  fh_push_root(t, &big);
  if (!table) goto pop;
  for (size_t i = 0; i < n; i++) {
    lnode *x = fh_alloc(t, node, sizeof(lnode));
    if (!x || !fh_alloc(t, node, sizeof(lnode))) goto pop;
    x->value = i;
    fh_write_ref(t, table, &table[i], x);
  }
  size_t big_bytes = (size_t)50 * 1000 * 1000;
  if (setup == S_BYTES || setup == S_BYTES_NOLOS) {
    big = fh_alloc(t, bytes, big_bytes);
    if (big) memset(big, 0x11, big_bytes);
  } else if (setup == S_REFS) {
    big = fh_alloc(t, arr, big_bytes / 8 * 8);
  }
  if (setup != S_NONE && !big) goto pop;
  double *p = malloc((size_t)gcs * sizeof *p);
  if (!p) goto pop;
  fh_collect(t, FH_COLLECT_DEFAULT); /* settle: the next ones are steady */
  fh_gc_wait(h);
  for (int g = 0; g < gcs; g++) {
    for (size_t k = 0; k < (garbage_mib << 20) / (sizeof(lnode) + 8); k++)
      fh_alloc(t, node, sizeof(lnode));
    fh_stats a, b;
    fh_get_stats(h, &a);
    if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) {
      free(p);
      goto pop;
    }
    fh_gc_wait(h);
    fh_get_stats(h, &b);
    p[g] = (double)(b.pause_ns_total - a.pause_ns_total) / 1e6;
  }
  *pause_ms = bench_median(p, (size_t)gcs);
  *min_ms = bench_percentile(p, (size_t)gcs, 0);
  *rss_mib = (double)bench_rss_bytes() / (1 << 20);
  free(p);
  for (size_t i = 0; i < n; i += n / 16 + 1)
    if (((lnode *)table[i])->value != i) goto pop;
  rc = 0;
pop:
  fh_pop_roots(t, 2);
out:
  if (t) fh_thread_detach(t);
  fh_heap_destroy(h);
  return rc;
}

int wl_largeobj(int argc, char **argv) {
  static const char *const with_value[] = {"--runs", "--gcs", "--live", "--json", "--collector",
                                           "--options", "--garbage", NULL};
  static const char *const bare[] = {NULL};
  if (bench_check_flags(argc, argv, with_value, bare) < 0) return 2;
  int runs = bench_runs_flag(argc, argv, 3);
  if (runs < 0) return 2;
  if (runs > 100) runs = 100;
  const char *g = bench_flag(argc, argv, "--gcs"), *l = bench_flag(argc, argv, "--live");
  const char *only = bench_flag(argc, argv, "--collector"), *json = bench_flag(argc, argv, "--json");
  const char *opts = bench_flag(argc, argv, "--options");
  if (opts) extra_options = opts; /* more heap options, e.g. gc_threads=1 */
  const char *gb = bench_flag(argc, argv, "--garbage");
  if (gb) garbage_mib = (size_t)atol(gb);
  if (garbage_mib < 1 || garbage_mib > 4096) {
    fprintf(stderr, "largeobj: --garbage 1..4096 (MiB)\n");
    return 2;
  }
  int gcs = g ? atoi(g) : 10;
  size_t live = l ? (size_t)atol(l) : 8;
  if (gcs < 1 || gcs > 1000 || live < 1 || live > 4096) {
    fprintf(stderr, "largeobj: --gcs 1..1000, --live 1..4096 (MiB)\n");
    return 2;
  }
  bench_print_header(stdout);
  printf("largeobj: %zu MiB live nodes, a live 50 MB array or not, %d collections after %zu MiB "
         "of garbage each, x %d runs\n", live, gcs, garbage_mib, runs);
  printf("%-20s %-12s %10s %10s %10s %10s %9s\n", "collector", "setup", "pause_ms", "diff_ms",
         "min_ms", "min_diff", "rss_mib");
  FILE *jf = json ? fopen(json, "w") : NULL;
  if (jf) fprintf(jf, "{\"workload\":\"largeobj\",\"results\":[");
  int status = 0, first = 1;
  for (size_t c = 0; c < NCOLL; c++) {
    if (only && strcmp(only, collectors[c])) continue;
    if (!strcmp(collectors[c], "concurrent_compact") &&
        (fh_capabilities() & (FH_CAP_UFFD | FH_CAP_DONTUNMAP)) != (FH_CAP_UFFD | FH_CAP_DONTUNMAP))
      continue;
    /* Runs interleave the setups, so drift over the process's life (its
     * allocator's state, the machine's load) does not favour one. */
    double pm[NSETUPS][100], mm[NSETUPS][100], rm[NSETUPS][100];
    int ok[NSETUPS];
    for (int s = 0; s < NSETUPS; s++) ok[s] = 1;
    for (int r = 0; r < runs; r++)
      for (int s = 0; s < NSETUPS; s++)
        if (ok[s] && one_run(collectors[c], s, live, gcs, &pm[s][r], &mm[s][r], &rm[s][r]) < 0) ok[s] = 0;
    double base = 0, base_min = 0;
    for (int s = 0; s < NSETUPS; s++) {
      if (!ok[s]) {
        printf("%-20s %-12s failed\n", collectors[c], setup_names[s]);
        status = 1;
        continue;
      }
      double pause = bench_median(pm[s], (size_t)runs), rss = bench_median(rm[s], (size_t)runs);
      double least = bench_percentile(mm[s], (size_t)runs, 0);
      if (s == S_NONE) base = pause, base_min = least;
      printf("%-20s %-12s %10.3f %+10.3f %10.3f %+10.3f %9.1f\n", collectors[c], setup_names[s],
             pause, pause - base, least, least - base_min, rss);
      if (jf)
        fprintf(jf, "%s{\"collector\":\"%s\",\"setup\":\"%s\",\"pause_ms\":%.4f,\"diff_ms\":%.4f,"
                    "\"min_ms\":%.4f,\"min_diff_ms\":%.4f,\"rss_mib\":%.1f}", first ? "" : ",",
                collectors[c], setup_names[s], pause, pause - base, least, least - base_min, rss);
      first = 0;
    }
  }
  if (jf) {
    fprintf(jf, "]}\n");
    fclose(jf);
  }
  return status;
}
