/* fhbench gcbench: GCBench on faultheap against the same workload on glibc
 * malloc, jemalloc, mimalloc and Boehm GC.
 *
 * Every variant runs as a child process (faultheap as `fhbench gcbench
 * --child`, the others as build/bench/gcbench-<variant>, built by
 * bench/baselines.mk), interleaved round by round with the order rotating,
 * because this VM's speed drifts by tens of percent over seconds: the ratio
 * against Boehm is the median of per-round ratios, not a ratio of medians.
 * Each child times its own body and checks its own trees; this side reads
 * its result line and its peak RSS. */
#include "bench.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* fh-conservative: faultheap with stack_roots=conservative and no root
 * slots, the pointers in C locals as Boehm's variant holds them. */
enum { V_FAULTHEAP, V_FH_CONSERVATIVE, V_BOEHM, V_GLIBC, V_JEMALLOC, V_MIMALLOC, NVARIANTS };
static const char *const variant_names[NVARIANTS] = {"faultheap", "fh-conservative", "boehm",
                                                     "glibc", "jemalloc", "mimalloc"};

/* The program: GCBench, or binary-trees of depth bt_depth (> 0). */
static int bt_depth;
static char bt_depth_arg[16];
static const char *program_name(void) { return bt_depth > 0 ? "binarytrees" : "gcbench"; }

typedef struct variant {
  const char *name;
  int wanted, built;
  char path[PATH_MAX];
  char *argv[8];
  int failed;         /* exit status of the run that failed; 0: none did */
  char collector[32]; /* faultheap: the collector the child reported */
  /* per round; NAN where the variant did not run */
  double *ms, *rss_kib, *collections, *pause_max_ms, *gc_ms;
  /* faultheap: young and full collections, their longest pauses */
  double *young, *young_max_ms, *full, *full_max_ms;
} variant;

static void usage(FILE *out) {
  fprintf(out,
          "usage: fhbench gcbench [--collector C] [--runs N] [--variants LIST]\n"
          "                       [--json FILE] [-v]\n"
          "       fhbench binarytrees [--depth N] [the same flags]\n"
          "GCBench (Ellis/Kovac/Boehm): a stretch tree of depth 18, a long-lived\n"
          "tree of depth 16 and 500k doubles kept live, then trees of depth 4..16\n"
          "built top-down and bottom-up; every tree is counted.  binary-trees (the\n"
          "Benchmarks Game program): a stretch tree of depth N + 1, a long-lived one\n"
          "of depth N (default 21), 2^(N - d + 4) trees of each depth d = 4, 6, .., N\n"
          "built bottom-up and counted.  faultheap and the\n"
          "baselines (glibc, jemalloc, mimalloc: explicit free; Boehm: GC_MALLOC)\n"
          "run as child processes, interleaved round by round.\n"
          "  --collector C   semispace, gen_semispace, mark_sweep, mark_compact or\n"
          "                  concurrent_compact\n"
          "                  (default: the heap's default; FH_OPTIONS is honoured)\n"
          "  --runs N        rounds, each running every variant once (default 5)\n"
          "  --variants L    comma-separated subset of faultheap,fh-conservative,boehm,\n"
          "                  glibc,jemalloc,mimalloc (default: all); fh-conservative\n"
          "                  is faultheap with stack_roots=conservative and no root\n"
          "                  slots (pointers in C locals, as for Boehm)\n"
          "  --json FILE     also write the results as JSON\n"
          "  -v              print every run on stderr\n");
}

static int parse_variants(const char *list, variant *v) {
  for (int i = 0; i < NVARIANTS; i++) v[i].wanted = list == NULL;
  if (list == NULL) return 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (int i = 0; i < NVARIANTS; i++)
      if (strcmp(tok, variant_names[i]) == 0) v[i].wanted = found = 1;
    if (!found) {
      fprintf(stderr, "gcbench: unknown variant '%s' in --variants\n", tok);
      return -1;
    }
  }
  return 0;
}

static void setup_variant(variant *v, int i, const char *collector, int runs) {
  static char child_flag[] = "--child", collector_flag[] = "--collector",
              conservative_flag[] = "--conservative", depth_flag[] = "--depth",
              bt_word[] = "binarytrees";
  v->name = variant_names[i];
  if (i == V_FAULTHEAP || i == V_FH_CONSERVATIVE) {
    const char *self = bench_self_exe();
    v->built = self != NULL;
    snprintf(v->path, sizeof v->path, "%s", self ? self : "?");
    char **a = v->argv;
    *a++ = v->path;
    *a++ = (char *)program_name();
    *a++ = child_flag;
    if (i == V_FH_CONSERVATIVE) *a++ = conservative_flag;
    if (bt_depth > 0) {
      *a++ = depth_flag;
      *a++ = bt_depth_arg;
    }
    if (collector) {
      *a++ = collector_flag;
      *a++ = (char *)collector;
    }
    *a = NULL;
  } else {
    char prog[64];
    snprintf(prog, sizeof prog, "gcbench-%s", v->name);
    v->built = bench_program_path(prog, v->path, sizeof v->path);
    v->argv[0] = v->path;
    v->argv[1] = NULL;
    if (bt_depth > 0) {
      v->argv[1] = bt_word;
      v->argv[2] = bt_depth_arg;
      v->argv[3] = NULL;
    }
  }
  double **arrays[] = {&v->ms,    &v->rss_kib,      &v->collections, &v->pause_max_ms,
                       &v->gc_ms, &v->young, &v->young_max_ms, &v->full, &v->full_max_ms};
  for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) {
    *arrays[k] = malloc((size_t)runs * sizeof(double));
    if (*arrays[k] == NULL) {
      perror("gcbench");
      exit(1);
    }
    for (int r = 0; r < runs; r++) (*arrays[k])[r] = NAN;
  }
}

static void free_variant(variant *v) {
  free(v->ms);
  free(v->rss_kib);
  free(v->collections);
  free(v->pause_max_ms);
  free(v->gc_ms);
  free(v->young);
  free(v->young_max_ms);
  free(v->full);
  free(v->full_max_ms);
}

static int active(const variant *v) { return v->wanted && v->built && !v->failed; }

/* the word after "key=" in line, into buf */
static void kv_word(const char *line, const char *key, char *buf, size_t n) {
  char pat[64];
  snprintf(pat, sizeof pat, " %s=", key);
  const char *p = strstr(line, pat);
  buf[0] = '\0';
  if (p) snprintf(buf, n, "%.*s", (int)strcspn(p + strlen(pat), " \n"), p + strlen(pat));
}

/* One run of one variant in round r; marks the variant failed if the child
 * failed, crashed, or did not report a full, correct run. */
static void run_once(variant *v, int r, long want_trees, int verbose) {
  bench_child c;
  bench_run_child(v->argv, &c);
  double ms = bench_kv(c.out, "ms"), trees = bench_kv(c.out, "trees");
  if (c.exit_status != 0 || ms < 0 || trees != (double)want_trees ||
      bench_kv(c.out, "failures") != 0) {
    v->failed = c.exit_status != 0 ? c.exit_status : 1;
    bench_progress_done();
    fprintf(stderr, "%s: %s failed (exit status %d)%s%s", program_name(), v->name, c.exit_status,
            c.out[0] ? "; it printed: " : "\n", c.out);
    return;
  }
  v->ms[r] = ms;
  v->rss_kib[r] = (double)c.max_rss_kib;
  v->collections[r] = bench_kv(c.out, "collections");
  v->pause_max_ms[r] = bench_kv(c.out, "pause_max_ms");
  v->gc_ms[r] = bench_kv(c.out, "gc_ms");
  v->young[r] = bench_kv(c.out, "young");
  v->young_max_ms[r] = bench_kv(c.out, "young_pause_max_ms");
  v->full[r] = bench_kv(c.out, "full");
  v->full_max_ms[r] = bench_kv(c.out, "full_pause_max_ms");
  if (v->collector[0] == '\0') kv_word(c.out, "collector", v->collector, sizeof v->collector);
  if (verbose) {
    bench_progress_done();
    fprintf(stderr, "round %d %-9s %8.1f ms  %6.1f MiB  %s", r + 1, v->name, ms,
            (double)c.max_rss_kib / 1024, c.out);
  }
}

/* the non-NAN values of a, packed into out; returns their number */
static size_t valid(const double *a, int n, double *out) {
  size_t k = 0;
  for (int i = 0; i < n; i++)
    if (!isnan(a[i]) && a[i] >= 0) out[k++] = a[i];
  return k;
}

typedef struct summary {
  int ok;
  double median_ms, min_ms, max_ms, ratio_vs_boehm, max_rss_kib;
  double collections, pause_max_ms, gc_ms;
  double young, young_max_ms, full, full_max_ms;
} summary;

static void summarize(const variant *v, const variant *boehm, int runs, summary *s) {
  double *tmp = malloc((size_t)runs * sizeof *tmp);
  size_t n = valid(v->ms, runs, tmp);
  s->ok = n > 0 && !v->failed;
  s->median_ms = bench_median(tmp, n);
  s->min_ms = bench_percentile(tmp, n, 0);
  s->max_ms = bench_percentile(tmp, n, 100);
  /* per-round ratios, then their median */
  size_t k = 0;
  for (int r = 0; r < runs; r++)
    if (!isnan(v->ms[r]) && boehm->wanted && !isnan(boehm->ms[r]) && boehm->ms[r] > 0)
      tmp[k++] = v->ms[r] / boehm->ms[r];
  s->ratio_vs_boehm = bench_median(tmp, k);
  /* peak RSS is the median over runs of each child's peak */
  s->max_rss_kib = bench_median(tmp, valid(v->rss_kib, runs, tmp));
  s->collections = bench_median(tmp, valid(v->collections, runs, tmp));
  /* the worst pause of any run, not a typical one */
  s->pause_max_ms = bench_percentile(tmp, valid(v->pause_max_ms, runs, tmp), 100);
  s->gc_ms = bench_median(tmp, valid(v->gc_ms, runs, tmp));
  s->young = bench_median(tmp, valid(v->young, runs, tmp));
  s->young_max_ms = bench_percentile(tmp, valid(v->young_max_ms, runs, tmp), 100);
  s->full = bench_median(tmp, valid(v->full, runs, tmp));
  s->full_max_ms = bench_percentile(tmp, valid(v->full_max_ms, runs, tmp), 100);
  free(tmp);
}

static void print_row(const variant *v, const summary *s) {
  char name[48];
  if (v->collector[0])
    snprintf(name, sizeof name, "%s (%s)", v->name, v->collector);
  else
    snprintf(name, sizeof name, "%s", v->name);
  if (!v->built) {
    printf("%-32s (not built)\n", name);
    return;
  }
  if (v->failed) {
    printf("%-32s FAILED (exit status %d)\n", name, v->failed);
    return;
  }
  char range[32], ratio[16], gc[40];
  snprintf(range, sizeof range, "%.0f-%.0f", s->min_ms, s->max_ms);
  if (isnan(s->ratio_vs_boehm))
    snprintf(ratio, sizeof ratio, "-");
  else
    snprintf(ratio, sizeof ratio, "%.2f", s->ratio_vs_boehm);
  if (!isnan(s->pause_max_ms))
    snprintf(gc, sizeof gc, "%.0f / %.2f ms max", s->collections, s->pause_max_ms);
  else if (!isnan(s->gc_ms))
    snprintf(gc, sizeof gc, "%.0f / %.0f ms total", s->collections, s->gc_ms);
  else
    snprintf(gc, sizeof gc, "-");
  printf("%-32s %9.1f %11s %8s %10.1f  %s\n", name, s->median_ms, range, ratio,
         s->max_rss_kib / 1024, gc);
  /* A generational collector: young and full collections apart. */
  if (!isnan(s->young) && s->young > 0)
    printf("%-32s %9s %11s %8s %10s  young %.0f / %.2f ms max, full %.0f / %.2f ms max\n", "",
           "", "", "", "", s->young, s->young_max_ms, s->full, s->full_max_ms);
}

/* ", "key": x" (null for NAN); the first member passes sep "" */
static void json_number(FILE *f, const char *sep, const char *key, double x) {
  if (isnan(x))
    fprintf(f, "%s\"%s\": null", sep, key);
  else
    fprintf(f, "%s\"%s\": %.3f", sep, key, x);
}

static int write_json(const char *path, const variant *v, const summary *s, int runs) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  fprintf(f, "{\"machine\": ");
  bench_json_machine(f);
  fprintf(f, ",\n \"%s\": {\"runs\": %d", program_name(), runs);
  if (bt_depth > 0) fprintf(f, ", \"depth\": %d", bt_depth);
  for (int i = 0; i < NVARIANTS; i++) {
    if (!v[i].wanted) continue;
    fprintf(f, ",\n  \"%s\": ", v[i].name);
    if (!v[i].built) {
      fprintf(f, "null");
      continue;
    }
    if (v[i].failed) {
      fprintf(f, "{\"failed\": true, \"exit_status\": %d}", v[i].failed);
      continue;
    }
    fprintf(f, "{");
    if (v[i].collector[0]) {
      fprintf(f, "\"collector\": ");
      bench_json_string(f, v[i].collector);
      fprintf(f, ", ");
    }
    json_number(f, "", "median_ms", s[i].median_ms);
    json_number(f, ", ", "min_ms", s[i].min_ms);
    json_number(f, ", ", "max_ms", s[i].max_ms);
    json_number(f, ", ", "ratio_vs_boehm", s[i].ratio_vs_boehm);
    fprintf(f, ", \"max_rss_kib\": %.0f", s[i].max_rss_kib);
    /* GC figures only for the collectors: faultheap and Boehm */
    if (!isnan(s[i].collections)) fprintf(f, ", \"collections\": %.0f", s[i].collections);
    if (!isnan(s[i].pause_max_ms)) json_number(f, ", ", "pause_max_ms", s[i].pause_max_ms);
    if (!isnan(s[i].gc_ms)) json_number(f, ", ", "gc_ms_total", s[i].gc_ms);
    if (!isnan(s[i].young) && s[i].young > 0) {
      fprintf(f, ", \"young_collections\": %.0f, \"full_collections\": %.0f", s[i].young, s[i].full);
      json_number(f, ", ", "young_pause_max_ms", s[i].young_max_ms);
      json_number(f, ", ", "full_pause_max_ms", s[i].full_max_ms);
    }
    fprintf(f, ", \"runs_ms\": [");
    const char *sep = "";
    for (int r = 0; r < runs; r++) {
      if (isnan(v[i].ms[r])) continue;
      fprintf(f, "%s%.3f", sep, v[i].ms[r]);
      sep = ", ";
    }
    fprintf(f, "]}");
  }
  fprintf(f, "}}\n");
  return fclose(f) == 0 ? 0 : -1;
}

static int run_program(int argc, char **argv);

int wl_gcbench(int argc, char **argv) {
  bt_depth = 0;
  return run_program(argc, argv);
}

int wl_binarytrees(int argc, char **argv) {
  const char *d = bench_flag(argc, argv, "--depth");
  bt_depth = d ? atoi(d) : 21;
  if (bt_depth < 6 || bt_depth > 30) {
    fprintf(stderr, "binarytrees: --depth %s: want 6..30\n", d ? d : "?");
    return 2;
  }
  snprintf(bt_depth_arg, sizeof bt_depth_arg, "%d", bt_depth);
  return run_program(argc, argv);
}

static int run_program(int argc, char **argv) {
  static const char *const with_value[] = {"--collector", "--runs", "--json",
                                           "--variants", "--depth", NULL};
  static const char *const bare[] = {"--child", "--conservative", "-v", "--help", "-h", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    usage(stdout);
    return 0;
  }
  if (bt_depth == 0 && bench_flag(argc, argv, "--depth")) {
    fprintf(stderr, "gcbench: --depth is binarytrees' flag\n");
    return 2;
  }
  if (bench_check_flags(argc, argv, with_value, bare) != 0) {
    usage(stderr);
    return 2;
  }
  const char *collector = bench_flag(argc, argv, "--collector");
  if (bench_has_flag(argc, argv, "--child"))
    return gcbench_faultheap_child(collector, bench_has_flag(argc, argv, "--conservative"),
                                   bt_depth);

  int runs = bench_runs_flag(argc, argv, 5);
  int verbose = bench_has_flag(argc, argv, "-v");
  const char *json = bench_flag(argc, argv, "--json");
  variant v[NVARIANTS];
  memset(v, 0, sizeof v);
  if (runs < 0 || parse_variants(bench_flag(argc, argv, "--variants"), v) != 0) return 2;
  /* a bad --collector is a usage error, not a failed run */
  if ((v[V_FAULTHEAP].wanted || v[V_FH_CONSERVATIVE].wanted) &&
      gcbench_check_options(collector) != 0)
    return 2;
  for (int i = 0; i < NVARIANTS; i++) setup_variant(&v[i], i, collector, runs);
  long want_trees = bt_depth > 0 ? binarytrees_expected_trees(bt_depth) : gcbench_expected_trees();

  /* The last round's faultheap runs leave per-collection traces to plot. */
  char dir[PATH_MAX], trace[2][PATH_MAX + 64];
  int plot = bench_plot_dir(dir, sizeof dir) == 0;
  for (int i = 0; i < 2; i++)
    snprintf(trace[i], sizeof trace[i], "%s/%s-%s.csv", plot ? dir : ".", program_name(),
             variant_names[i == 0 ? V_FAULTHEAP : V_FH_CONSERVATIVE]);
  /* round r starts at variant r: each gets every position in the order */
  for (int r = 0; r < runs; r++)
    for (int k = 0; k < NVARIANTS; k++) {
      int vi = (r + k) % NVARIANTS;
      variant *x = &v[vi];
      if (!active(x)) continue;
      bench_progress("%s: round %d/%d, %s", program_name(), r + 1, runs, x->name);
      int traced = plot && r == runs - 1 && (vi == V_FAULTHEAP || vi == V_FH_CONSERVATIVE);
      if (traced) setenv("FH_BENCH_TRACE", trace[vi == V_FAULTHEAP ? 0 : 1], 1);
      run_once(x, r, want_trees, verbose);
      if (traced) unsetenv("FH_BENCH_TRACE");
    }
  bench_progress_done();

  summary s[NVARIANTS];
  for (int i = 0; i < NVARIANTS; i++) summarize(&v[i], &v[V_BOEHM], runs, &s[i]);

  bench_print_header(stdout);
  if (bt_depth > 0)
    printf("binarytrees: depth %d (stretch %d), trees of depth 4..%d built bottom-up and "
           "counted; %d interleaved run%s\n", bt_depth, bt_depth + 1, bt_depth, runs,
           runs == 1 ? "" : "s");
  else
    printf("gcbench: stretch depth 18, long-lived depth 16, 500k doubles, depths 4..16;"
           " %d interleaved run%s\n", runs, runs == 1 ? "" : "s");
  printf("%-32s %9s %11s %8s %10s  %s\n", "variant", "median ms", "min-max", "vs Boehm",
         "maxRSS MiB", "GC count / pause");
  int status = 0;
  for (int i = 0; i < NVARIANTS; i++) {
    if (!v[i].wanted) continue;
    print_row(&v[i], &s[i]);
    if (v[i].failed) status = 1;
  }
  printf("(vs Boehm: median of per-round ratios; RSS: median of each run's peak;"
         " pause: worst of all runs)\n");
  if (json && write_json(json, v, s, runs) != 0) status = status ? status : 1;
  if (plot) {
    const char *csv[2], *labels[2];
    int n = 0;
    for (int i = 0; i < 2; i++) {
      int vi = i == 0 ? V_FAULTHEAP : V_FH_CONSERVATIVE;
      if (!active(&v[vi])) continue;
      csv[n] = trace[i];
      labels[n++] = v[vi].name;
    }
    char title[96];
    snprintf(title, sizeof title, "%s on faultheap (%s)", bt_depth > 0 ? "binary-trees" : "GCBench",
             v[V_FAULTHEAP].collector[0] ? v[V_FAULTHEAP].collector : "default collector");
    if (n) (void)bench_plot(program_name(), title, csv, labels, n);
  }
  for (int i = 0; i < NVARIANTS; i++) free_variant(&v[i]);
  return status;
}
