/* fhbench cmark: collector=mark_sweep's pauses with concurrent marking
 * (concurrent_mark=1) against stop-the-world marking (concurrent_mark=0),
 * on fhbench pause's heap: --live MiB of 64-byte nodes in a rooted table,
 * each followed by a dead node, and --mutators threads that read and
 * check random nodes, relink them through the write barrier (fast: every
 * other operation is a reference store), allocate a garbage node every
 * 16th operation and poll the safepoint, while the main thread runs one
 * triggered cycle (the cycle a mutator's allocation trigger would start).
 *
 * Reported per mode (medians over --runs, max pause: the longest of all):
 *   max_pause_ms   longest pause of the cycle (fh_stats.pause_ns_max)
 *   remark_ms      the remark pause (concurrent only)
 *   max_stall_ms   largest gap between a mutator's consecutive operations
 *   cycle_ms       trigger to the end of marking (the sweep runs after)
 *   mark_mbps_cpu  marking throughput, MB of live data per CPU-second of
 *                  the marking thread: the concurrent marker's CPU time, or
 *                  stop-the-world the pause (one thread marks)
 *   marker_ms      the concurrent marker's wall time
 *   roots_ms       the initial (roots) pause (concurrent only)
 *   stop_ms        the longest time to safepoint among the cycle's pauses
 *                  (included in them: waiting for the mutators to park) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "collectors/collector.h"
#include "heap/heap.h"

typedef struct cnode {
  struct cnode *next, *other;
  uint64_t value, check;
  uint64_t pad[3];
} cnode; /* 56 payload bytes + 8 header = 64 */

static uint64_t check_of(uint64_t v) { return v * 0x9E3779B97F4A7C15ull + 12345; }

typedef struct cshared {
  fh_heap *h;
  void **table;
  size_t n;
  uint32_t node_ty;
  _Atomic int phase; /* 0 warm-up, 1 measuring, 2 stop */
  _Atomic int ready;
  int mutators;
} cshared;

typedef struct cmut {
  cshared *s;
  int id;
  uint64_t max_gap_ns;
  int bad;
} cmut;

static void *cmutator(void *p) {
  cmut *m = p;
  cshared *s = m->s;
  fh_thread *t = fh_thread_attach(s->h);
  uint64_t x = (uint64_t)(m->id + 1) * 2654435761u + 1, ops = 0;
  uint64_t last = bench_now_ns();
  atomic_fetch_add(&s->ready, 1);
  while (atomic_load_explicit(&s->phase, memory_order_relaxed) < 2) {
    fh_safepoint(t);
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t k = (size_t)s->mutators;
    size_t i = (size_t)(x % (s->n / k)) * k + (size_t)m->id;
    cnode *n = s->table[i];
    if (n->check != check_of(n->value)) m->bad = 1;
    if (x & 1) {
      n->value++;
      n->check = check_of(n->value);
    } else {
      fh_write_ref(t, n, (void **)&n->other, s->table[(x >> 20) % s->n]);
    }
    if ((++ops & 15) == 0) (void)fh_alloc(t, s->node_ty, sizeof(cnode)); /* garbage */
    uint64_t now = bench_now_ns();
    if (atomic_load_explicit(&s->phase, memory_order_relaxed) == 1 && now - last > m->max_gap_ns)
      m->max_gap_ns = now - last;
    last = now;
  }
  fh_thread_detach(t);
  return NULL;
}

typedef struct cres {
  double max_pause_ms, remark_ms, max_stall_ms, cycle_ms, mark_mbps_cpu, marker_ms, roots_ms,
      stop_ms;
} cres;

static int crun(int concurrent, size_t live_mib, int mutators, cres *r) {
  memset(r, 0, sizeof *r);
  char spec[256];
  snprintf(spec, sizeof spec, "collector=mark_sweep,heap_max=%zuM,min_alloc_trigger=%zuM,"
           "concurrent_mark=%d", live_mib * 4 + 64, live_mib * 3, concurrent);
  fh_options o;
  fh_options_init(&o);
  const char *env = getenv("FH_OPTIONS");
  if (fh_options_parse(&o, spec) < 0 || (env && *env && fh_options_parse(&o, env) < 0)) return -1;
  fh_heap *h = fh_heap_create(&o);
  if (!h) return -1;
  static const uint32_t refs[] = {0, 8};
  cshared s = {.h = h, .mutators = mutators};
  s.node_ty = fh_register_type(h, &(fh_type){.name = "cnode", .size = sizeof(cnode), .nrefs = 2,
                                             .ref_offsets = refs});
  uint32_t arr_ty = fh_register_type(h, &(fh_type){.name = "table", .flags = FH_TYPE_REF_ARRAY});
  s.n = (live_mib << 20) / 72;
  fh_root_add(h, (void **)&s.table);
  fh_thread *t = fh_thread_attach(h);
  s.table = fh_alloc(t, arr_ty, s.n * sizeof(void *));
  if (!s.table) return -1;
  for (size_t i = 0; i < s.n; i++) {
    cnode *n = fh_alloc(t, s.node_ty, sizeof(cnode));
    if (!n || !fh_alloc(t, s.node_ty, sizeof(cnode))) return -1;
    n->value = i;
    n->check = check_of(i);
    fh_write_ref(t, s.table, &s.table[i], n);
    if (i) fh_write_ref(t, n, (void **)&n->next, s.table[(i * 7919) % i]);
  }
  pthread_t th[8];
  cmut ms[8];
  for (int i = 0; i < mutators; i++) {
    ms[i] = (cmut){.s = &s, .id = i};
    pthread_create(&th[i], NULL, cmutator, &ms[i]);
  }
  while (atomic_load(&s.ready) < mutators) usleep(100);
  usleep(20000);
  atomic_store(&s.phase, 1);
  usleep(5000);
  fh_stats before;
  fh_get_stats(h, &before);
  uint64_t g0 = bench_now_ns();
  int rc = gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_ALLOC_TRIGGER, h->collections);
  /* Blocked while the marker runs: its remark stops the world. */
  fh_enter_blocking(t);
  while (__atomic_load_n(&h->cm, __ATOMIC_ACQUIRE)) usleep(100);
  uint64_t g1 = bench_now_ns();
  fh_gc_wait(h);
  fh_leave_blocking(t);
  usleep(5000);
  atomic_store(&s.phase, 2);
  int bad = 0;
  for (int i = 0; i < mutators; i++) {
    pthread_join(th[i], NULL);
    bad |= ms[i].bad;
    if (ms[i].max_gap_ns / 1e6 > r->max_stall_ms) r->max_stall_ms = ms[i].max_gap_ns / 1e6;
  }
  fh_stats st;
  fh_get_stats(h, &st);
  r->max_pause_ms = st.pause_ns_max / 1e6;
  /* The cycle's pauses: the initial (roots) pause, and the longest time
   * to safepoint of any of them (part of each pause). */
  for (uint64_t i = st.pauses > FH_PAUSE_RECENT ? st.pauses - FH_PAUSE_RECENT : 0; i < st.pauses;
       i++) {
    const fh_pause_record *p = &st.recent_pauses[i % FH_PAUSE_RECENT];
    if (p->kind == FH_PAUSE_ROOTS && p->ns / 1e6 > r->roots_ms) r->roots_ms = p->ns / 1e6;
    if (p->stop_ns / 1e6 > r->stop_ms) r->stop_ms = p->stop_ns / 1e6;
  }
  r->remark_ms = st.remark_ns_max / 1e6;
  r->cycle_ms = (g1 - g0) / 1e6;
  r->marker_ms = (st.marker_ns - before.marker_ns) / 1e6;
  double live_mb = (double)s.n * 72 / 1e6;
  uint64_t cpu = concurrent ? st.marker_cpu_ns - before.marker_cpu_ns : st.pause_ns_total;
  r->mark_mbps_cpu = cpu ? live_mb / (cpu / 1e9) : 0;
  fh_root_remove(h, (void **)&s.table);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  if (rc < 0 || bad) fprintf(stderr, "cmark: %s\n", bad ? "checksum mismatch" : fh_last_error());
  return rc < 0 || bad ? -1 : 0;
}

static int dcmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int wl_cmark(int argc, char **argv) {
  size_t live = 256;
  int runs = 3, mutators = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--live") && i + 1 < argc) live = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--mutators") && i + 1 < argc) mutators = atoi(argv[++i]);
    else {
      printf("usage: fhbench cmark [--live MiB] [--runs N] [--mutators N]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > 15 || mutators < 1 || mutators > 8) return 2;
  printf("cmark: mark_sweep, %zu MiB live, %d mutators, %d runs (medians; max pause: of all)\n",
         live, mutators, runs);
  printf("%-22s %12s %9s %9s %8s %12s %9s %13s %9s\n", "mode", "max_pause_ms", "roots_ms",
         "remark_ms", "stop_ms", "max_stall_ms", "cycle_ms", "mark_mbps_cpu", "marker_ms");
  for (int c = 1; c >= 0; c--) {
    double v[8][15];
    double worst = 0;
    for (int r = 0; r < runs; r++) {
      cres x;
      if (crun(c, live, mutators, &x) < 0) return 1;
      double a[8] = {x.max_pause_ms, x.remark_ms, x.max_stall_ms, x.cycle_ms, x.mark_mbps_cpu,
                     x.marker_ms, x.roots_ms, x.stop_ms};
      for (int k = 0; k < 8; k++) v[k][r] = a[k];
      if (x.max_pause_ms > worst) worst = x.max_pause_ms;
    }
    for (int k = 0; k < 8; k++) qsort(v[k], (size_t)runs, sizeof(double), dcmp);
    printf("%-22s %12.3f %9.3f %9.3f %8.3f %12.3f %9.1f %13.0f %9.1f\n",
           c ? "concurrent_mark=1" : "concurrent_mark=0", worst, v[6][runs / 2], v[1][runs / 2],
           v[7][runs / 2], v[2][runs / 2], v[3][runs / 2], v[4][runs / 2], v[5][runs / 2]);
  }
  return 0;
}
