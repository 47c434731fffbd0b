/* fhbench young: young-collection pauses with a young generation of
 * --young MiB (16) over an old generation of --old MiB (64): issue 17's
 * target is a p99 of at most 1 ms for 16 MiB (Whippet publishes 366 us).
 *
 * Each run builds a fresh heap (growth_factor_pct=110 and
 * min_alloc_trigger=<young>M, so a collection triggers after about --young
 * MiB of allocation), an old binary tree of about --old MiB (24-byte nodes
 * with two references, built bottom-up), and makes it old with one full
 * collection.  Then every mutator (--mutators, 1) allocates nodes: each is
 * put in a rooted ring of RING slots (a reference array that becomes old
 * itself, so each store is an old-to-young reference on a dirty card), and
 * one in --store-every (50) is stored into a leaf of the old tree, one of
 * --targets (1024) leaves spread evenly over it (old-to-young references
 * on cards all over the old generation; each replaces the last one stored
 * there, which dies old or young).  So a young collection finds a ring's
 * worth of survivors per mutator plus what the leaves hold, and scans
 * about as many dirty cards as there are targets (cold: one per 64 KiB of
 * old generation by default) and the rings'.  The run ends after --cycles young
 * collections.
 *
 * Only include/faultheap.h: pauses come from fh_stats.recent_pauses (kind,
 * length, time to safepoint), read after every collection (a gc callback
 * counts them), so none falls out of the ring; where a pause went from
 * fh_stats.last_cycle, read at the same moment (a young cycle's own).
 * Reported, pooled over --runs:
 *   young_p50/p99/max_ms   young pauses, whole (nearest rank)
 *   work_p50/p99/max_ms    the same less the time to safepoint: what the
 *                          collection itself took, which the collector
 *                          controls; on a loaded 2-CPU machine the time to
 *                          stop the other mutators is the scheduler's
 *   stop_p50/p99/max_ms    the time to safepoint alone
 *   cpu_p50/p99_ms         the collecting thread's CPU time per young
 *                          collection (from its start event to its end
 *                          event, so the pause and what precedes it), which
 *                          preemption does not inflate
 *   mark/forward/update_ms medians of the young cycles' parts
 *   full, full_max_ms      full collections in the measured part (the
 *                          policy's: old grew, freed little)
 *   alloc_ns               wall time per node allocated, pauses included */
#include "bench.h"

#include <faultheap.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING 4096        /* slots of each mutator's ring: 128 KiB of nodes */
#define MAX_MUTATORS 8
#define MAX_SAMPLES 100000

typedef struct node {
  struct node *left, *right;
  uint64_t value;
} node;

typedef struct young_run {
  fh_heap *h;
  uint32_t node_type, ring_type;
  int depth;            /* of the old tree */
  long store_every;
  long cycles;
  int target_bits;      /* 2^target_bits old leaves receive the stores */
  _Atomic int done;
  _Atomic uint64_t ends; /* gc end events */
  node *tree;           /* the old tree's root, read by the mutators' roots */
  _Atomic long allocated;
  struct samples *s;   /* the gc callback writes cpu[] there */
} young_run;

typedef struct samples samples;
struct samples {
  double *pause, *work, *stop, *mark, *forward, *update, *cpu;
  size_t n, nparts;
  _Atomic size_t ncpu; /* cpu[]: written by the gc callback */
  size_t full;
  double full_max_ms;
};

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Both events come on the collecting thread: its CPU time from one to the
 * other is what the collection cost it, which preemption by other
 * processes does not inflate (fh_stats' gc_user_ns comes from getrusage,
 * whose thread figures advance by scheduler ticks: no use for a 1 ms
 * pause). */
static _Thread_local uint64_t cpu_at_start;

static void on_gc(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  young_run *r = user;
  if (!e->end) {
    cpu_at_start = thread_cpu_ns();
    return;
  }
  if (e->young && r->s) {
    size_t i = atomic_fetch_add(&r->s->ncpu, 1);
    if (i < MAX_SAMPLES) r->s->cpu[i] = (thread_cpu_ns() - cpu_at_start) / 1e6;
  }
  atomic_fetch_add(&r->ends, 1);
}

static node *make_tree(young_run *r, fh_thread *t, int depth) {
  node *n = NULL, *l = NULL, *rt = NULL;
  if (depth > 0) {
    l = make_tree(r, t, depth - 1);
    fh_push_root(t, (void **)&l);
    rt = make_tree(r, t, depth - 1);
    fh_push_root(t, (void **)&rt);
  }
  n = fh_alloc(t, r->node_type, sizeof(node));
  if (!n) {
    fprintf(stderr, "young: %s\n", fh_last_error());
    exit(1);
  }
  if (depth > 0) {
    fh_write_ref(t, n, (void **)&n->left, l);
    fh_write_ref(t, n, (void **)&n->right, rt);
    fh_pop_roots(t, 2);
  }
  return n;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* Leaf k of 2^tb, spread evenly over the 2^depth leaves. */
static node *target_leaf(node *root, int depth, int tb, uint64_t k) {
  uint64_t leaf = depth > tb ? k << (depth - tb) : k >> (tb - depth);
  node *x = root;
  for (int d = depth - 1; d >= 0 && x; d--) x = (leaf >> d) & 1 ? x->right : x->left;
  return x;
}

typedef struct mutator_arg {
  young_run *r;
  int index;
  samples *s; /* mutator 0 reads the pauses */
} mutator_arg;

static void collect_pauses(young_run *r, samples *s, uint64_t *seen_pauses, long *young_seen) {
  fh_stats st;
  fh_get_stats(r->h, &st);
  uint64_t first = *seen_pauses;
  if (st.pauses > first + FH_PAUSE_RECENT) first = st.pauses - FH_PAUSE_RECENT; /* lost: rare */
  int last_young = 0;
  for (uint64_t i = first; i < st.pauses; i++) {
    const fh_pause_record *p = &st.recent_pauses[i % FH_PAUSE_RECENT];
    if (p->kind == FH_PAUSE_YOUNG) {
      if (s->n < MAX_SAMPLES) {
        s->pause[s->n] = p->ns / 1e6;
        s->stop[s->n] = p->stop_ns / 1e6;
        s->work[s->n] = (p->ns - p->stop_ns) / 1e6;
        s->n++;
      }
      (*young_seen)++;
      last_young = 1;
    } else {
      s->full++;
      if (p->ns / 1e6 > s->full_max_ms) s->full_max_ms = p->ns / 1e6;
      last_young = 0;
    }
  }
  /* last_cycle is the last compacting cycle's: a young one's when the
   * last pause was young (gen_semispace has none: zeros, not reported). */
  if (last_young && st.last_cycle.mark_ns && s->nparts < MAX_SAMPLES) {
    s->mark[s->nparts] = st.last_cycle.mark_ns / 1e6;
    s->forward[s->nparts] = st.last_cycle.forward_ns / 1e6;
    s->update[s->nparts] = st.last_cycle.update_ns / 1e6;
    s->nparts++;
  }
  *seen_pauses = st.pauses;
}

static void *mutator(void *arg) {
  mutator_arg *a = arg;
  young_run *r = a->r;
  fh_thread *t = fh_thread_attach(r->h);
  if (!t) {
    fprintf(stderr, "young: fh_thread_attach: %s\n", fh_last_error());
    exit(1);
  }
  node *tree = r->tree, *n = NULL;
  void **ring = NULL;
  fh_push_root(t, (void **)&tree);
  fh_push_root(t, (void **)&ring);
  ring = fh_alloc(t, r->ring_type, RING * sizeof(void *));
  if (!ring) {
    fprintf(stderr, "young: %s\n", fh_last_error());
    exit(1);
  }
  uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(a->index + 1);
  uint64_t seen_ends = atomic_load(&r->ends), seen_pauses = 0;
  long young_seen = 0;
  if (a->s) {
    fh_stats st;
    fh_get_stats(r->h, &st);
    seen_pauses = st.pauses;
  }
  long count = 0;
  while (!atomic_load_explicit(&r->done, memory_order_relaxed)) {
    n = fh_alloc(t, r->node_type, sizeof(node));
    if (!n) {
      fprintf(stderr, "young: %s\n", fh_last_error());
      exit(1);
    }
    n->value = (uint64_t)count;
    fh_write_ref(t, ring, &ring[count % RING], n);
    if (count % r->store_every == 0) {
      uint64_t k = xorshift(&rng) & ((UINT64_C(1) << r->target_bits) - 1);
      node *leaf = target_leaf(tree, r->depth, r->target_bits, k);
      if (leaf) fh_write_ref(t, leaf, (void **)&leaf->left, n);
    }
    count++;
    if (a->s) {
      uint64_t e = atomic_load_explicit(&r->ends, memory_order_relaxed);
      if (e != seen_ends) {
        seen_ends = e;
        collect_pauses(r, a->s, &seen_pauses, &young_seen);
        if (young_seen >= r->cycles) atomic_store(&r->done, 1);
      }
    }
  }
  atomic_fetch_add(&r->allocated, count);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  return NULL;
}

static int run_once(const char *collector, int old_mib, int young_mib, int mutators, long cycles,
                    long store_every, int target_bits, samples *s, double *alloc_ns) {
  char extra[128];
  snprintf(extra, sizeof extra, "growth_factor_pct=110,min_alloc_trigger=%dM", young_mib);
  size_t heap_max = (size_t)(4 * (old_mib + young_mib * mutators)) << 20;
  if (heap_max < (size_t)256 << 20) heap_max = (size_t)256 << 20;
  young_run r;
  memset(&r, 0, sizeof r);
  r.h = wk_heap_create_with("young", collector, heap_max, extra);
  r.s = s;
  if (!r.h) return -1;
  r.node_type = fh_register_type(
      r.h, &(fh_type){.name = "young.node", .size = sizeof(node), .nrefs = 2,
                      .ref_offsets = (const uint32_t[]){offsetof(node, left), offsetof(node, right)}});
  r.ring_type = fh_register_type(r.h, &(fh_type){.name = "young.ring", .size = 0,
                                                  .flags = FH_TYPE_REF_ARRAY});
  if (!r.node_type || !r.ring_type) {
    fprintf(stderr, "young: fh_register_type: %s\n", fh_last_error());
    return -1;
  }
  /* 32 bytes a node with its header: 2^(depth+1) - 1 nodes */
  r.depth = 0;
  while (((size_t)2 << (r.depth + 1)) * 32 <= ((size_t)old_mib << 20)) r.depth++;
  r.store_every = store_every;
  r.target_bits = target_bits < r.depth ? target_bits : r.depth;
  r.cycles = cycles;
  fh_thread *t = fh_thread_attach(r.h);
  r.tree = make_tree(&r, t, r.depth);
  fh_push_root(t, (void **)&r.tree);
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_gc_wait(r.h);
  fh_set_gc_callback(r.h, on_gc, &r);
  /* The main thread stays attached (its root holds the tree) in a
   * blocking region while the mutators run. */
  pthread_t th[MAX_MUTATORS];
  mutator_arg args[MAX_MUTATORS];
  uint64_t t0 = bench_now_ns();
  fh_enter_blocking(t);
  for (int i = 0; i < mutators; i++) {
    args[i] = (mutator_arg){&r, i, i == 0 ? s : NULL};
    if (pthread_create(&th[i], NULL, mutator, &args[i]) != 0) {
      fprintf(stderr, "young: pthread_create failed\n");
      exit(1);
    }
  }
  for (int i = 0; i < mutators; i++) pthread_join(th[i], NULL);
  fh_leave_blocking(t);
  double ns = (double)(bench_now_ns() - t0);
  long allocated = atomic_load(&r.allocated);
  *alloc_ns = allocated ? ns / (double)allocated * mutators : 0;
  fh_set_gc_callback(r.h, NULL, NULL);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(r.h);
  return 0;
}

static double pct(const double *v, size_t n, double p) { return n ? bench_percentile(v, n, p) : 0; }

int wl_young(int argc, char **argv) {
  static const char *const with_value[] = {"--collector", "--old",         "--young", "--mutators",
                                           "--cycles",    "--store-every", "--runs",  "--json",
                                           "--targets",   NULL};
  static const char *const bare[] = {"--help", "-h", NULL};
  if (bench_has_flag(argc, argv, "--help") || bench_has_flag(argc, argv, "-h") ||
      bench_check_flags(argc, argv, with_value, bare) != 0) {
    printf("usage: fhbench young [--collector C] [--old MiB] [--young MiB] [--mutators N]\n"
           "                     [--cycles N] [--store-every K] [--targets N] [--runs N]\n"
           "                     [--json FILE]\n"
           "Young-collection pauses: --young MiB (16) of allocation between collections\n"
           "over an old binary tree of --old MiB (64); every node goes into a rooted\n"
           "ring of %d slots, one in K (50) into one of N (1024, a power of 2) old\n"
           "leaves spread over the tree.  --cycles (100)\n"
           "young collections per run, --runs (3) runs pooled, --mutators (1) threads.\n"
           "Pauses whole, less their time to safepoint (work), and that time (stop);\n"
           "the young cycles' mark, forward and update parts (medians).  Collectors\n"
           "with young collections: the default (concurrent_compact), mark_compact,\n"
           "gen_semispace.\n",
           RING);
    return 0;
  }
  const char *collector = bench_flag(argc, argv, "--collector");
  if (!collector) collector = "default";
  const char *v;
  int old_mib = (v = bench_flag(argc, argv, "--old")) ? atoi(v) : 64;
  int young_mib = (v = bench_flag(argc, argv, "--young")) ? atoi(v) : 16;
  int mutators = (v = bench_flag(argc, argv, "--mutators")) ? atoi(v) : 1;
  long cycles = (v = bench_flag(argc, argv, "--cycles")) ? atol(v) : 100;
  long store_every = (v = bench_flag(argc, argv, "--store-every")) ? atol(v) : 50;
  long targets = (v = bench_flag(argc, argv, "--targets")) ? atol(v) : 1024;
  int target_bits = 0;
  while (target_bits < 30 && (1L << target_bits) < targets) target_bits++;
  int runs = bench_runs_flag(argc, argv, 3);
  if (old_mib < 1 || young_mib < 1 || mutators < 1 || mutators > MAX_MUTATORS || cycles < 1 ||
      store_every < 1 || runs < 0 || targets < 1 || (1L << target_bits) != targets) {
    fprintf(stderr, "young: bad flags (see fhbench young --help)\n");
    return 2;
  }
  samples s;
  memset(&s, 0, sizeof s);
  double **arrays[] = {&s.pause, &s.work, &s.stop, &s.mark, &s.forward, &s.update, &s.cpu};
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++)
    if (!(*arrays[i] = calloc(MAX_SAMPLES, sizeof(double)))) return 1;
  double alloc_ns[1000];
  for (int k = 0; k < runs; k++) {
    bench_progress("young: run %d of %d", k + 1, runs);
    if (run_once(collector, old_mib, young_mib, mutators, cycles, store_every, target_bits, &s,
                 &alloc_ns[k]) < 0)
      return 1;
  }
  bench_progress_done();
  double y50 = pct(s.pause, s.n, 50), y99 = pct(s.pause, s.n, 99), ymax = pct(s.pause, s.n, 100);
  double w50 = pct(s.work, s.n, 50), w99 = pct(s.work, s.n, 99), wmax = pct(s.work, s.n, 100);
  double s50 = pct(s.stop, s.n, 50), s99 = pct(s.stop, s.n, 99), smax = pct(s.stop, s.n, 100);
  double mk = pct(s.mark, s.nparts, 50), fw = pct(s.forward, s.nparts, 50),
         up = pct(s.update, s.nparts, 50);
  double ans = bench_median(alloc_ns, (size_t)runs);
  size_t ncpu = atomic_load(&s.ncpu) < MAX_SAMPLES ? atomic_load(&s.ncpu) : MAX_SAMPLES;
  double c50 = pct(s.cpu, ncpu, 50), c99 = pct(s.cpu, ncpu, 99);
  bench_print_header(stdout);
  printf("young: %d MiB young over %d MiB old, %d mutator(s), 1 in %ld nodes into %ld old "
         "leaves; %d runs of %ld young collections, pooled\n",
         young_mib, old_mib, mutators, store_every, targets, runs, cycles);
  printf("%-20s %6s %-22s %-22s %-22s %-14s %-20s %5s %8s\n", "collector", "young",
         "pause p50/p99/max ms", "work p50/p99/max", "stop p50/p99/max", "cpu p50/p99",
         "mark/fwd/update ms", "full", "ns/node");
  char a[32], b[32], c[32], d[32], e[32];
  snprintf(a, sizeof a, "%.3f/%.3f/%.2f", y50, y99, ymax);
  snprintf(b, sizeof b, "%.3f/%.3f/%.2f", w50, w99, wmax);
  snprintf(c, sizeof c, "%.3f/%.3f/%.2f", s50, s99, smax);
  snprintf(d, sizeof d, "%.3f/%.3f/%.3f", mk, fw, up);
  snprintf(e, sizeof e, "%.3f/%.3f", c50, c99);
  printf("%-20s %6zu %-22s %-22s %-22s %-14s %-20s %5zu %8.1f\n", collector, s.n, a, b, c, e, d,
         s.full, ans);
  const char *json = bench_flag(argc, argv, "--json");
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      perror(json);
      return 1;
    }
    fprintf(f, "{\"workload\":\"young\",\"machine\":");
    bench_json_machine(f);
    fprintf(f, ",\"collector\":");
    bench_json_string(f, collector);
    fprintf(f,
            ",\"old_mib\":%d,\"young_mib\":%d,\"mutators\":%d,\"store_every\":%ld,\"targets\":%ld,"
            "\"runs\":%d,"
            "\"young\":%zu,\"young_p50_ms\":%.4f,\"young_p99_ms\":%.4f,\"young_max_ms\":%.4f,"
            "\"work_p50_ms\":%.4f,\"work_p99_ms\":%.4f,\"work_max_ms\":%.4f,"
            "\"stop_p50_ms\":%.4f,\"stop_p99_ms\":%.4f,\"stop_max_ms\":%.4f,"
            "\"cpu_p50_ms\":%.4f,\"cpu_p99_ms\":%.4f,\"mark_ms\":%.4f,\"forward_ms\":%.4f,\"update_ms\":%.4f,"
            "\"full\":%zu,\"full_max_ms\":%.4f,\"alloc_ns\":%.2f}\n",
            old_mib, young_mib, mutators, store_every, targets, runs, s.n, y50, y99, ymax, w50, w99, wmax,
            s50, s99, smax, c50, c99, s.nparts ? mk : 0, s.nparts ? fw : 0, s.nparts ? up : 0, s.full,
            s.full_max_ms, ans);
    fclose(f);
  }
  for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) free(*arrays[i]);
  return 0;
}
