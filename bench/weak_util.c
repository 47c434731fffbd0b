/* Helpers shared by the weak-reference workloads (wl_ephemerons.c,
 * wl_finalizers.c, wl_whippet.c): heap creation per collector, the stats
 * line a child prints, and a round-robin runner of child processes whose
 * one-line "k=v" results it collects per round. */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const wk_collector_names[WK_NCOLLECTORS] = {
    "default", "semispace", "mark_sweep", "mark_compact", "concurrent_compact"};

int wk_parse_collectors(const char *who, const char *list, unsigned *mask) {
  *mask = 0;
  if (list == NULL) {
    *mask = (1u << WK_NCOLLECTORS) - 1;
    return 0;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (int i = 0; i < WK_NCOLLECTORS; i++)
      if (strcmp(tok, wk_collector_names[i]) == 0) *mask |= 1u << i, found = 1;
    if (!found) {
      fprintf(stderr, "%s: unknown collector '%s' (default, semispace, mark_sweep, "
                      "mark_compact, concurrent_compact)\n", who, tok);
      return -1;
    }
  }
  return 0;
}

fh_heap *wk_heap_create(const char *who, const char *collector, size_t heap_max) {
  return wk_heap_create_with(who, collector, heap_max, NULL);
}

fh_heap *wk_heap_create_with(const char *who, const char *collector, size_t heap_max,
                             const char *extra) {
  fh_options o;
  fh_options_init(&o);
  const char *env = getenv("FH_OPTIONS");
  if (env && *env && fh_options_parse(&o, env) != 0) {
    fprintf(stderr, "%s: FH_OPTIONS: %s\n", who, fh_last_error());
    return NULL;
  }
  char spec[96];
  if (collector && strcmp(collector, "default") != 0) {
    snprintf(spec, sizeof spec, "collector=%s", collector);
    if (fh_options_parse(&o, spec) != 0) {
      fprintf(stderr, "%s: %s: %s\n", who, spec, fh_last_error());
      return NULL;
    }
  }
  if (heap_max) o.heap_max = heap_max < ((size_t)1 << 20) ? (size_t)1 << 20 : heap_max;
  if (extra && fh_options_parse(&o, extra) != 0) {
    fprintf(stderr, "%s: %s: %s\n", who, extra, fh_last_error());
    return NULL;
  }
  fh_heap *h = fh_heap_create(&o);
  if (h == NULL) fprintf(stderr, "%s: fh_heap_create: %s\n", who, fh_last_error());
  return h;
}

size_t wk_heap_resident(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  size_t r = 0;
  for (unsigned i = 0; i < s.nspaces; i++) r += s.spaces[i].resident;
  return r;
}

void wk_print_stats(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  printf(" collections=%llu pause_max_ms=%.3f pause_total_ms=%.3f weak_total_ms=%.3f "
         "weak_max_ms=%.3f eph_traced=%llu eph_cleared=%llu finalized=%llu",
         (unsigned long long)s.collections, (double)s.pause_ns_max / 1e6,
         (double)s.pause_ns_total / 1e6, (double)s.weak_ns_total / 1e6,
         (double)s.weak_ns_max / 1e6, (unsigned long long)s.ephemerons_traced,
         (unsigned long long)s.ephemerons_cleared, (unsigned long long)s.objects_finalized);
}

/* ---- the runner ------------------------------------------------------------ */

wk_variant *wk_variant_add(wk_run *run, const char *name) {
  if (run->n == WK_MAXVARIANTS) return NULL;
  wk_variant *v = &run->v[run->n++];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "%s", name);
  return v;
}

void wk_variant_arg(wk_variant *v, const char *arg) {
  if (v->argc + 1 >= WK_MAXARGS) return;
  snprintf(v->store[v->argc], sizeof v->store[v->argc], "%s", arg);
  v->argv[v->argc] = v->store[v->argc];
  v->argv[++v->argc] = NULL;
}

void wk_variant_self(wk_variant *v, const char *workload) {
  const char *self = bench_self_exe();
  wk_variant_arg(v, self ? self : "fhbench");
  wk_variant_arg(v, workload);
  wk_variant_arg(v, "--child");
}

double wk_value(const wk_run *run, const wk_variant *v, int r, const char *key) {
  for (int k = 0; k < run->nkeys; k++)
    if (strcmp(run->keys[k], key) == 0) return v->vals[r][k];
  return NAN;
}

int wk_run_all(wk_run *run, int verbose) {
  int status = 0;
  for (int r = 0; r < run->runs; r++) {
    for (int j = 0; j < run->n; j++) {
      /* rotate the order each round: a slow patch of the VM then hits a
       * different variant every round */
      wk_variant *v = &run->v[(j + r) % run->n];
      for (int k = 0; k < WK_MAXKEYS; k++) v->vals[r][k] = NAN;
      if (v->failed || v->skipped) continue;
      bench_progress("%s: round %d/%d, %s", run->who, r + 1, run->runs, v->name);
      bench_child c;
      bench_run_child(v->argv, &c);
      int ok = c.exit_status == 0;
      if (v->parse) {
        ok = v->parse(c.out, run, v->vals[r]) == 0 && ok;
      } else {
        for (int k = 0; k < run->nkeys; k++) {
          double x = bench_kv(c.out, run->keys[k]);
          v->vals[r][k] = x < 0 ? NAN : x;
        }
        ok = ok && bench_kv(c.out, "failures") == 0;
      }
      /* A key the runner fills itself: the child's peak RSS (wait4). */
      for (int k = 0; k < run->nkeys; k++)
        if (strcmp(run->keys[k], "peak_rss_mib") == 0)
          v->vals[r][k] = (double)c.max_rss_kib / 1024.0;
      if (!ok) {
        v->failed = c.exit_status ? c.exit_status : 1;
        snprintf(v->why, sizeof v->why, "%.*s", (int)strcspn(c.out, "\n"), c.out);
        bench_progress_done();
        fprintf(stderr, "%s: %s failed (exit status %d)%s%s", run->who, v->name,
                c.exit_status, c.out[0] ? "; it printed:\n" : "\n", c.out);
        if (!v->may_fail) status = 1;
        continue;
      }
      if (verbose) {
        bench_progress_done();
        fprintf(stderr, "round %d %-28s %s", r + 1, v->name, c.out);
      }
    }
  }
  bench_progress_done();
  return status;
}

double wk_median(const wk_run *run, const wk_variant *v, const char *key) {
  double tmp[WK_MAXRUNS];
  size_t n = 0;
  for (int r = 0; r < run->runs; r++) {
    double x = wk_value(run, v, r, key);
    if (!isnan(x)) tmp[n++] = x;
  }
  return n ? bench_median(tmp, n) : NAN;
}

double wk_max(const wk_run *run, const wk_variant *v, const char *key) {
  double m = NAN;
  for (int r = 0; r < run->runs; r++) {
    double x = wk_value(run, v, r, key);
    if (!isnan(x) && (isnan(m) || x > m)) m = x;
  }
  return m;
}

double wk_ratio(const wk_run *run, const wk_variant *a, const char *akey, const wk_variant *b,
                const char *bkey) {
  double tmp[WK_MAXRUNS];
  size_t n = 0;
  for (int r = 0; r < run->runs; r++) {
    double x = wk_value(run, a, r, akey), y = wk_value(run, b, r, bkey);
    if (!isnan(x) && !isnan(y) && y > 0) tmp[n++] = x / y;
  }
  return n ? bench_median(tmp, n) : NAN;
}

int wk_write_json(const wk_run *run, const char *workload, int argc, char **argv) {
  const char *json = bench_flag(argc, argv, "--json");
  if (!json) return 0;
  FILE *f = fopen(json, "w");
  if (!f) {
    perror(json);
    return 1;
  }
  fprintf(f, "{\"workload\": \"%s\", \"machine\": ", workload);
  bench_json_machine(f);
  fprintf(f, ", \"runs\": %d, \"variants\": [", run->runs);
  for (int i = 0; i < run->n; i++) {
    const wk_variant *v = &run->v[i];
    fprintf(f, "%s{\"name\": ", i ? ", " : "");
    bench_json_string(f, v->name);
    fprintf(f, ", \"ok\": %s", v->failed ? "false" : "true");
    for (int k = 0; k < run->nkeys; k++) {
      double x = wk_median(run, v, run->keys[k]);
      if (!isnan(x)) fprintf(f, ", \"%s\": %.3f", run->keys[k], x);
    }
    fprintf(f, "}");
  }
  fprintf(f, "]}\n");
  fclose(f);
  return 0;
}

int wk_heap_setup(wk_heap *w, const char *who, const char *prefix, const char *collector,
                  size_t heap_max) {
  static const uint32_t box_refs[] = {0};
  static const uint32_t pair_refs[] = {0, sizeof(void *)};
  char names[4][64];
  snprintf(names[0], sizeof names[0], "%s.small", prefix);
  snprintf(names[1], sizeof names[1], "%s.box", prefix);
  snprintf(names[2], sizeof names[2], "%s.pair", prefix);
  snprintf(names[3], sizeof names[3], "%s.array", prefix);
  const fh_type small = {.name = names[0], .size = sizeof(uint64_t)};
  const fh_type box = {.name = names[1], .size = sizeof(void *), .nrefs = 1,
                       .ref_offsets = box_refs};
  const fh_type pair = {.name = names[2], .size = 2 * sizeof(void *), .nrefs = 2,
                        .ref_offsets = pair_refs};
  const fh_type array = {.name = names[3], .size = 0, .flags = FH_TYPE_REF_ARRAY};
  memset(w, 0, sizeof *w);
  w->h = wk_heap_create(who, collector, heap_max);
  if (!w->h) return -1;
  w->small = fh_register_type(w->h, &small);
  w->box = fh_register_type(w->h, &box);
  w->pair = fh_register_type(w->h, &pair);
  w->array = fh_register_type(w->h, &array);
  w->t = fh_thread_attach(w->h);
  if (!w->small || !w->box || !w->pair || !w->array || !w->t) {
    fprintf(stderr, "%s: setup: %s\n", who, fh_last_error());
    return -1;
  }
  return 0;
}

/* ---- side by side with Whippet's binaries (wl_whippet.c, wl_whippet_gc.c) ---- */

int wk_add_faultheap_variants(wk_run *run, const char *workload, unsigned mask,
                              const char *const *args, int nargs) {
  int n = 0;
  for (int i = 0; i < WK_NCOLLECTORS; i++) {
    if (!(mask & (1u << i))) continue;
    char vname[48];
    snprintf(vname, sizeof vname, "faultheap %s", wk_collector_names[i]);
    wk_variant *v = wk_variant_add(run, vname);
    if (!v) break;
    wk_variant_self(v, workload);
    wk_variant_arg(v, "--collector");
    wk_variant_arg(v, wk_collector_names[i]);
    for (int k = 0; k < nargs; k++) wk_variant_arg(v, args[k]);
    n++;
  }
  return n;
}

void wk_add_whippet_variants(wk_run *run, const char *dir, const char *list, const char *prog,
                             const char *const *args, int nargs,
                             int (*parse)(const char *, const wk_run *, double *)) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char vname[48], path[256];
    snprintf(vname, sizeof vname, "whippet %s", tok);
    snprintf(path, sizeof path, "%s/%s.%s", dir, prog, tok);
    wk_variant *v = wk_variant_add(run, vname);
    if (!v) break;
    wk_variant_arg(v, path);
    for (int k = 0; k < nargs; k++) wk_variant_arg(v, args[k]);
    v->parse = parse;
    v->may_fail = 1; /* e.g. semi at 2x: "ran out of space" */
    FILE *f = fopen(path, "r");
    if (!f) v->skipped = 1;
    else fclose(f);
  }
}

const wk_variant *wk_whippet_best(wk_run *run, int first) {
  const wk_variant *best = NULL;
  double best_ms = INFINITY;
  for (int i = first; i < run->n; i++) {
    wk_variant *v = &run->v[i];
    if (v->failed == 128 + 4) /* GC_CRASH() is __builtin_trap() */
      snprintf(v->why, sizeof v->why, "SIGILL: Whippet stops so when its heap is too small");
    else if (v->failed == 128 + 11)
      snprintf(v->why, sizeof v->why, "SIGSEGV: the program used a NULL allocation");
    double m = wk_median(run, v, "ms");
    int conservative = strstr(v->name, "bdw") || strstr(v->name, "conservative");
    if (!v->failed && !v->skipped && !conservative && m < best_ms) best = v, best_ms = m;
  }
  return best;
}

void wk_range(const wk_run *run, const wk_variant *v, const char *key, char *buf, size_t n) {
  double lo = NAN, hi = NAN;
  for (int r = 0; r < run->runs; r++) {
    double x = wk_value(run, v, r, key);
    if (isnan(x)) continue;
    if (isnan(lo) || x < lo) lo = x;
    if (isnan(hi) || x > hi) hi = x;
  }
  snprintf(buf, n, "%.0f-%.0f", lo, hi);
}
