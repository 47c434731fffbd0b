/* fhbench whippet-mt-gcbench, fhbench whippet-quads: the shapes of
 * Whippet's own benchmarks/mt-gcbench.c and benchmarks/quads.c
 * (github.com/wingo/whippet), written for faultheap's API from the
 * programs' behaviour, and run side by side with Whippet's binaries when
 * --whippet names a Whippet build (nothing of Whippet is compiled in).
 * Issues 17 and 19 set their targets on these two: time and peak RSS at
 * equal total memory, heap = multiplier x live.
 *
 * mt-gcbench (one mutator): GCBench with garbage in between.  A long-lived
 * tree of depth 16 and a long-lived array of 500,000 doubles (4 MB) stay
 * live throughout; for depth 4, 6, ... 16 it builds 2 * size(18) / size(d)
 * trees top-down (populate) and as many bottom-up (make_tree), each
 * dropped at once.  Before each node it allocates a "hole" of 0-36 words
 * from a fixed 256-entry power-law table (the same distribution: the table
 * below is generated from its counts, not copied).  Node is a header, two
 * references and two ints: 32 bytes on both sides; a hole is a header, a
 * length and its words.  Live data peaks at size(16) x 32 x 2 + 4 MB, and
 * both sides size the heap as multiplier x that.  Whippet's opt build
 * compiles its per-tree validation out (NDEBUG); the port checks the
 * long-lived tree and array once, after the clock stops.
 *
 * quads: a complete quad tree of --depth (default 9: 349,525 quads of 40
 * bytes, a header and four references) stays live; then 20 times,
 * heap/7.5 bytes of depth-3 garbage trees, each round followed by a walk
 * that checks the live tree.  heap = multiplier x the tree's bytes.
 *
 * Times: Whippet's "ms total time" (from gc_init to the end of the run);
 * here from the heap's creation to the end.  Peak RSS is each child's
 * ru_maxrss (wait4).  Whippet's HEAP_SIZE holds a semispace collector's
 * two halves; faultheap's heap_max does too (one meaning of heap_max). */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MT_LONG_LIVED_DEPTH 16
#define MT_ARRAY_LEN 500000
#define MT_MIN_DEPTH 4
#define MT_MAX_DEPTH 16

typedef struct mt_node {
  struct mt_node *left, *right;
  int32_t i, j;
} mt_node;

static size_t tree_nodes(int depth) { return ((size_t)1 << (depth + 1)) - 1; }

static size_t mt_live_bytes(void) {
  return (tree_nodes(MT_LONG_LIVED_DEPTH) + tree_nodes(MT_MAX_DEPTH)) * (8 + sizeof(mt_node)) +
         16 + 8 * (size_t)MT_ARRAY_LEN;
}

/* Hole lengths in words, 256 entries with Whippet's power-law histogram:
 * how many entries have each length 0..36, spread by a fixed stride so
 * that runs of one length do not cluster (the order differs from
 * Whippet's table; the distribution, and so the garbage per node, is the
 * same: 1,452 words per 256 holes). */
static const uint8_t hole_length_count[37] = {
    36, 35, 29, 21, 17, 19, 12, 20, 12, 8, 4, 7, 5, 3, 4, 6, 3, 1, 4,
    1,  1,  0,  1,  2,  1,  0,  0,  1,  1, 0, 0, 0, 1, 0, 0, 0, 1};
static uint8_t hole_lengths[256];

static void hole_table_init(void) {
  uint8_t flat[256];
  size_t n = 0;
  for (unsigned len = 0; len < sizeof hole_length_count; len++)
    for (unsigned k = 0; k < hole_length_count[len] && n < 256; k++) flat[n++] = (uint8_t)len;
  while (n < 256) flat[n++] = 0;
  for (size_t i = 0; i < 256; i++) hole_lengths[(i * 97) & 0xff] = flat[i]; /* 97 odd: a bijection */
}

typedef struct mt_ctx {
  fh_thread *t;
  uint32_t node, darray, hole;
  size_t counter;
  const char *who;
} mt_ctx;

static void *must(void *p, const char *who, const char *what) {
  if (!p) {
    fprintf(stderr, "%s: %s: %s\n", who, what, fh_last_error());
    exit(1);
  }
  return p;
}

static void garbage(mt_ctx *c) {
  size_t words = hole_lengths[c->counter++ & 0xff];
  if (!words) return;
  uint64_t *h = must(fh_alloc(c->t, c->hole, 8 * (words + 1)), c->who, "a hole");
  h[0] = words;
}

static mt_node *new_node(mt_ctx *c) {
  return must(fh_alloc(c->t, c->node, sizeof(mt_node)), c->who, "a node");
}

/* Top-down: node's children are made and linked, then filled. */
static void populate(mt_ctx *c, int depth, mt_node *node) {
  if (depth <= 0) return;
  fh_thread *t = c->t;
  mt_node *l = NULL, *r = NULL;
  fh_push_root(t, (void **)&node);
  fh_push_root(t, (void **)&l);
  fh_push_root(t, (void **)&r);
  garbage(c);
  l = new_node(c);
  garbage(c);
  r = new_node(c);
  fh_write_ref(t, node, (void **)&node->left, l);
  fh_write_ref(t, node, (void **)&node->right, r);
  node->j = depth;
  populate(c, depth - 1, node->left);
  populate(c, depth - 1, node->right);
  fh_pop_roots(t, 3);
}

/* Bottom-up: the children first, then the node that holds them, whose
 * initialising stores are plain, as Whippet's (faultheap.h allows them:
 * fh_write_ref). */
static mt_node *make_tree(mt_ctx *c, int depth) {
  if (depth <= 0) return new_node(c);
  fh_thread *t = c->t;
  mt_node *l = NULL, *r = NULL;
  fh_push_root(t, (void **)&l);
  fh_push_root(t, (void **)&r);
  l = make_tree(c, depth - 1);
  r = make_tree(c, depth - 1);
  garbage(c);
  mt_node *n = new_node(c);
  n->left = l;
  n->right = r;
  n->j = depth;
  fh_pop_roots(t, 2);
  return n;
}

static int tree_ok(const mt_node *n, int depth) {
  if (n->i != 0 || n->j != (depth > 0 ? depth : 0)) return 0;
  if (depth <= 0) return !n->left && !n->right;
  return n->left && n->right && tree_ok(n->left, depth - 1) && tree_ok(n->right, depth - 1);
}

static int register_types(fh_heap *h, uint32_t *node, uint32_t *darray, uint32_t *hole) {
  static const uint32_t node_refs[] = {0, 8};
  const fh_type tn = {.name = "whippet.node", .size = sizeof(mt_node), .nrefs = 2,
                      .ref_offsets = node_refs};
  const fh_type ta = {.name = "whippet.double_array", .size = 0};
  const fh_type th = {.name = "whippet.hole", .size = 0};
  *node = fh_register_type(h, &tn);
  *darray = fh_register_type(h, &ta);
  *hole = fh_register_type(h, &th);
  return *node && *darray && *hole ? 0 : -1;
}

static int mt_child(const char *collector, double mult) {
  static const char who[] = "whippet-mt-gcbench";
  hole_table_init();
  size_t heap_max = (size_t)(mult * (double)mt_live_bytes());
  uint64_t t0 = bench_now_ns();
  fh_heap *h = wk_heap_create(who, collector, heap_max);
  if (!h) return 1;
  mt_ctx c = {.who = who};
  if (register_types(h, &c.node, &c.darray, &c.hole) < 0 || !(c.t = fh_thread_attach(h))) {
    fprintf(stderr, "%s: setup: %s\n", who, fh_last_error());
    return 1;
  }
  fh_thread *t = c.t;
  mt_node *long_lived = NULL, *temp = NULL;
  double *array = NULL;
  fh_push_root(t, (void **)&long_lived);
  fh_push_root(t, (void **)&temp);
  fh_push_root(t, (void **)&array);
  long_lived = new_node(&c);
  populate(&c, MT_LONG_LIVED_DEPTH, long_lived);
  array = must(fh_alloc(t, c.darray, 8 + 8 * (size_t)MT_ARRAY_LEN), who, "the array");
  ((uint64_t *)array)[0] = MT_ARRAY_LEN;
  for (int i = 0; i < MT_ARRAY_LEN / 2; i++) array[1 + i] = 1.0 / i;
  for (int d = MT_MIN_DEPTH; d <= MT_MAX_DEPTH; d += 2) {
    int iters = (int)(2 * tree_nodes(MT_MAX_DEPTH + 2) / tree_nodes(d));
    for (int i = 0; i < iters; i++) {
      temp = new_node(&c);
      populate(&c, d, temp);
      temp = NULL;
    }
    for (int i = 0; i < iters; i++) {
      temp = make_tree(&c, d);
      temp = NULL;
    }
  }
  double ms = (double)(bench_now_ns() - t0) / 1e6;
  int failures = !tree_ok(long_lived, MT_LONG_LIVED_DEPTH) || array[1 + 1000] != 1.0 / 1000;
  fh_pop_roots(t, 3);
  printf("%s collector=%s heap_max=%zu live=%zu ms=%.3f failures=%d", who,
         collector ? collector : "default", heap_max, mt_live_bytes(), ms, failures);
  wk_print_stats(h);
  printf("\n");
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return failures;
}

/* ---- quads ----------------------------------------------------------------- */

typedef struct quad {
  struct quad *kids[4];
} quad;

static size_t quad_nodes(int depth) {
  size_t n = 0, leaves = 1;
  for (int i = 0; i <= depth; i++, leaves *= 4) n += leaves;
  return n;
}

static quad *make_quads(fh_thread *t, uint32_t type, int depth) {
  if (depth <= 0) return must(fh_alloc(t, type, sizeof(quad)), "whippet-quads", "a quad");
  quad *kids[4] = {NULL, NULL, NULL, NULL};
  for (int i = 0; i < 4; i++) {
    kids[i] = make_quads(t, type, depth - 1);
    fh_push_root(t, (void **)&kids[i]);
  }
  quad *q = must(fh_alloc(t, type, sizeof(quad)), "whippet-quads", "a quad");
  /* Initialising stores, plain as Whippet's (faultheap.h: fh_write_ref). */
  for (int i = 0; i < 4; i++) q->kids[i] = kids[i];
  fh_pop_roots(t, 4);
  return q;
}

static int quads_ok(const quad *q, int depth) {
  for (int i = 0; i < 4; i++)
    if (depth == 0 ? q->kids[i] != NULL : !q->kids[i] || !quads_ok(q->kids[i], depth - 1))
      return 0;
  return 1;
}

static int quads_child(const char *collector, double mult, int depth) {
  static const char who[] = "whippet-quads";
  size_t tree_bytes = quad_nodes(depth) * (8 + sizeof(quad));
  size_t heap_max = (size_t)(mult * (double)tree_bytes);
  uint64_t t0 = bench_now_ns();
  fh_heap *h = wk_heap_create(who, collector, heap_max);
  if (!h) return 1;
  static const uint32_t refs[] = {0, 8, 16, 24};
  const fh_type tq = {.name = "whippet.quad", .size = sizeof(quad), .nrefs = 4, .ref_offsets = refs};
  uint32_t type = fh_register_type(h, &tq);
  fh_thread *t = type ? fh_thread_attach(h) : NULL;
  if (!t) {
    fprintf(stderr, "%s: setup: %s\n", who, fh_last_error());
    return 1;
  }
  quad *root = NULL;
  fh_push_root(t, (void **)&root);
  root = make_quads(t, type, depth);
  int failures = !quads_ok(root, depth);
  /* Whippet's count: heap/7.5 bytes over (85 quads x 32 bytes) per tree. */
  size_t per_round = (size_t)((double)heap_max / 7.5) / (quad_nodes(3) * 4 * sizeof(void *));
  for (int round = 0; round < 20; round++) {
    for (size_t i = per_round; i; i--) make_quads(t, type, 3);
    failures += !quads_ok(root, depth);
  }
  double ms = (double)(bench_now_ns() - t0) / 1e6;
  fh_pop_roots(t, 1);
  printf("%s collector=%s depth=%d heap_max=%zu live=%zu ms=%.3f failures=%d", who,
         collector ? collector : "default", depth, heap_max, tree_bytes, ms, failures);
  wk_print_stats(h);
  printf("\n");
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return failures ? 1 : 0;
}

/* ---- Whippet's output ------------------------------------------------------ */

/* Whippet's gc_basic_stats_print:
 *   Completed 29 major collections (0 minor).
 *   1302.123 ms total time (300.456 stopped); 1310.000 ms CPU time (...).
 *   2.345 ms median pause time, 3.456 p95, 4.567 max.
 * quads aborts (SIGABRT) if its tree is wrong. */
static int whippet_parse(const char *out, const wk_run *run, double *vals) {
  double ms = NAN, major = NAN, minor = 0, pmax = NAN;
  const char *p;
  if ((p = strstr(out, " ms total time"))) {
    const char *q = p;
    while (q > out && q[-1] != '\n') q--;
    ms = strtod(q, NULL);
  }
  if ((p = strstr(out, "major collections"))) {
    const char *q = p;
    while (q > out && q[-1] != '\n') q--;
    if (sscanf(q, "Completed %lf major collections (%lf minor)", &major, &minor) < 1) major = NAN;
  }
  if ((p = strstr(out, " p95, "))) pmax = strtod(p + 6, NULL);
  if (strstr(out, "Failed")) return -1; /* mt-gcbench's own check */
  for (int k = 0; k < run->nkeys; k++) {
    const char *key = run->keys[k];
    if (strcmp(key, "ms") == 0) vals[k] = ms;
    else if (strcmp(key, "collections") == 0) vals[k] = major + minor;
    else if (strcmp(key, "pause_max_ms") == 0) vals[k] = pmax;
    else if (strcmp(key, "failures") == 0) vals[k] = 0;
    else if (strcmp(key, "young") == 0) vals[k] = minor;
    else if (strcmp(key, "full") == 0) vals[k] = major;
    /* peak_rss_mib: filled by the runner */
  }
  return isnan(ms) ? -1 : 0;
}

/* ---- the runner ------------------------------------------------------------ */

static const char default_whippet_collectors[] =
    "mmc,generational-mmc,parallel-mmc,semi,pcc,generational-pcc,bdw";

static void usage(FILE *out, const char *name, int quads) {
  fprintf(out,
          "usage: fhbench %s [--multiplier M] [--runs N]%s [--collectors LIST]\n"
          "          [--whippet DIR [--whippet-collectors LIST]] [--json FILE] [-v]\n"
          "The shape of Whippet's benchmarks/%s.c on faultheap (bench/wl_whippet_gc.c),\n"
          "one mutator, heap = M x live data on both sides; with --whippet, Whippet's\n"
          "binaries DIR/%s.<collector> run in the same rounds.\n"
          "  --multiplier M   heap size as a multiple of live data (default 2)\n"
          "%s"
          "  --runs N         rounds (default 3); times and RSS are medians\n"
          "  --collectors L   faultheap collectors (default: all)\n"
          "  --whippet DIR    a Whippet build's bin/ directory\n"
          "  --whippet-collectors L  default %s\n",
          name, quads ? " [--depth D]" : "", name + 8, name + 8,
          quads ? "  --depth D        the live quad tree's depth (default 9)\n" : "",
          default_whippet_collectors);
}

static int gc_main(int argc, char **argv, int quads) {
  static const char *const with_value[] = {"--multiplier", "--runs", "--collectors", "--collector",
                                           "--whippet", "--whippet-collectors", "--json",
                                           "--depth", NULL};
  static const char *const bare[] = {"--child", "-v", "--help", "-h", NULL};
  const char *name = quads ? "whippet-quads" : "whippet-mt-gcbench";
  const char *prog = name + 8;
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    usage(stdout, name, quads);
    return 0;
  }
  const char *ms = bench_flag(argc, argv, "--multiplier");
  const char *ds = bench_flag(argc, argv, "--depth");
  double mult = ms ? atof(ms) : 2;
  int depth = ds ? atoi(ds) : 9;
  if (!(mult > 1 && mult < 100) || depth < 2 || depth > 13) {
    fprintf(stderr, "%s: --multiplier wants 1..100, --depth 2..13\n", name);
    return 2;
  }
  if (bench_has_flag(argc, argv, "--child")) {
    const char *c = bench_flag(argc, argv, "--collector");
    return quads ? quads_child(c, mult, depth) : mt_child(c, mult);
  }
  int runs = bench_runs_flag(argc, argv, 3);
  unsigned mask;
  if (runs < 0 || runs > WK_MAXRUNS ||
      wk_parse_collectors(name, bench_flag(argc, argv, "--collectors"), &mask) != 0)
    return 2;
  char mbuf[32], dbuf[16];
  snprintf(mbuf, sizeof mbuf, "%.17g", mult);
  snprintf(dbuf, sizeof dbuf, "%d", depth);

  static wk_run run;
  memset(&run, 0, sizeof run);
  run.who = name;
  run.runs = runs;
  run.nkeys = 7;
  run.keys[0] = "ms";
  run.keys[1] = "collections";
  run.keys[2] = "pause_max_ms";
  run.keys[3] = "peak_rss_mib";
  run.keys[4] = "young"; /* Whippet: minor collections */
  run.keys[5] = "full";  /* Whippet: major collections */
  run.keys[6] = "young_pause_max_ms";
  const char *fh_args[] = {"--multiplier", mbuf, "--depth", dbuf};
  int nfh = wk_add_faultheap_variants(&run, name, mask, fh_args, quads ? 4 : 2);
  const char *wdir = bench_flag(argc, argv, "--whippet");
  if (wdir) {
    const char *wlist = bench_flag(argc, argv, "--whippet-collectors");
    /* quads DEPTH MULTIPLIER; mt-gcbench MULTIPLIER NTHREADS */
    const char *qargs[] = {dbuf, mbuf}, *margs[] = {mbuf, "1"};
    wk_add_whippet_variants(&run, wdir, wlist ? wlist : default_whippet_collectors, prog,
                            quads ? qargs : margs, 2, whippet_parse);
  }
  int status = wk_run_all(&run, bench_has_flag(argc, argv, "-v"));
  const wk_variant *best = wk_whippet_best(&run, nfh);
  bench_print_header(stdout);
  printf("%s: multiplier %s%s%s, 1 mutator, %d rounds (medians)\n", name, mbuf,
         quads ? ", depth " : "", quads ? dbuf : "", runs);
  printf("%-30s %9s %7s %11s %6s %12s %9s %9s %11s %9s\n", "variant", "ms", "range", "max_pause",
         "GCs", "peak_RSS_MiB", best ? "time_vs" : "", best ? "RSS_vs" : "", "young/full",
         "young_max");
  for (int i = 0; i < run.n; i++) {
    const wk_variant *v = &run.v[i];
    if (v->skipped) {
      printf("%-30s (not built)\n", v->name);
      continue;
    }
    if (v->failed) {
      printf("%-30s FAILED (exit %d): %s\n", v->name, v->failed, v->why);
      continue;
    }
    char range[32], tr[16] = "", rr[16] = "";
    wk_range(&run, v, "ms", range, sizeof range);
    if (best) {
      snprintf(tr, sizeof tr, "%.2fx", wk_ratio(&run, v, "ms", best, "ms"));
      snprintf(rr, sizeof rr, "%.2fx", wk_ratio(&run, v, "peak_rss_mib", best, "peak_rss_mib"));
    }
    /* Young (minor) and full (major) collections; the longest young pause
     * where the child reports it (faultheap). */
    char yf[32] = "-", ym[16] = "-";
    double young = wk_median(&run, v, "young"), full = wk_median(&run, v, "full");
    double ymax = wk_max(&run, v, "young_pause_max_ms");
    if (!isnan(young) && !isnan(full)) snprintf(yf, sizeof yf, "%.0f/%.0f", young, full);
    if (!isnan(ymax) && young > 0) snprintf(ym, sizeof ym, "%.2f", ymax);
    printf("%-30s %9.1f %7s %11.2f %6.0f %12.1f %9s %9s %11s %9s\n", v->name,
           wk_median(&run, v, "ms"), range, wk_max(&run, v, "pause_max_ms"),
           wk_median(&run, v, "collections"), wk_median(&run, v, "peak_rss_mib"), tr, rr, yf, ym);
  }
  if (best)
    printf("time_vs, RSS_vs: median over rounds of the ratio to %s in the same round\n"
           "(Whippet's fastest precise collector here)\n", best->name);
  if (wk_write_json(&run, name, argc, argv) != 0) status = 1;
  return status;
}

int wl_whippet_mt_gcbench(int argc, char **argv) { return gc_main(argc, argv, 0); }
int wl_whippet_quads(int argc, char **argv) { return gc_main(argc, argv, 1); }
