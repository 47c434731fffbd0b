/* GCBench on faultheap: the allocator interface of gcbench_core.h over the
 * public API, and the child-process entry that fhbench gcbench re-executes
 * itself into (`fhbench gcbench --child [--collector C]`), so faultheap runs
 * in a fresh process exactly like the baseline programs. */
#include "bench.h"

#include <faultheap.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static fh_thread *gcb_thread;
/* --conservative: stack_roots=conservative and no root slots at all, the
 * pointers left in C locals (as the Boehm variant holds them). */
static int gcb_conservative;
static uint32_t gcb_node_type, gcb_doubles_type;

static void *gcb_new_node(void);
static double *gcb_new_doubles(size_t n);
static void gcb_store(void *obj, void **field, void *value);
static void gcb_root(void **slot);
static void gcb_unroot(size_t n);
static void gcb_free_tree(void *tree);
static void gcb_free_doubles(double *a);
static void gcb_poll(void);

#include "gcbench_core.h"
#include "binarytrees_core.h"

static void *checked(void *p, const char *what) {
  if (p == NULL) {
    fprintf(stderr, "gcbench: fh_alloc of %s failed: %s\n", what, fh_last_error());
    exit(1);
  }
  return p;
}

static void *gcb_new_node(void) {
  return checked(fh_alloc(gcb_thread, gcb_node_type, sizeof(gcb_node)), "a node");
}

static double *gcb_new_doubles(size_t n) {
  return checked(fh_alloc(gcb_thread, gcb_doubles_type, n * sizeof(double)),
                 "the double array");
}

static void gcb_store(void *obj, void **field, void *value) {
  fh_write_ref(gcb_thread, obj, field, value);
}

static void gcb_root(void **slot) {
  if (!gcb_conservative) fh_push_root(gcb_thread, slot);
}
static void gcb_unroot(size_t n) {
  if (!gcb_conservative) fh_pop_roots(gcb_thread, n);
}
static void gcb_poll(void) { fh_safepoint(gcb_thread); }
/* garbage is the collector's business */
static void gcb_free_tree(void *tree) { (void)tree; }
static void gcb_free_doubles(double *a) { (void)a; }

const char *gcbench_collector_name(int c) {
  switch (c) {
  case FH_SEMISPACE: return "semispace";
  case FH_MARK_SWEEP: return "mark_sweep";
  case FH_MARK_COMPACT: return "mark_compact";
  case FH_CONCURRENT_COMPACT: return "concurrent_compact";
  case FH_HSPACE_COMPACT: return "hspace_compact";
  case FH_GEN_SEMISPACE: return "gen_semispace";
  default: return "default"; /* chosen by the heap at creation */
  }
}

long gcbench_expected_trees(void) {
  long n = 2; /* the stretch tree and the long-lived tree */
  for (int d = GCB_MIN_DEPTH; d <= GCB_MAX_DEPTH; d += 2) n += 2 * gcb_iterations(d);
  return n;
}

/* Options: the defaults, then FH_OPTIONS from the environment (as
 * fh_heap_create(NULL) would), then --collector, then --conservative. */
static int make_options(fh_options *o, const char *collector, int conservative) {
  char spec[128];
  fh_options_init(o);
  const char *env = getenv("FH_OPTIONS");
  if (env != NULL && *env != '\0' && fh_options_parse(o, env) != 0) {
    fprintf(stderr, "gcbench: FH_OPTIONS: %s\n", fh_last_error());
    return -1;
  }
  if (conservative) o->stack_roots = FH_STACK_ROOTS_CONSERVATIVE;
  if (collector == NULL) return 0;
  snprintf(spec, sizeof spec, "collector=%s", collector);
  if (fh_options_parse(o, spec) != 0) {
    fprintf(stderr, "gcbench: --collector %s: %s\n", collector, fh_last_error());
    return -1;
  }
  return 0;
}

int gcbench_check_options(const char *collector) {
  fh_options o;
  return make_options(&o, collector, 0);
}

long binarytrees_expected_trees(int depth) { return bt_expected_trees(depth); }

int gcbench_faultheap_child(const char *collector, int conservative, int bt_depth) {
  static const uint32_t node_refs[] = {offsetof(gcb_node, left),
                                       offsetof(gcb_node, right)};
  const fh_type node = {.name = "gcbench.node", .size = sizeof(gcb_node),
                        .nrefs = 2, .ref_offsets = node_refs};
  const fh_type doubles = {.name = "gcbench.doubles", .size = 0};
  fh_options o;
  gcb_conservative = conservative;
  if (make_options(&o, collector, conservative) != 0) return 2;

  fh_heap *h = fh_heap_create(&o);
  if (h == NULL) {
    fprintf(stderr, "gcbench: fh_heap_create: %s\n", fh_last_error());
    return 1;
  }
  gcb_node_type = fh_register_type(h, &node);
  gcb_doubles_type = fh_register_type(h, &doubles);
  if (gcb_node_type == 0 || gcb_doubles_type == 0) {
    fprintf(stderr, "gcbench: fh_register_type: %s\n", fh_last_error());
    return 1;
  }
  gcb_thread = fh_thread_attach(h);
  if (gcb_thread == NULL) {
    fprintf(stderr, "gcbench: fh_thread_attach: %s\n", fh_last_error());
    return 1;
  }

  /* FH_BENCH_TRACE=FILE: per-collection samples for fhbench's plots. */
  const char *trace_path = getenv("FH_BENCH_TRACE");
  bench_trace *tr = trace_path ? bench_trace_attach(h) : NULL;
  gcb_result r;
  if (bt_depth > 0)
    bt_run(bt_depth, &r);
  else
    gcb_run(&r);
  if (tr) {
    bench_trace_detach(h, tr);
    if (bench_trace_write(tr, trace_path) != 0) fprintf(stderr, "gcbench: cannot write %s\n", trace_path);
    bench_trace_free(tr);
  }

  fh_stats s;
  fh_get_stats(h, &s);
  printf("%s variant=faultheap collector=%s ms=%.3f verify_ms=%.3f trees=%ld "
         "failures=%d collections=%llu pause_max_ms=%.3f pause_total_ms=%.3f "
         "bytes_allocated=%llu stack_scan_ms=%.3f pinned_last=%llu young=%llu "
         "young_pause_max_ms=%.3f young_pause_total_ms=%.3f full=%llu full_pause_max_ms=%.3f "
         "full_pause_total_ms=%.3f gc_user_ms=%.3f gc_sys_ms=%.3f\n",
         bt_depth > 0 ? "binarytrees" : "gcbench", gcbench_collector_name(o.collector), r.ms,
         r.verify_ms, r.trees, r.failures,
         (unsigned long long)s.collections, (double)s.pause_ns_max / 1e6,
         (double)s.pause_ns_total / 1e6, (unsigned long long)s.bytes_allocated,
         (double)s.stack_scan_ns_total / 1e6, (unsigned long long)s.pinned_last,
         (unsigned long long)s.young_collections, (double)s.young_pause_ns_max / 1e6,
         (double)s.young_pause_ns_total / 1e6, (unsigned long long)s.full_collections,
         (double)s.full_pause_ns_max / 1e6, (double)s.full_pause_ns_total / 1e6,
         (double)s.gc_user_ns / 1e6, (double)s.gc_sys_ns / 1e6);
  fh_thread_detach(gcb_thread);
  fh_heap_destroy(h);
  return r.failures ? 1 : 0;
}
