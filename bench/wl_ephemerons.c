/* fhbench ephemerons: what ephemerons cost a collection and a mutator.
 *
 * churn (the shape of Whippet's weak-table benchmarks): a weak table of
 * --entries slots, each an ephemeron key -> value (the key a small object,
 * the value a Box that references its key half of the time, which must not
 * keep the key alive), churned --rounds times over: each step replaces a
 * random slot with a new key, value and ephemeron and looks up another
 * random slot (a cleared entry reads NULL/NULL; a live one's value holds
 * its own key or nothing).  A quarter of the new keys are also stored in a
 * ring of entries/8 strong slots, replacing the oldest, so most keys die at
 * once and the rest a little later.  After a final collection every entry
 * still set must have its key in the ring.  The same program with
 * strong references (a 2-slot object in place of each ephemeron) runs in
 * the same rounds: ratio = median over rounds of eph ms / strong ms.
 *
 * live: --live ephemerons (default 10^6), their keys held by a strong array
 * and their values (small objects) reachable only through them, against the
 * same heap with 2-slot objects; the median of 3 full collections (after
 * one that compacts the freshly built heap).  ns/eph = (eph - strong) /
 * count.  chain: the same count as one live chain in which each value is
 * the next key (the head key a root), marking's worst case: each link
 * resolves only after the previous one.  dead: a chain of --dead (10^5)
 * whose head key is dropped; one collection must clear all of it.
 *
 * Each figure comes from a child process (`--child --mode M`), rounds
 * interleaved with the order rotating, medians over --runs. */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ek_box {
  void *obj;
} ek_box;
typedef struct ek_pair {
  void *key, *value;
} ek_pair;
typedef struct ek_small {
  uint64_t in_ring; /* churn: 1 while the key is in the strong ring */
} ek_small;

typedef struct ek_heap {
  wk_heap w;
  int strong;
} ek_heap;

static const char who[] = "ephemerons";

static void *must(void *p, const char *what) {
  if (!p) {
    fprintf(stderr, "%s: %s: %s\n", who, what, fh_last_error());
    exit(1);
  }
  return p;
}

static int ek_setup(ek_heap *e, const char *collector, size_t heap_max, int strong) {
  e->strong = strong;
  return wk_heap_setup(&e->w, who, "ek", collector, heap_max);
}

/* An entry key -> value: an ephemeron, or a strong 2-slot object. */
static void *entry_new(ek_heap *e, void *key, void *value) {
  if (!e->strong) return must(fh_ephemeron_new(e->w.t, key, value), "fh_ephemeron_new");
  fh_push_root(e->w.t, &key);
  fh_push_root(e->w.t, &value);
  ek_pair *p = must(fh_alloc(e->w.t, e->w.pair, sizeof(ek_pair)), "a pair");
  fh_pop_roots(e->w.t, 2);
  fh_write_ref(e->w.t, p, &p->key, key);
  fh_write_ref(e->w.t, p, &p->value, value);
  return p;
}

static void *entry_key(ek_heap *e, void *x) {
  return e->strong ? ((ek_pair *)x)->key : fh_ephemeron_key(e->w.t, x);
}
static void *entry_value(ek_heap *e, void *x) {
  return e->strong ? ((ek_pair *)x)->value : fh_ephemeron_value(e->w.t, x);
}

static uint64_t rng_next(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

static double ms_since(uint64_t t0) { return (double)(bench_now_ns() - t0) / 1e6; }

/* A full collection, to the end of any concurrent phase; its wall time. */
static double collect_ms(ek_heap *e) {
  uint64_t t0 = bench_now_ns();
  if (fh_collect(e->w.t, FH_COLLECT_DEFAULT) != 0) must(NULL, "fh_collect");
  fh_gc_wait(e->w.h);
  return ms_since(t0);
}

/* ---- churn ----------------------------------------------------------------- */

static int churn(ek_heap *e, size_t n, int rounds, int *failures) {
  fh_thread *t = e->w.t;
  size_t nring = n / 8 ? n / 8 : 1, ring_pos = 0;
  void **table = NULL, **ring = NULL, *key = NULL, *value = NULL;
  fh_push_root(t, (void **)&table);
  fh_push_root(t, (void **)&ring);
  fh_push_root(t, &key);
  fh_push_root(t, &value);
  table = must(fh_alloc(t, e->w.array, n * sizeof(void *)), "the table");
  ring = must(fh_alloc(t, e->w.array, nring * sizeof(void *)), "the ring");
  uint64_t x = 0x9E3779B97F4A7C15ull;
  size_t steps = (size_t)rounds * n, lookups_live = 0;
  uint64_t t0 = bench_now_ns();
  for (size_t s = 0; s < steps; s++) {
    uint64_t r = rng_next(&x);
    key = must(fh_alloc(t, e->w.small, sizeof(ek_small)), "a key");
    value = must(fh_alloc(t, e->w.box, sizeof(ek_box)), "a value");
    if (r & 1) fh_write_ref(t, value, &((ek_box *)value)->obj, key);
    void *entry = entry_new(e, key, value);
    fh_write_ref(t, table, &table[(r >> 1) % n], entry);
    if (((r >> 40) & 3) == 0) {
      ek_small *old = ring[ring_pos];
      if (old) old->in_ring = 0;
      ((ek_small *)key)->in_ring = 1;
      fh_write_ref(t, ring, &ring[ring_pos], key);
      ring_pos = (ring_pos + 1) % nring;
    }
    /* a lookup */
    void *probe = table[rng_next(&x) % n];
    if (probe) {
      void *k = entry_key(e, probe);
      ek_box *v = entry_value(e, probe);
      if (k) {
        lookups_live++;
        if (!v || (v->obj && v->obj != k)) ++*failures;
      } else if (v) {
        ++*failures;
      }
    }
    fh_safepoint(t);
  }
  key = value = NULL;
  collect_ms(e);
  double ms = ms_since(t0);
  size_t set = 0;
  for (size_t i = 0; i < n; i++) {
    void *k = table[i] ? entry_key(e, table[i]) : NULL;
    if (!k) continue;
    set++;
    /* a key that left the ring is reachable only through its entry (and
     * maybe its own value): the collection must have cleared it */
    if (!e->strong && !((ek_small *)k)->in_ring) ++*failures;
  }
  fh_pop_roots(t, 4);
  printf(" ms=%.3f steps=%zu entries_set=%zu lookups_live=%zu", ms, steps, set, lookups_live);
  return 0;
}

/* ---- live ephemerons / chains ------------------------------------------------- */

/* median of 3 full collections after a first one */
static double timed_collections(ek_heap *e, double *pause_ms) {
  double g[3];
  collect_ms(e);
  fh_stats s0, s1;
  fh_get_stats(e->w.h, &s0);
  for (int i = 0; i < 3; i++) g[i] = collect_ms(e);
  fh_get_stats(e->w.h, &s1);
  *pause_ms = (double)(s1.pause_ns_total - s0.pause_ns_total) / 3 / 1e6;
  return bench_median(g, 3);
}

static void live(ek_heap *e, size_t n, int *failures) {
  fh_thread *t = e->w.t;
  void **keys = NULL, **entries = NULL, *key = NULL, *value = NULL;
  fh_push_root(t, (void **)&keys);
  fh_push_root(t, (void **)&entries);
  fh_push_root(t, &key);
  fh_push_root(t, &value);
  keys = must(fh_alloc(t, e->w.array, n * sizeof(void *)), "the key array");
  entries = must(fh_alloc(t, e->w.array, n * sizeof(void *)), "the entry array");
  for (size_t i = 0; i < n; i++) {
    key = must(fh_alloc(t, e->w.small, sizeof(ek_small)), "a key");
    fh_write_ref(t, keys, &keys[i], key);
    value = must(fh_alloc(t, e->w.small, sizeof(ek_small)), "a value");
    ((ek_small *)value)->in_ring = i;
    fh_write_ref(t, entries, &entries[i], entry_new(e, key, value));
  }
  key = value = NULL;
  double pause;
  double gc = timed_collections(e, &pause);
  for (size_t i = 0; i < n; i++) {
    ek_small *v = entry_value(e, entries[i]);
    if (entry_key(e, entries[i]) != keys[i] || !v || v->in_ring != i) ++*failures;
  }
  fh_pop_roots(t, 4);
  printf(" gc_ms=%.3f gc_pause_ms=%.3f count=%zu", gc, pause, n);
}

/* A chain of n entries, each value the next key; entries[] holds them from
 * the head, *head is the first key.  Returns the live links from the head. */
static void build_chain(ek_heap *e, void ***entries, void **head, size_t n) {
  fh_thread *t = e->w.t;
  void *key = NULL, *next = NULL;
  fh_push_root(t, &key);
  fh_push_root(t, &next);
  *entries = must(fh_alloc(t, e->w.array, n * sizeof(void *)), "the chain array");
  *head = key = must(fh_alloc(t, e->w.small, sizeof(ek_small)), "a key");
  for (size_t i = 0; i < n; i++) {
    next = must(fh_alloc(t, e->w.small, sizeof(ek_small)), "a key");
    fh_write_ref(t, *entries, &(*entries)[i], entry_new(e, key, next));
    key = next;
  }
  fh_pop_roots(t, 2);
}

static size_t chain_live(ek_heap *e, void **entries, size_t n, void *key, int *failures) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    void *k = entry_key(e, entries[i]);
    if (!k) continue;
    if (k != key) ++*failures;
    key = entry_value(e, entries[i]);
    len++;
  }
  return len;
}

static void chain(ek_heap *e, size_t n, int *failures) {
  fh_thread *t = e->w.t;
  void **entries = NULL, *head = NULL;
  fh_push_root(t, (void **)&entries);
  fh_push_root(t, &head);
  build_chain(e, &entries, &head, n);
  double pause;
  double gc = timed_collections(e, &pause);
  if (chain_live(e, entries, n, head, failures) != n) ++*failures;
  fh_pop_roots(t, 2);
  printf(" gc_ms=%.3f gc_pause_ms=%.3f count=%zu", gc, pause, n);
}

static void dead_chain(ek_heap *e, size_t n, int *failures) {
  fh_thread *t = e->w.t;
  void **entries = NULL, *head = NULL;
  fh_push_root(t, (void **)&entries);
  fh_push_root(t, &head);
  build_chain(e, &entries, &head, n);
  collect_ms(e);
  size_t before = chain_live(e, entries, n, head, failures);
  if (before != n) ++*failures;
  head = NULL;
  double gc = collect_ms(e);
  size_t left = 0;
  for (size_t i = 0; i < n; i++)
    if (entry_key(e, entries[i]) || entry_value(e, entries[i])) left++;
  if (left) ++*failures;
  fh_pop_roots(t, 2);
  printf(" gc_ms=%.3f count=%zu cleared=%zu left=%zu", gc, n, n - left, left);
}

/* ---- child and runner ---------------------------------------------------------- */

enum { M_CHURN_EPH, M_CHURN_STRONG, M_LIVE_EPH, M_LIVE_STRONG, M_CHAIN_EPH, M_CHAIN_STRONG,
       M_DEAD, NMODES };
static const char *const mode_names[NMODES] = {"churn-eph",  "churn-strong", "live-eph",
                                               "live-strong", "chain-eph",   "chain-strong",
                                               "dead-chain"};

static size_t size_flag(int argc, char **argv, const char *flag, size_t dflt) {
  const char *s = bench_flag(argc, argv, flag);
  if (!s) return dflt;
  double v = atof(s);
  return v >= 1 && v <= 1e9 ? (size_t)v : dflt;
}

static int child(int argc, char **argv) {
  const char *collector = bench_flag(argc, argv, "--collector");
  const char *mode = bench_flag(argc, argv, "--mode");
  int m = -1;
  for (int i = 0; i < NMODES; i++)
    if (mode && strcmp(mode, mode_names[i]) == 0) m = i;
  if (m < 0) {
    fprintf(stderr, "%s: --child needs --mode\n", who);
    return 2;
  }
  size_t entries = size_flag(argc, argv, "--entries", 100000);
  size_t rounds = size_flag(argc, argv, "--rounds", 20);
  size_t nlive = size_flag(argc, argv, "--live", 1000000);
  size_t ndead = size_flag(argc, argv, "--dead", 100000);
  size_t heap_max = size_flag(argc, argv, "--heap-mb", 0) << 20;
  if (!heap_max) heap_max = m <= M_CHURN_STRONG ? (size_t)64 << 20 : (size_t)512 << 20;
  int strong = m == M_CHURN_STRONG || m == M_LIVE_STRONG || m == M_CHAIN_STRONG;
  ek_heap e;
  if (ek_setup(&e, collector, heap_max, strong) != 0) return 1;
  int failures = 0;
  printf("ephemerons mode=%s collector=%s", mode_names[m], collector ? collector : "default");
  switch (m) {
  case M_CHURN_EPH:
  case M_CHURN_STRONG: churn(&e, entries, (int)rounds, &failures); break;
  case M_LIVE_EPH:
  case M_LIVE_STRONG: live(&e, nlive, &failures); break;
  case M_CHAIN_EPH:
  case M_CHAIN_STRONG: chain(&e, nlive, &failures); break;
  default: dead_chain(&e, ndead, &failures); break;
  }
  printf(" failures=%d", failures);
  wk_print_stats(e.w.h);
  printf("\n");
  fh_thread_detach(e.w.t);
  fh_heap_destroy(e.w.h);
  return failures ? 1 : 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: fhbench ephemerons [--entries N] [--rounds R] [--live N] [--dead N]\n"
          "          [--collectors LIST] [--modes LIST] [--runs N] [--json FILE] [-v]\n"
          "A churned weak table against the same table with strong references, and\n"
          "what live and dead ephemerons add to one collection (see wl_ephemerons.c).\n"
          "  --entries N     weak table slots (default 100000)\n"
          "  --rounds R      replacements = R x entries (default 20)\n"
          "  --live N        live ephemerons / chain links (default 1000000)\n"
          "  --dead N        links of the dead chain (default 100000)\n"
          "  --heap-mb MB    heap_max (default 64 for churn, 512 for the others)\n"
          "  --collectors L  default,semispace,mark_sweep,mark_compact,concurrent_compact\n"
          "  --modes L       churn,live,chain,dead (default: all)\n"
          "  --runs N        rounds (default 3); figures are medians\n"
          "  --json FILE     also write the results as JSON\n"
          "  -v              print every run on stderr\n");
}

static const char *const pass_flags[] = {"--entries", "--rounds", "--live", "--dead",
                                         "--heap-mb", NULL};

int wl_ephemerons(int argc, char **argv) {
  static const char *const with_value[] = {"--entries", "--rounds",  "--live",   "--dead",
                                           "--heap-mb", "--collectors", "--collector",
                                           "--mode",    "--modes",   "--runs",   "--json",
                                           NULL};
  static const char *const bare[] = {"--child", "-v", "--help", "-h", NULL};
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    usage(stdout);
    return 0;
  }
  if (bench_has_flag(argc, argv, "--child")) return child(argc, argv);
  int runs = bench_runs_flag(argc, argv, 3);
  unsigned mask;
  if (runs < 0 || runs > WK_MAXRUNS ||
      wk_parse_collectors(who, bench_flag(argc, argv, "--collectors"), &mask) != 0)
    return 2;
  const char *modes = bench_flag(argc, argv, "--modes");
  int want[4] = {1, 1, 1, 1}; /* churn, live, chain, dead */
  if (modes) {
    static const char *const groups[4] = {"churn", "live", "chain", "dead"};
    for (int g = 0; g < 4; g++) want[g] = strstr(modes, groups[g]) != NULL;
  }
  static const int group_of[NMODES] = {0, 0, 1, 1, 2, 2, 3};

  static wk_run run;
  memset(&run, 0, sizeof run);
  run.who = who;
  run.runs = runs;
  run.nkeys = 10;
  const char *keys[] = {"ms", "gc_ms", "gc_pause_ms", "collections", "pause_max_ms",
                        "pause_total_ms", "cleared", "count", "entries_set", "weak_total_ms"};
  for (int k = 0; k < run.nkeys; k++) run.keys[k] = keys[k];
  /* variant index of (collector, mode), -1 if not run */
  int idx[WK_NCOLLECTORS][NMODES];
  for (int c = 0; c < WK_NCOLLECTORS; c++)
    for (int m = 0; m < NMODES; m++) {
      idx[c][m] = -1;
      if (!(mask & (1u << c)) || !want[group_of[m]]) continue;
      char name[48];
      snprintf(name, sizeof name, "%s %s", wk_collector_names[c], mode_names[m]);
      idx[c][m] = run.n;
      wk_variant *v = wk_variant_add(&run, name);
      wk_variant_self(v, "ephemerons");
      wk_variant_arg(v, "--collector");
      wk_variant_arg(v, wk_collector_names[c]);
      wk_variant_arg(v, "--mode");
      wk_variant_arg(v, mode_names[m]);
      for (const char *const *f = pass_flags; *f; f++) {
        const char *val = bench_flag(argc, argv, *f);
        if (val) wk_variant_arg(v, *f), wk_variant_arg(v, val);
      }
    }
  int status = wk_run_all(&run, bench_has_flag(argc, argv, "-v"));

#define V(c, m) (idx[c][m] >= 0 && !run.v[idx[c][m]].failed ? &run.v[idx[c][m]] : NULL)
  bench_print_header(stdout);
  if (want[0]) {
    printf("ephemerons churn: %zu-slot weak table, %zu x replacements; %d rounds (medians)\n",
           size_flag(argc, argv, "--entries", 100000), size_flag(argc, argv, "--rounds", 20),
           runs);
    printf("%-20s %8s %9s %6s %5s %5s %9s %9s %7s %7s %7s %9s %7s\n", "collector", "eph_ms",
           "strong_ms", "ratio", "GCs", "GCs_s", "pause_tot", "ptot_s", "ms/GC", "ms/GC_s",
           "weak/GC", "max_pause", "mut_rat");
    for (int c = 0; c < WK_NCOLLECTORS; c++) {
      if (idx[c][M_CHURN_EPH] < 0) continue;
      const wk_variant *a = V(c, M_CHURN_EPH), *b = V(c, M_CHURN_STRONG);
      if (!a || !b) {
        printf("%-20s FAILED\n", wk_collector_names[c]);
        continue;
      }
      double am = wk_median(&run, a, "ms"), bm = wk_median(&run, b, "ms");
      double ag = wk_median(&run, a, "collections"), bg = wk_median(&run, b, "collections");
      double ap = wk_median(&run, a, "pause_total_ms"), bp = wk_median(&run, b, "pause_total_ms");
      double aw = wk_median(&run, a, "weak_total_ms");
      printf("%-20s %8.1f %9.1f %5.2fx %5.0f %5.0f %9.1f %9.1f %7.2f %7.2f %7.2f %9.2f %6.2fx\n",
             wk_collector_names[c], am, bm, wk_ratio(&run, a, "ms", b, "ms"), ag, bg, ap, bp,
             ap / ag, bp / bg, aw / ag, wk_max(&run, a, "pause_max_ms"), (am - ap) / (bm - bp));
    }
    printf("ratio: median over rounds of eph_ms / strong_ms; _s: the strong table; pause_tot:\n"
           "pauses in ms; weak/GC: ms per collection spent on ephemerons after the strong\n"
           "closure (fh_stats weak_ns_total; inside the pause); max_pause: the worst in any run\n"
           "(eph); mut_rat: (ms - pause_tot) with ephemerons / the same with strong refs\n");
  }
  if (want[1] || want[2]) {
    printf("\nephemerons in one full collection (median of 3 collections, to the end of "
           "any concurrent phase)\n");
    printf("%-20s %11s %11s %8s %9s %11s %11s %8s %9s\n", "collector", "live_eph_ms",
           "live_str_ms", "ns/eph", "eph_pause", "chain_eph", "chain_str", "ns/eph",
           "eph_pause");
    for (int c = 0; c < WK_NCOLLECTORS; c++) {
      if (idx[c][M_LIVE_EPH] < 0 && idx[c][M_CHAIN_EPH] < 0) continue;
      const wk_variant *le = V(c, M_LIVE_EPH), *ls = V(c, M_LIVE_STRONG);
      const wk_variant *ce = V(c, M_CHAIN_EPH), *cs = V(c, M_CHAIN_STRONG);
      double n = le ? wk_median(&run, le, "count") : ce ? wk_median(&run, ce, "count") : NAN;
      double lem = le ? wk_median(&run, le, "gc_ms") : NAN;
      double lsm = ls ? wk_median(&run, ls, "gc_ms") : NAN;
      double cem = ce ? wk_median(&run, ce, "gc_ms") : NAN;
      double csm = cs ? wk_median(&run, cs, "gc_ms") : NAN;
      printf("%-20s %11.1f %11.1f %8.1f %9.1f %11.1f %11.1f %8.1f %9.1f\n",
             wk_collector_names[c], lem, lsm, (lem - lsm) * 1e6 / n,
             le ? wk_median(&run, le, "gc_pause_ms") : NAN, cem, csm, (cem - csm) * 1e6 / n,
             ce ? wk_median(&run, ce, "gc_pause_ms") : NAN);
    }
    printf("ns/eph: (eph - strong) / count; live: %zu ephemerons with live keys, chain: one "
           "live chain of as many (each value the next key)\n",
           size_flag(argc, argv, "--live", 1000000));
  }
  if (want[3]) {
    printf("\ndead chain of %zu ephemerons (each value the next key), head dropped\n",
           size_flag(argc, argv, "--dead", 100000));
    printf("%-20s %9s %12s\n", "collector", "gc_ms", "cleared");
    for (int c = 0; c < WK_NCOLLECTORS; c++) {
      if (idx[c][M_DEAD] < 0) continue;
      const wk_variant *d = V(c, M_DEAD);
      char cl[48];
      if (d)
        snprintf(cl, sizeof cl, "%.0f/%.0f in 1 GC", wk_median(&run, d, "cleared"),
                 wk_median(&run, d, "count"));
      else
        snprintf(cl, sizeof cl, "FAILED");
      printf("%-20s %9.1f %12s\n", wk_collector_names[c], d ? wk_median(&run, d, "gc_ms") : NAN,
             cl);
    }
  }
#undef V

  if (wk_write_json(&run, "ephemerons", argc, argv)) return 1;
  return status;
}
