/* fhbench finalizers: finalizable native handles, the way a runtime closes
 * file ports it dropped.
 *
 * --ports handles (default 10^6), each a small heap object holding a
 * buffer of --native bytes from fh_malloc (counted by the heap, so heavy
 * native use brings collections forward).  Each is attached a finalizer
 * whose data word is the buffer, then stored in a ring of --window strong
 * slots, dropping the handle it replaces.  The notify callback (run after
 * a collection's pause) sets a flag; the mutator then pops the queue and
 * fh_frees each buffer, as a finalizer thread would.  At the end the ring
 * is cleared, one collection and a last drain: every handle must have been
 * finalized exactly once and the native space must be back to empty.
 *
 * The same program freeing each buffer when its handle leaves the ring
 * (explicit close, no finalizer) runs in the same rounds: ratio = median
 * over rounds of finalized ms / explicit ms.  finalized/s is handles
 * finalized per second of the whole run. */
#include "bench.h"

#include <faultheap.h>

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct port {
  uint64_t id;
  void *native; /* fh_malloc'd, not a heap reference */
} port;

static const char who[] = "finalizers";
static _Atomic int notified;
static _Atomic long notifies;

static void on_notify(fh_heap *h, void *user) {
  (void)h;
  (void)user;
  atomic_store_explicit(&notified, 1, memory_order_release);
  atomic_fetch_add_explicit(&notifies, 1, memory_order_relaxed);
}

static void *must(void *p, const char *what) {
  if (!p) {
    fprintf(stderr, "%s: %s: %s\n", who, what, fh_last_error());
    exit(1);
  }
  return p;
}

static size_t native_used(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  for (unsigned i = 0; i < s.nspaces; i++)
    if (s.spaces[i].name && strcmp(s.spaces[i].name, "native") == 0) return s.spaces[i].used;
  return 0;
}

/* Pops the whole queue, closing each handle; the number finalized. */
static size_t drain(fh_thread *t, fh_heap *h, int *failures) {
  size_t n = 0;
  void *obj, *data;
  while (fh_finalizer_pop(t, &obj, &data) == 1) {
    port *p = obj;
    if (!p || !data || p->native != data) {
      ++*failures;
      continue;
    }
    fh_free(h, data);
    p->native = NULL; /* closed */
    n++;
  }
  return n;
}

static size_t size_flag(int argc, char **argv, const char *flag, size_t dflt) {
  const char *s = bench_flag(argc, argv, flag);
  if (!s) return dflt;
  double v = atof(s);
  return v >= 1 && v <= 1e9 ? (size_t)v : dflt;
}

static int child(int argc, char **argv) {
  const char *collector = bench_flag(argc, argv, "--collector");
  int explicit_close = bench_has_flag(argc, argv, "--explicit");
  size_t nports = size_flag(argc, argv, "--ports", 1000000);
  size_t window = size_flag(argc, argv, "--window", 10000);
  size_t nbytes = size_flag(argc, argv, "--native", 256);
  size_t heap_max = size_flag(argc, argv, "--heap-mb", 64) << 20;
  const fh_type pt = {.name = "finalizers.port", .size = sizeof(port)};
  const fh_type array = {.name = "finalizers.array", .size = 0, .flags = FH_TYPE_REF_ARRAY};
  fh_heap *h = wk_heap_create(who, collector, heap_max);
  if (!h) return 1;
  uint32_t port_type = fh_register_type(h, &pt), array_type = fh_register_type(h, &array);
  fh_thread *t = fh_thread_attach(h);
  if (!port_type || !array_type || !t) {
    fprintf(stderr, "%s: setup: %s\n", who, fh_last_error());
    return 1;
  }
  if (!explicit_close) fh_set_finalizer_notify(h, on_notify, NULL);
  int failures = 0;
  size_t finalized = 0, closed = 0, native0 = native_used(h);
  void **ring = NULL;
  fh_push_root(t, (void **)&ring);
  ring = must(fh_alloc(t, array_type, window * sizeof(void *)), "the ring");

  uint64_t t0 = bench_now_ns();
  for (size_t i = 0; i < nports; i++) {
    void *buf = must(fh_malloc(h, nbytes), "fh_malloc");
    port *p = fh_alloc(t, port_type, sizeof(port));
    if (!p) {
      fh_free(h, buf);
      must(NULL, "a port");
    }
    p->id = i;
    p->native = buf;
    if (!explicit_close && fh_finalizer_attach(t, p, buf) != 0) must(NULL, "fh_finalizer_attach");
    port *old = ring[i % window];
    if (explicit_close && old) {
      fh_free(h, old->native); /* the program closes it itself */
      old->native = NULL;
      closed++;
    }
    fh_write_ref(t, ring, &ring[i % window], p);
    if (atomic_exchange_explicit(&notified, 0, memory_order_acquire))
      finalized += drain(t, h, &failures);
  }
  for (size_t i = 0; i < window; i++) fh_write_ref(t, ring, &ring[i], NULL);
  if (explicit_close) {
    /* the last window: closed by the program too */
    closed += nports < window ? nports : window;
  }
  if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) must(NULL, "fh_collect");
  atomic_store(&notified, 0);
  finalized += drain(t, h, &failures);
  double ms = (double)(bench_now_ns() - t0) / 1e6;
  fh_pop_roots(t, 1);

  size_t handled = explicit_close ? closed : finalized;
  size_t leaked = native_used(h) - native0;
  /* explicit: the last window's buffers belong to dead handles; the count
   * above is what a program would have closed */
  if (!explicit_close && (handled != nports || leaked != 0)) failures++;
  if (!explicit_close && atomic_load(&notifies) == 0) failures++;
  printf("finalizers mode=%s collector=%s ms=%.3f ports=%zu finalized=%zu "
         "finalized_per_s=%.0f notifies=%ld native_left=%zu failures=%d",
         explicit_close ? "explicit" : "finalizer", collector ? collector : "default", ms,
         nports, handled, (double)handled / (ms / 1e3), atomic_load(&notifies),
         explicit_close ? 0 : leaked, failures);
  wk_print_stats(h);
  printf("\n");
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return failures ? 1 : 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: fhbench finalizers [--ports N] [--window W] [--native BYTES]\n"
          "          [--heap-mb MB] [--collectors LIST] [--runs N] [--json FILE] [-v]\n"
          "Finalized native handles (fh_malloc buffers freed by a finalizer, drained\n"
          "when the notify callback fires) against explicit frees of the same handles.\n"
          "  --ports N       handles allocated and dropped (default 1000000)\n"
          "  --window W      handles alive at a time (default 10000)\n"
          "  --native BYTES  native buffer per handle (default 256)\n"
          "  --heap-mb MB    heap_max (default 64)\n"
          "  --collectors L  default,semispace,mark_sweep,mark_compact,concurrent_compact\n"
          "  --runs N        rounds (default 3); figures are medians\n"
          "  --json FILE     also write the results as JSON\n"
          "  -v              print every run on stderr\n");
}

int wl_finalizers(int argc, char **argv) {
  static const char *const with_value[] = {"--ports", "--window", "--native", "--heap-mb",
                                           "--collectors", "--collector", "--runs", "--json",
                                           NULL};
  static const char *const bare[] = {"--child", "--explicit", "-v", "--help", "-h", NULL};
  static const char *const pass_flags[] = {"--ports", "--window", "--native", "--heap-mb", NULL};
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
  static wk_run run;
  memset(&run, 0, sizeof run);
  run.who = who;
  run.runs = runs;
  run.nkeys = 6;
  const char *keys[] = {"ms", "finalized_per_s", "collections", "pause_max_ms",
                        "pause_total_ms", "notifies"};
  for (int k = 0; k < run.nkeys; k++) run.keys[k] = keys[k];
  int idx[WK_NCOLLECTORS][2];
  for (int c = 0; c < WK_NCOLLECTORS; c++)
    for (int m = 0; m < 2; m++) {
      idx[c][m] = -1;
      if (!(mask & (1u << c))) continue;
      char name[48];
      snprintf(name, sizeof name, "%s %s", wk_collector_names[c], m ? "explicit" : "finalizer");
      idx[c][m] = run.n;
      wk_variant *v = wk_variant_add(&run, name);
      wk_variant_self(v, "finalizers");
      wk_variant_arg(v, "--collector");
      wk_variant_arg(v, wk_collector_names[c]);
      if (m) wk_variant_arg(v, "--explicit");
      for (const char *const *f = pass_flags; *f; f++) {
        const char *val = bench_flag(argc, argv, *f);
        if (val) wk_variant_arg(v, *f), wk_variant_arg(v, val);
      }
    }
  int status = wk_run_all(&run, bench_has_flag(argc, argv, "-v"));

  bench_print_header(stdout);
  printf("finalizers: %zu handles of %zu native bytes, %zu alive at a time; %d rounds "
         "(medians)\n",
         size_flag(argc, argv, "--ports", 1000000), size_flag(argc, argv, "--native", 256),
         size_flag(argc, argv, "--window", 10000), runs);
  printf("%-20s %9s %9s %7s %12s %10s %10s %6s %6s %8s\n", "collector", "fin_ms", "expl_ms",
         "ratio", "finalized/s", "max_pause", "pause_tot", "GCs", "GCs_ex", "notifies");
  for (int c = 0; c < WK_NCOLLECTORS; c++) {
    if (idx[c][0] < 0) continue;
    const wk_variant *a = &run.v[idx[c][0]], *b = &run.v[idx[c][1]];
    if (a->failed) {
      printf("%-20s FAILED (exit %d): %s\n", wk_collector_names[c], a->failed, a->why);
      continue;
    }
    printf("%-20s %9.1f %9.1f %6.2fx %12.0f %10.2f %10.1f %6.0f %6.0f %8.0f\n",
           wk_collector_names[c], wk_median(&run, a, "ms"),
           b->failed ? NAN : wk_median(&run, b, "ms"),
           b->failed ? NAN : wk_ratio(&run, a, "ms", b, "ms"),
           wk_median(&run, a, "finalized_per_s"), wk_max(&run, a, "pause_max_ms"),
           wk_median(&run, a, "pause_total_ms"), wk_median(&run, a, "collections"),
           b->failed ? NAN : wk_median(&run, b, "collections"), wk_median(&run, a, "notifies"));
  }
  printf("ratio: median over rounds of fin_ms / expl_ms; pauses in ms (max: worst run)\n");

  if (wk_write_json(&run, "finalizers", argc, argv)) return 1;
  return status;
}
