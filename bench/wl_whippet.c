/* fhbench whippet-ephemerons, fhbench whippet-finalizers: Whippet's own
 * benchmarks/ephemerons.c and benchmarks/finalizers.c (github.com/wingo/
 * whippet), ported to faultheap's API, and run side by side with Whippet's
 * binaries when --whippet names a Whippet build.  Written from the programs'
 * behaviour; nothing of Whippet is compiled into faultheap.
 *
 * Both programs take HEAP_SIZE MULTIPLIER NTHREADS (here --heap-size,
 * --multiplier, one mutator) and size their data as
 *     list_length = HEAP_SIZE / MULTIPLIER / unit
 * with Whippet's unit sizes on x86-64 (below), so both sides build the same
 * number of objects.  faultheap's heap_max is MULTIPLIER x the bytes those
 * objects take in faultheap (headers included), that is the same multiplier
 * of live data; Whippet's heap is HEAP_SIZE.  (For a semispace collector
 * Whippet's HEAP_SIZE holds both halves, while faultheap's heap_max counts
 * object bytes only: Whippet's semi and pcc run out of space at 2x.)
 *
 * ephemerons: a chain of list_length ephemerons; each step allocates a Box,
 * points it at the current head key, allocates a new head key (a small
 * object) and an ephemeron (new key -> the Box), and pushes it on the chain,
 * so each ephemeron's value leads to the previous one's key.  The chain is
 * walked (checking each key), a full collection runs, the chain is walked
 * again (all live: marking resolves it one ephemeron at a time, the worst
 * case of the fix-point), then the head key is dropped and after one more
 * collection the whole chain must read cleared.  Whippet links ephemerons
 * through a chain field of its own ephemeron object; faultheap's are
 * ordinary 2-slot objects, so the chain is a rooted reference array, head
 * first (8 bytes per link where Whippet's ephemeron has a word for it).
 *
 * finalizers: list_length steps, each allocating a Pair, a small object
 * stored in its car, and a finalizer on the Pair whose closure is the small
 * object.  Whippet's set_cdr stores into its local variable, not the field,
 * so no cdr is ever set and every Pair but the last is garbage at the
 * first collection: the port builds exactly that (the same work, as Whippet
 * actually runs it).  A full collection, every queued object popped and
 * checked, the head dropped, another collection and pops; every Pair must
 * have been finalized once.  faultheap's data word is not traced (Whippet's
 * closure is), so the port passes the step number and checks car != NULL.
 *
 * The time is Whippet's "Completed thread in" figure: from after the heap
 * is set up to the end, allocation, both collections and the walks/pops. */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whippet's object sizes on x86-64 (its struct gc_ephemeron is a header,
 * state, epoch, chain, pending, resolved, key, value: 56 bytes; struct
 * gc_finalizer 40; Box 16; Pair 24). */
#define WHIPPET_EPHEMERON_UNIT (56 + 16)
#define WHIPPET_FINALIZER_UNIT (40 + 24)

typedef struct wp_small {
  uint64_t word; /* Whippet's SmallObject is a bare header */
} wp_small;
typedef struct wp_box {
  void *obj;
} wp_box;
typedef struct wp_pair {
  void *car, *cdr;
} wp_pair;

/* faultheap bytes of one object with a payload of n bytes */
#define FH_OBJ(n) ((((size_t)(n) + 8 + 7) & ~(size_t)7))

static double ms_since(uint64_t t0) { return (double)(bench_now_ns() - t0) / 1e6; }

typedef wk_heap wp_heap;

static int wp_setup(wp_heap *w, const char *who, const char *collector, size_t heap_max) {
  return wk_heap_setup(w, who, "whippet", collector, heap_max);
}

static void wp_teardown(wp_heap *w) {
  fh_thread_detach(w->t);
  fh_heap_destroy(w->h);
}

static void *must(void *p, const char *who, const char *what) {
  if (!p) {
    fprintf(stderr, "%s: %s: %s\n", who, what, fh_last_error());
    exit(1);
  }
  return p;
}

/* ---- ephemerons ------------------------------------------------------------ */

/* Live links of the chain from its head, each key checked against the
 * previous value's object (cleared ephemerons are skipped, as Whippet's
 * chain walk skips dead ones); (size_t)-1 if a check fails. */
static size_t chain_length(fh_thread *t, void **chain, size_t n, void *key) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    void *k = fh_ephemeron_key(t, chain[i]);
    if (!k) continue;
    wp_box *b = fh_ephemeron_value(t, chain[i]);
    if (k != key || !b || !b->obj) return (size_t)-1;
    key = b->obj;
    len++;
  }
  return len;
}

static int eph_child(const char *collector, double heap_size, double mult) {
  static const char who[] = "whippet-ephemerons";
  size_t n = (size_t)(heap_size / mult / WHIPPET_EPHEMERON_UNIT);
  /* an ephemeron (2 slots), a Box, a small object and a chain slot each */
  size_t live = n * (FH_OBJ(16) + FH_OBJ(sizeof(wp_box)) + FH_OBJ(sizeof(wp_small)) + 8) +
                FH_OBJ(0);
  wp_heap w;
  if (wp_setup(&w, who, collector, (size_t)(mult * (double)live)) != 0) return 1;
  fh_thread *t = w.t;
  int failures = 0;

  uint64_t t0 = bench_now_ns();
  void **chain = NULL, *head_key = NULL, *box = NULL;
  fh_push_root(t, (void **)&chain);
  fh_push_root(t, &head_key);
  fh_push_root(t, &box);
  chain = must(fh_alloc(t, w.array, n * sizeof(void *)), who, "the chain");
  head_key = must(fh_alloc(t, w.small, sizeof(wp_small)), who, "a key");
  for (size_t i = 0; i < n; i++) {
    box = must(fh_alloc(t, w.box, sizeof(wp_box)), who, "a box");
    fh_write_ref(t, box, &((wp_box *)box)->obj, head_key);
    head_key = must(fh_alloc(t, w.small, sizeof(wp_small)), who, "a key");
    void *e = must(fh_ephemeron_new(t, head_key, box), who, "an ephemeron");
    fh_write_ref(t, chain, &chain[n - 1 - i], e); /* pushed on the head */
  }
  box = NULL;
  if (chain_length(t, chain, n, head_key) != n) failures++;
  if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) must(NULL, who, "fh_collect");
  if (chain_length(t, chain, n, head_key) != n) failures++;
  head_key = NULL;
  if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) must(NULL, who, "fh_collect");
  size_t left = chain_length(t, chain, n, NULL);
  if (left != 0) failures++;
  double ms = ms_since(t0);
  fh_pop_roots(t, 3);

  printf("whippet-ephemerons collector=%s list_length=%zu heap_max=%zu ms=%.3f left=%zd "
         "failures=%d",
         collector ? collector : "default", n, (size_t)(mult * (double)live), ms,
         (ssize_t)left, failures);
  wk_print_stats(w.h);
  printf("\n");
  wp_teardown(&w);
  return failures ? 1 : 0;
}

/* ---- finalizers ------------------------------------------------------------ */

/* Pops the whole queue, checking each object; the number popped. */
static size_t pop_all(fh_thread *t, size_t n, int *failures) {
  size_t got = 0;
  void *obj, *data;
  while (fh_finalizer_pop(t, &obj, &data) == 1) {
    wp_pair *p = obj;
    uintptr_t step = (uintptr_t)data;
    if (!p || !p->car || step == 0 || step > n) ++*failures;
    got++;
  }
  return got;
}

static int fin_child(const char *collector, double heap_size, double mult) {
  static const char who[] = "whippet-finalizers";
  size_t n = (size_t)(heap_size / mult / WHIPPET_FINALIZER_UNIT);
  size_t live = n * (FH_OBJ(sizeof(wp_pair)) + FH_OBJ(sizeof(wp_small)));
  wp_heap w;
  if (wp_setup(&w, who, collector, (size_t)(mult * (double)live)) != 0) return 1;
  fh_thread *t = w.t;
  int failures = 0;

  uint64_t t0 = bench_now_ns();
  void *head = NULL, *tail = NULL, *car = NULL;
  fh_push_root(t, &head);
  fh_push_root(t, &tail);
  fh_push_root(t, &car);
  for (size_t i = 0; i < n; i++) {
    tail = head;
    head = must(fh_alloc(t, w.pair, sizeof(wp_pair)), who, "a pair");
    car = must(fh_alloc(t, w.small, sizeof(wp_small)), who, "a small object");
    fh_write_ref(t, head, &((wp_pair *)head)->car, car);
    /* (Whippet's set_cdr(head, tail) does not store: cdr stays NULL) */
    if (fh_finalizer_attach(t, head, (void *)(uintptr_t)(i + 1)) != 0)
      must(NULL, who, "fh_finalizer_attach");
  }
  tail = car = NULL;
  if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) must(NULL, who, "fh_collect");
  size_t before = pop_all(t, n, &failures);
  head = NULL;
  if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) must(NULL, who, "fh_collect");
  size_t after = pop_all(t, n, &failures);
  double ms = ms_since(t0);
  fh_pop_roots(t, 3);
  long outstanding = (long)n - (long)(before + after);
  if (outstanding) failures++;

  printf("whippet-finalizers collector=%s list_length=%zu heap_max=%zu ms=%.3f "
         "finalized_before=%zu finalized_after=%zu outstanding=%ld failures=%d",
         collector ? collector : "default", n, (size_t)(mult * (double)live), ms, before,
         after, outstanding, failures);
  wk_print_stats(w.h);
  printf("\n");
  wp_teardown(&w);
  return failures ? 1 : 0;
}

/* ---- Whippet's output ------------------------------------------------------ */

/* Keys: ms collections pause_max_ms failures.  Whippet prints
 *   Completed thread in 798.819 msec
 *   Completed 2 major collections (0 minor).
 *   110.592 ms median pause time, 110.592 p95, 688.128 max.
 * and "WARNING: N nodes outstanding" when finalizers were missed. */
static int whippet_parse(const char *out, const wk_run *run, double *vals) {
  double ms = NAN, major = NAN, minor = 0, pmax = NAN, failures = 0;
  const char *p;
  if ((p = strstr(out, "Completed thread in "))) ms = strtod(p + 20, NULL);
  if ((p = strstr(out, "Completed ")) && (p = strstr(p, "major collections"))) {
    const char *q = p;
    while (q > out && q[-1] != '\n') q--;
    if (sscanf(q, "Completed %lf major collections (%lf minor)", &major, &minor) < 1)
      major = NAN;
  }
  if ((p = strstr(out, " p95, "))) pmax = strtod(p + 6, NULL);
  if (strstr(out, "outstanding")) failures = 1;
  for (int k = 0; k < run->nkeys; k++) {
    const char *key = run->keys[k];
    vals[k] = strcmp(key, "ms") == 0              ? ms
              : strcmp(key, "collections") == 0   ? major + minor
              : strcmp(key, "pause_max_ms") == 0  ? pmax
              : strcmp(key, "failures") == 0      ? failures
                                                  : NAN;
  }
  return isnan(ms) || failures ? -1 : 0;
}

/* ---- the runner ------------------------------------------------------------ */

static void json_num(FILE *f, const char *key, double x) {
  if (isnan(x)) fprintf(f, ", \"%s\": null", key);
  else fprintf(f, ", \"%s\": %.3f", key, x);
}

static const char default_whippet_collectors[] =
    "mmc,parallel-mmc,generational-mmc,semi,pcc,generational-pcc,bdw";

static void usage(FILE *out, const char *name) {
  fprintf(out,
          "usage: fhbench %s [--heap-size BYTES] [--multiplier M] [--runs N]\n"
          "          [--collectors LIST] [--whippet DIR [--whippet-collectors LIST]]\n"
          "          [--json FILE] [-v]\n"
          "Whippet's benchmarks/%s.c ported to faultheap (see bench/wl_whippet.c),\n"
          "one mutator; with --whippet, Whippet's own binaries DIR/%s.<collector>\n"
          "run in the same rounds (children, order rotating each round).\n"
          "  --heap-size B    Whippet's HEAP_SIZE (default 50e6): list_length is\n"
          "                   B / M / Whippet's unit size, on both sides\n"
          "  --multiplier M   heap size as a multiple of live data (default 2)\n"
          "  --runs N         rounds (default 3); times are medians\n"
          "  --collectors L   faultheap collectors (default: default,semispace,\n"
          "                   mark_sweep,mark_compact,concurrent_compact)\n"
          "  --whippet DIR    a Whippet build's bin/ directory (make in Whippet's\n"
          "                   tree builds bin/%s.<collector>)\n"
          "  --whippet-collectors L  default %s\n"
          "  --json FILE      also write the results as JSON\n"
          "  -v               print every run on stderr\n",
          name, name + 8, name + 8, name + 8, default_whippet_collectors);
}

static int whippet_main(int argc, char **argv, int finalizers) {
  static const char *const with_value[] = {"--heap-size", "--multiplier", "--runs",
                                           "--collectors", "--collector", "--whippet",
                                           "--whippet-collectors", "--json", NULL};
  static const char *const bare[] = {"--child", "-v", "--help", "-h", NULL};
  const char *name = finalizers ? "whippet-finalizers" : "whippet-ephemerons";
  const char *prog = name + 8; /* Whippet's program name */
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h")) {
    usage(stdout, name);
    return 0;
  }
  const char *hs = bench_flag(argc, argv, "--heap-size");
  const char *ms = bench_flag(argc, argv, "--multiplier");
  double heap_size = hs ? atof(hs) : 50e6, mult = ms ? atof(ms) : 2;
  if (!(heap_size >= 1e6 && heap_size <= 64e9) || !(mult > 1 && mult < 100)) {
    fprintf(stderr, "%s: --heap-size wants 1e6..64e9 and --multiplier 1..100\n", name);
    return 2;
  }
  if (bench_has_flag(argc, argv, "--child")) {
    const char *c = bench_flag(argc, argv, "--collector");
    return finalizers ? fin_child(c, heap_size, mult) : eph_child(c, heap_size, mult);
  }
  int runs = bench_runs_flag(argc, argv, 3);
  unsigned mask;
  if (runs < 0 || runs > WK_MAXRUNS ||
      wk_parse_collectors(name, bench_flag(argc, argv, "--collectors"), &mask) != 0)
    return 2;
  const char *wdir = bench_flag(argc, argv, "--whippet");
  const char *wlist = bench_flag(argc, argv, "--whippet-collectors");
  char hsbuf[32], mbuf[32];
  snprintf(hsbuf, sizeof hsbuf, "%.17g", heap_size);
  snprintf(mbuf, sizeof mbuf, "%.17g", mult);

  static wk_run run;
  memset(&run, 0, sizeof run);
  run.who = name;
  run.runs = runs;
  run.nkeys = 5;
  run.keys[0] = "ms";
  run.keys[1] = "collections";
  run.keys[2] = "pause_max_ms";
  run.keys[3] = "list_length";
  run.keys[4] = "heap_max";
  const char *fh_args[] = {"--heap-size", hsbuf, "--multiplier", mbuf};
  int nfh = wk_add_faultheap_variants(&run, name, mask, fh_args, 4);
  if (wdir) {
    const char *wargs[] = {hsbuf, mbuf, "1"}; /* HEAP_SIZE MULTIPLIER NTHREADS */
    wk_add_whippet_variants(&run, wdir, wlist ? wlist : default_whippet_collectors, prog, wargs,
                            3, whippet_parse);
  }
  int status = wk_run_all(&run, bench_has_flag(argc, argv, "-v"));

  /* Whippet's best: the lowest median time among its precise variants that
   * ran every round correctly.  The conservative ones (bdw, *conservative*)
   * skip ephemerons.c's check that the dropped chain clears, and bdw only
   * approximates ephemerons with finalizers: they are shown, not compared. */
  const wk_variant *best = wk_whippet_best(&run, nfh);
  for (int i = nfh; i < run.n; i++)
    if (run.v[i].failed == 1)
      snprintf(run.v[i].why, sizeof run.v[i].why, "finalizers outstanding or bad output");

  bench_print_header(stdout);
  printf("%s: heap size %s, multiplier %s, 1 mutator, %d rounds (medians)\n", name, hsbuf,
         mbuf, runs);
  printf("%-30s %10s %9s %9s %7s %11s %9s %9s\n", "variant", "list_len", "heap_MB", "ms",
         "range", "max_pause", "GCs", best ? "vs_best" : "");
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
    char range[32], ratio[16] = "";
    wk_range(&run, v, "ms", range, sizeof range);
    if (best) snprintf(ratio, sizeof ratio, "%.2fx", wk_ratio(&run, v, "ms", best, "ms"));
    double ll = i < nfh ? wk_median(&run, v, "list_length")
                        : floor(heap_size / mult /
                                (finalizers ? WHIPPET_FINALIZER_UNIT : WHIPPET_EPHEMERON_UNIT));
    double hm = i < nfh ? wk_median(&run, v, "heap_max") : heap_size;
    printf("%-30s %10.0f %9.1f %9.1f %7s %11.1f %9.0f %9s\n", v->name, ll, hm / 1e6,
           wk_median(&run, v, "ms"), range, wk_max(&run, v, "pause_max_ms"),
           wk_median(&run, v, "collections"), ratio);
  }
  if (best)
    printf("vs_best: median over rounds of time / %s's time in the same round (Whippet's\n"
           "best precise collector; bdw and conservative variants skip the clearing check)\n",
           best->name);

  const char *json = bench_flag(argc, argv, "--json");
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      perror(json);
      return 1;
    }
    fprintf(f, "{\"workload\": \"%s\", \"machine\": ", name);
    bench_json_machine(f);
    fprintf(f, ", \"heap_size\": %s, \"multiplier\": %s, \"runs\": %d, \"variants\": [", hsbuf,
            mbuf, runs);
    for (int i = 0; i < run.n; i++) {
      const wk_variant *v = &run.v[i];
      fprintf(f, "%s{\"name\": ", i ? ", " : "");
      bench_json_string(f, v->name);
      fprintf(f, ", \"ran\": %s", !v->skipped && !v->failed ? "true" : "false");
      json_num(f, "median_ms", wk_median(&run, v, "ms"));
      json_num(f, "pause_max_ms", wk_max(&run, v, "pause_max_ms"));
      json_num(f, "collections", wk_median(&run, v, "collections"));
      json_num(f, "vs_whippet_best", best ? wk_ratio(&run, v, "ms", best, "ms") : NAN);
      fprintf(f, "}");
    }
    fprintf(f, "]}\n");
    fclose(f);
  }
  return status;
}

int wl_whippet_ephemerons(int argc, char **argv) { return whippet_main(argc, argv, 0); }
int wl_whippet_finalizers(int argc, char **argv) { return whippet_main(argc, argv, 1); }
