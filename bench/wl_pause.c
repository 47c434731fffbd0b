/* fhbench pause: how long mutators stop while a fragmented heap is
 * compacted, stop-the-world (mark_compact) against concurrent compaction in
 * both fault modes (SIGBUS handler, fault-handler thread).
 *
 * Each run builds a fresh heap holding about --live MiB of live data: a
 * rooted table of nodes, each node linked to another and every one followed
 * by a dead node of the same size, so half of the moving space is garbage
 * interleaved with live objects.  Two mutator threads then read and write
 * random live nodes (checking a per-node checksum, relinking through the
 * write barrier), polling the safepoint and timestamping every operation,
 * while the main thread runs one collection of the kind under test.
 * Each collector's pauses, pooled over every run (fh_stats.recent_pauses,
 * those of the measured cycle):
 *   max_pause_ms   the longest single pause of all runs (not a median of
 *                  per-run maxima); p50_pause_ms, p99_pause_ms (nearest rank)
 *   remark_ms      the longest remark pause (0, remark_pauses 0: marking is
 *                  not concurrent yet), flip_ms the longest flip pause
 *                  (concurrent_compact's pause that flips the spaces; 0 for
 *                  the others)
 *   mmu_1ms, mmu_10ms, mmu_100ms   minimum mutator utilisation (fractions)
 *                  over windows of 1, 10 and 100 ms, the least of all runs
 *                  and mutators: see "Utilisation" below
 *   pause_mmu_*    the same from the recorded pauses alone
 *   max_stop_ms    the longest time to safepoint (fh_pause_record.stop_ns:
 *                  until both mutators had parked) of any pause
 *   mean_util      the mutators' mean utilisation over the span (median of
 *                  the runs): the ceiling of every MMU, which on a shared
 *                  machine is what the scheduler left them
 * Reported per collector (medians over --runs):
 *   pause_ms       longest stop-the-world pause of the run, median
 *   max_stall_ms   largest gap between a mutator's consecutive operations
 *                  during the collection (pauses, fault service, scheduling)
 *   gc_ms          collection start to the end of its concurrent phase
 *   faults, fault_p50_us, fault_p99_us   mutator faults served, and their
 *                  service time in the resolver (concurrent kinds)
 *   flip_kernel_us mremap + UFFDIO_REGISTER inside the pause
 *   worker_gbps    GC worker throughput (destination bytes built / busy time);
 *                  stop-the-world: live bytes / build time / builder threads
 *   cpu_gbps       the same per CPU-second the GC thread(s) got: the two
 *                  mutators spin on the two CPUs, so the concurrent worker
 *                  gets about two thirds of one
 *   all_gbps       live bytes per CPU-second of the cycle's compaction
 *                  work after the pause: the worker's loop, the from-space
 *                  releaser, and page building in fault handlers (resolver
 *                  wall time, so an upper bound of their CPU time); not the
 *                  end of the phase (the last partial batch and pinned
 *                  pages, a few MiB).  For stop-the-world the builders' CPU
 *                  time (they release from-space themselves)
 *   rss_peak_mib   resident memory sampled during the cycle (a sampler
 *                  thread, from before the pause to the end of the phase)
 *   over_mib       the peak of (resident memory minus the helper markers'
 *                  bitmaps, which exist only from marking until the phase
 *                  starts) minus resident memory before the cycle minus the
 *                  cycle's other side tables (bitmaps, offsets, ledger):
 *                  what compaction itself added, against max(8 MiB, 5% of
 *                  live).  mark_sweep reports no side tables (last_cycle
 *                  is the compactor's), so its figure holds its mark
 *                  bitmaps and sweep state
 *
 * mark_sweep_cmark and concurrent_compact_cmark run
 * with concurrent_mark=1 the cycle the trigger would start
 * (FH_COLLECT_TRIGGERED: an explicit kind marks with the world stopped);
 * their pauses are the initial (roots) pause and the remark, which for
 * concurrent_compact holds the flip.
 *
 * Utilisation.  MMU is computed from the mutators' operation timestamps,
 * not from the recorded pauses: a mutator makes no progress while the
 * world is stopped, but also while it waits for a page the concurrent
 * compactor has not built yet (fault service), or for a CPU the GC threads
 * took, and a concurrent collector must be charged for those too.  Each
 * mutator records every gap longer than STALL_NS between two consecutive
 * operations as a stall (an operation takes well under a microsecond, so a
 * longer gap means it was stopped); MMU(w) is then the least fraction of a
 * window of width w without a stall of that mutator (fh_mmu), the least
 * over the mutators.  Windows lie inside the measured span (from 5 ms
 * before the collection until 100 ms after its concurrent phase ended, so
 * a 100 ms window fits).  Scheduling noise on a shared machine counts
 * against it too: pause_mmu_* (from the pauses only) is the bound the
 * collector's pauses alone set. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "faultheap.h"

typedef struct pnode {
  struct pnode *next, *other;
  uint64_t value, check;
  uint64_t pad[3];
} pnode; /* 56 payload bytes + 8 header = 64 */

static uint64_t check_of(uint64_t v) { return v * 0x9E3779B97F4A7C15ull + 12345; }

/* K_MS collects with an explicit fh_collect, which marks with the world
 * stopped.  The *_concurrent_mark kinds run with concurrent_mark=1 the
 * cycle the allocation trigger would start (FH_COLLECT_TRIGGERED): roots
 * in a short pause, marking while the mutators run, a remark pause that
 * ends it (concurrent_compact's flip is inside its remark).  K_CC_CM runs
 * with generational=0 (the trigger's first cycle on a fresh generational
 * heap is young, stop-the-world) and room for a flip's two copies (at the
 * other kinds' heap_max it would slide, in the remark). */
enum { K_STW, K_SIGBUS, K_HANDLER, K_MS, K_MS_CM, K_CC_CM, NKINDS };
static const char *const kind_names[NKINDS] = {
    "mark_compact", "concurrent_compact", "concurrent_compact_handler", "mark_sweep",
    "mark_sweep_cmark", "concurrent_compact_cmark"};
static int concurrent_mark_kind(int k) { return k == K_MS_CM || k == K_CC_CM; }
static int concurrent_kind(int k) { return k == K_SIGBUS || k == K_HANDLER || k == K_CC_CM; }

enum { MAX_RUN_PAUSES = 16 };
/* A gap between two operations longer than this is a stall (see above). */
#define STALL_NS 2000u
/* Stalls a mutator records per run (pretouched: they do not count in the
 * cycle's resident memory); more are dropped and reported. */
enum { MAX_STALLS = 1 << 17 };
static const uint64_t mmu_windows_ns[3] = {1000000, 10000000, 100000000};
/* -v: each run's stalls longer than this are listed with its pauses. */
#define LIST_STALL_NS 1000000u
static int verbose;
/* --kinds: the rows run and printed. */
static int kind_wanted[NKINDS];

typedef struct run_result {
  double max_pause_ms, max_stall_ms, gc_ms, faults, fault_p50_us, fault_p99_us, flip_kernel_us,
      worker_gbps, rss_peak_mib, rss_before_mib, live_mib, mark_ms, stw_build_gbps, cpu_gbps,
      table_mib, over_mib, all_gbps, release_cpu_ms;
  double mmu[3], pause_mmu[3], mean_util;
  unsigned npauses;
  fh_pause_record pauses[MAX_RUN_PAUSES]; /* the measured cycle's */
  int stalls_dropped;
} run_result;

typedef struct shared {
  fh_heap *h;
  void **table; /* global root */
  size_t n;
  _Atomic int phase; /* 0 warm-up, 1 measuring, 2 stop */
  _Atomic int ready;
  int mutators;
  int bad;
} shared;

typedef struct mut {
  shared *s;
  unsigned seed;
  int id;
  uint64_t max_gap_ns, ops;
  int bad;
  fh_interval *stalls; /* MAX_STALLS */
  size_t nstalls, dropped;
} mut;

static void *mutator(void *p) {
  mut *m = p;
  shared *s = m->s;
  fh_thread *t = fh_thread_attach(s->h);
  uint64_t x = m->seed * 2654435761u + 1;
  uint64_t last = bench_now_ns();
  atomic_fetch_add(&s->ready, 1);
  while (atomic_load_explicit(&s->phase, memory_order_relaxed) < 2) {
    fh_safepoint(t);
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    void **table = s->table;
    /* Each mutator writes only its own share of the nodes (index modulo
     * the mutator count), so a checksum mismatch can only come from the
     * collector. */
    size_t k = (size_t)s->mutators;
    size_t i = (size_t)(x % (s->n / k)) * k + (size_t)m->id;
    pnode *n = table[i];
    if (n->check != check_of(n->value)) m->bad = 1;
    if (x & 1) {
      n->value++;
      n->check = check_of(n->value);
    } else {
      pnode *o = table[(x >> 20) % s->n]; /* any node: only read */
      fh_write_ref(t, n, (void **)&n->other, o);
    }
    uint64_t now = bench_now_ns();
    if (atomic_load_explicit(&s->phase, memory_order_relaxed) == 1) {
      if (now - last > m->max_gap_ns) m->max_gap_ns = now - last;
      if (now - last > STALL_NS) {
        if (m->nstalls < MAX_STALLS)
          m->stalls[m->nstalls++] = (fh_interval){last, now};
        else
          m->dropped++;
      }
    }
    last = now;
    m->ops++;
  }
  fh_thread_detach(t);
  return NULL;
}

typedef struct rss_sampler {
  fh_heap *h;
  _Atomic int stop;
  _Atomic int collected; /* fh_collect returned */
  size_t peak;          /* resident memory */
  size_t peak_sans_markers; /* resident memory minus helper markers' bitmaps */
} rss_sampler;

/* Samples until the cycle is over: fh_collect returned and no concurrent
 * phase is open.  Not after: the GC worker then faults in the next
 * allocation window (up to 32 MiB), which belongs to the mutators' next
 * allocations, not to this cycle. */
static void *sample_rss(void *arg) {
  rss_sampler *s = arg;
  while (!atomic_load(&s->stop) &&
         !(atomic_load(&s->collected) && !fh_gc_phase_open(s->h))) {
    /* The smaller of two readings around the RSS one: a release or a
     * populate in between then makes the figure larger, never smaller. */
    size_t x = fh_gc_transient_bytes(s->h);
    size_t rss = bench_rss_bytes(), x2 = fh_gc_transient_bytes(s->h);
    if (x2 < x) x = x2;
    if (rss > s->peak) s->peak = rss;
    if (rss - (x < rss ? x : rss) > s->peak_sans_markers) s->peak_sans_markers = rss - x;
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

enum { MAX_MUTATORS = 8 };

/* Blocked (the remark stops the world without us): until the cycle's
 * remark pause has run, after which fh_gc_wait covers its sweep. */
static int wait_for_remark(fh_heap *h) {
  fh_stats st;
  fh_get_stats(h, &st);
  if (!st.concurrent_marks) return -1; /* the cycle stopped the world */
  for (int i = 0; i < 20000; i++) {
    fh_get_stats(h, &st);
    /* The remark, and a split one's flip pause (this thread stays
     * attached while it joins the mutators: the cycle must be over). */
    if (st.concurrent_marks_done == st.concurrent_marks) return 0;
    /* 1 ms: each wake-up of this thread preempts a mutator (a stall). */
    usleep(1000);
  }
  return -1;
}

/* -v: where a run's long stalls fall against its pauses (times from the
 * start of the collection), to tell pauses from fault service and from
 * the scheduler. */
static void list_stalls(int kind, const mut *ms, int mutators, const run_result *r, uint64_t g0) {
  fprintf(stderr, "%s: pauses", kind_names[kind]);
  for (unsigned i = 0; i < r->npauses; i++)
    fprintf(stderr, " [%.2f +%.3f]", ((double)r->pauses[i].start_ns - (double)g0) / 1e6,
            r->pauses[i].ns / 1e6);
  fprintf(stderr, "\n");
  for (int i = 0; i < mutators; i++) {
    size_t listed = 0;
    fprintf(stderr, "  mutator %d stalls over %.1f ms:", i, LIST_STALL_NS / 1e6);
    for (size_t j = 0; j < ms[i].nstalls && listed < 40; j++) {
      const fh_interval *v = &ms[i].stalls[j];
      if (v->end_ns - v->begin_ns < LIST_STALL_NS) continue;
      fprintf(stderr, " [%.2f +%.2f]", ((double)v->begin_ns - (double)g0) / 1e6,
              (v->end_ns - v->begin_ns) / 1e6);
      listed++;
    }
    fprintf(stderr, "\n");
    /* The 10 ms window (starting at a stall) with the most stalled time:
     * what MMU at 10 ms is made of. */
    const fh_interval *v = ms[i].stalls;
    size_t n = ms[i].nstalls, best_j = 0, k = 0;
    uint64_t best = 0, sum = 0;
    for (size_t j = 0; j < n; j++) {
      if (j) sum -= v[j - 1].end_ns - v[j - 1].begin_ns;
      if (k < j) k = j, sum = 0;
      while (k < n && v[k].end_ns <= v[j].begin_ns + 10000000u) sum += v[k].end_ns - v[k].begin_ns, k++;
      if (sum > best) best = sum, best_j = j;
    }
    if (n) {
      size_t count = 0;
      for (size_t j = best_j; j < n && v[j].end_ns <= v[best_j].begin_ns + 10000000u; j++) count++;
      fprintf(stderr, "    worst 10 ms window from %.2f ms: %.2f ms stalled in %zu stalls\n",
              ((double)v[best_j].begin_ns - (double)g0) / 1e6, best / 1e6, count);
      if (count <= 8)
        for (size_t j = best_j; j < best_j + count; j++)
          fprintf(stderr, "      [%.2f +%.3f]\n", ((double)v[j].begin_ns - (double)g0) / 1e6,
                  (v[j].end_ns - v[j].begin_ns) / 1e6);
    }
  }
}

static int run_once(int kind, size_t live_mib, int mutators, run_result *r) {
  memset(r, 0, sizeof *r);
  fh_options o;
  fh_options_init(&o);
  char spec[256];
  /* Garbage equals live, plus room for the table and a flip: the old
   * pages, the copy and a cycle's allocation (sizer_flip_fits; at 3x live
   * + 64 MiB every concurrent_compact cycle slid in its pause instead, 170
   * ms, which this benchmark did not show until it was run again).  The
   * same heap_max for every row. */
  if (kind == K_MS_CM)
    snprintf(spec, sizeof spec,
             "heap_max=%zuM,min_alloc_trigger=%zuM,collector=mark_sweep,concurrent_mark=1",
             live_mib * 4 + 200, live_mib * 3);
  else if (kind == K_CC_CM)
    snprintf(spec, sizeof spec,
             "heap_max=%zuM,min_alloc_trigger=%zuM,collector=concurrent_compact,"
             "concurrent_mark=1,generational=0",
             live_mib * 4 + 200, live_mib * 3);
  else
    snprintf(spec, sizeof spec,
             "heap_max=%zuM,min_alloc_trigger=%zuM,collector=%s,uffd_sigbus=%d",
             live_mib * 4 + 200, live_mib * 3,
             kind == K_STW ? "mark_compact" : kind == K_MS ? "mark_sweep" : "concurrent_compact",
             kind == K_HANDLER ? 0 : 1);
  const char *env = getenv("FH_OPTIONS");
  if (fh_options_parse(&o, spec) < 0 || (env && *env && fh_options_parse(&o, env) < 0)) {
    fprintf(stderr, "pause: options: %s\n", fh_last_error());
    return -1;
  }
  fh_heap *h = fh_heap_create(&o);
  if (!h) {
    fprintf(stderr, "pause: %s\n", fh_last_error());
    return -1;
  }
  static const uint32_t refs[] = {0, 8};
  uint32_t node_ty = fh_register_type(h, &(fh_type){.name = "pnode", .size = sizeof(pnode),
                                                    .nrefs = 2, .ref_offsets = refs});
  uint32_t arr_ty = fh_register_type(h, &(fh_type){.name = "table", .flags = FH_TYPE_REF_ARRAY});
  shared s = {.h = h, .mutators = mutators};
  /* nodes of 64 bytes plus the table's 8 bytes each */
  s.n = (live_mib << 20) / 72;
  fh_root_add(h, (void **)&s.table);
  fh_thread *t = fh_thread_attach(h);
  s.table = fh_alloc(t, arr_ty, s.n * sizeof(void *));
  if (!s.table || !node_ty) {
    fprintf(stderr, "pause: setup: %s\n", fh_last_error());
    return -1;
  }
  for (size_t i = 0; i < s.n; i++) {
    pnode *n = fh_alloc(t, node_ty, sizeof(pnode));
    pnode *dead = fh_alloc(t, node_ty, sizeof(pnode));
    if (!n || !dead) {
      fprintf(stderr, "pause: build: %s\n", fh_last_error());
      return -1;
    }
    n->value = i;
    n->check = check_of(i);
    fh_write_ref(t, s.table, &s.table[i], n);
    if (i) fh_write_ref(t, n, (void **)&n->next, s.table[(i * 7919) % i]);
  }
  pthread_t th[MAX_MUTATORS];
  mut ms[MAX_MUTATORS];
  for (int i = 0; i < mutators; i++) {
    ms[i] = (mut){.s = &s, .seed = (unsigned)(i + 1), .id = i};
    /* calloc'd, then touched: resident before the measurement starts */
    ms[i].stalls = calloc(MAX_STALLS, sizeof *ms[i].stalls);
    if (!ms[i].stalls) {
      fprintf(stderr, "pause: out of memory for the stall records\n");
      return -1;
    }
    memset(ms[i].stalls, 1, MAX_STALLS * sizeof *ms[i].stalls);
  }
  r->rss_before_mib = bench_rss_bytes() / 1048576.0;
  for (int i = 0; i < mutators; i++) pthread_create(&th[i], NULL, mutator, &ms[i]);
  while (atomic_load(&s.ready) < mutators) usleep(100);
  usleep(20000);
  uint64_t span0 = bench_now_ns(); /* the measured span: MMU's windows lie inside */
  atomic_store(&s.phase, 1);
  usleep(5000);
  /* Resident memory is sampled by a thread of its own (not a heap thread,
   * so the pause does not stop it) from before the collection starts until
   * its concurrent phase has ended: the peak covers the stop-the-world
   * build too. */
  rss_sampler smp = {.h = h, .peak = bench_rss_bytes()};
  smp.peak_sans_markers = smp.peak;
  pthread_t sampler;
  int sampling = pthread_create(&sampler, NULL, sample_rss, &smp) == 0;
  uint64_t g0 = bench_now_ns();
  /* FH_OPTIONS=concurrent_mark=1 (with generational=0) makes the
   * concurrent_compact rows mark concurrently too. */
  int cmark = concurrent_mark_kind(kind) || (o.concurrent_mark && concurrent_kind(kind));
  int rc = fh_collect(t, cmark           ? FH_COLLECT_TRIGGERED
                         : kind == K_STW ? FH_COLLECT_MARK_COMPACT
                         : kind == K_MS  ? FH_COLLECT_MARK_SWEEP
                                         : FH_COLLECT_CONCURRENT_COMPACT);
  atomic_store(&smp.collected, 1);
  fh_enter_blocking(t);
  if (cmark && rc == 0 && (rc = wait_for_remark(h)) < 0)
    fprintf(stderr, "pause: %s did not mark concurrently (generational=0?)\n", kind_names[kind]);
  /* Polled, not fh_gc_wait: a thread waiting for the phase hurries its
   * paced work (gc_cpu_pct), which an embedder's fh_gc_wait asks for but
   * a measurement of the mutators' utilisation must not. */
  while (fh_gc_phase_open(h)) usleep(200);
  uint64_t g1 = bench_now_ns();
  atomic_store(&smp.stop, 1);
  if (sampling) pthread_join(sampler, NULL);
  size_t rss_peak = smp.peak, rss_peak_sans_markers = smp.peak_sans_markers;
  usleep(100000); /* a 100 ms window fits after the cycle too */
  uint64_t span1 = bench_now_ns();
  atomic_store(&s.phase, 2);
  /* Blocked until here: a collection the mutators start meanwhile (their
   * allocations may trigger one) must not wait for this thread. */
  for (int i = 0; i < mutators; i++) pthread_join(th[i], NULL);
  fh_leave_blocking(t);
  fh_stats st;
  fh_get_stats(h, &st);
  const fh_cycle_stats *f = &st.last_cycle;
  r->max_pause_ms = st.pause_ns_max / 1e6;
  /* The measured cycle's pauses (a collection while the graph was built
   * would be older), and the utilisation they alone leave. */
  uint64_t first = st.pauses > FH_PAUSE_RECENT ? st.pauses - FH_PAUSE_RECENT : 0;
  fh_interval pause_iv[MAX_RUN_PAUSES];
  for (uint64_t i = first; i < st.pauses; i++) {
    const fh_pause_record *p = &st.recent_pauses[i % FH_PAUSE_RECENT];
    if (p->start_ns < span0 || r->npauses == MAX_RUN_PAUSES) continue;
    pause_iv[r->npauses] = (fh_interval){p->start_ns, p->start_ns + p->ns};
    r->pauses[r->npauses++] = *p;
  }
  for (int w = 0; w < 3; w++) {
    r->pause_mmu[w] = fh_mmu(pause_iv, r->npauses, span0, span1, mmu_windows_ns[w]);
    r->mmu[w] = mutators ? 1.0 : r->pause_mmu[w]; /* no mutator: only the pauses */
    for (int i = 0; i < mutators; i++)
      r->mmu[w] = fmin(r->mmu[w], fh_mmu(ms[i].stalls, ms[i].nstalls, span0, span1,
                                         mmu_windows_ns[w]));
  }
  if (verbose) list_stalls(kind, ms, mutators, r, g0);
  for (int i = 0; i < mutators; i++) {
    /* The mean utilisation over the span, the ceiling of every MMU: on a
     * shared machine, what the scheduler left the mutators. */
    uint64_t stalled = 0;
    for (size_t j = 0; j < ms[i].nstalls; j++) {
      uint64_t b = ms[i].stalls[j].begin_ns > span0 ? ms[i].stalls[j].begin_ns : span0;
      if (ms[i].stalls[j].end_ns > b) stalled += ms[i].stalls[j].end_ns - b;
    }
    r->mean_util += (1.0 - (double)stalled / (double)(span1 - span0)) / mutators;
    if (ms[i].dropped) r->stalls_dropped = 1;
    free(ms[i].stalls);
  }
  r->gc_ms = (g1 - g0) / 1e6;
  for (int i = 0; i < mutators; i++) {
    if (ms[i].max_gap_ns / 1e6 > r->max_stall_ms) r->max_stall_ms = ms[i].max_gap_ns / 1e6;
    s.bad |= ms[i].bad;
  }
  r->faults = (double)st.uffd_faults;
  r->fault_p50_us = st.uffd_fault_p50_ns / 1e3;
  r->fault_p99_us = st.uffd_fault_p99_ns / 1e3;
  r->flip_kernel_us = (f->flip_mremap_ns + f->flip_register_ns) / 1e3;
  r->worker_gbps = f->worker_ns ? (double)f->worker_bytes / (double)f->worker_ns : 0;
  /* STW: bytes built per second per GC thread */
  r->stw_build_gbps = f->build_ns && f->build_threads
                          ? (double)f->live_bytes / (double)f->build_ns / (double)f->build_threads
                          : 0;
  r->rss_peak_mib = rss_peak / 1048576.0;
  r->table_mib = f->table_bytes / 1048576.0;
  r->over_mib = rss_peak_sans_markers / 1048576.0 - r->rss_before_mib - r->table_mib;
  uint64_t cpu_ns = kind == K_STW ? f->build_cpu_ns : f->worker_cpu_ns;
  uint64_t cpu_bytes = kind == K_STW ? f->live_bytes : f->worker_bytes;
  r->cpu_gbps = cpu_ns ? (double)cpu_bytes / (double)cpu_ns : 0;
  uint64_t all_ns = kind == K_STW ? f->build_cpu_ns
                                  : f->worker_cpu_ns + f->release_cpu_ns + st.uffd_fault_ns_total;
  r->all_gbps = all_ns ? (double)f->live_bytes / (double)all_ns : 0;
  r->release_cpu_ms = f->release_cpu_ns / 1e6;
  r->live_mib = f->live_bytes / 1048576.0;
  r->mark_ms = f->mark_ns / 1e6;
  /* the structure survived: every node still checks, links intact */
  for (size_t i = 0; i < s.n && !s.bad; i++) {
    pnode *n = s.table[i];
    if (n->check != check_of(n->value) || (i && n->next != s.table[(i * 7919) % i])) s.bad = 1;
  }
  fh_thread_detach(t);
  fh_root_remove(h, (void **)&s.table);
  fh_heap_destroy(h);
  if (rc < 0 || s.bad) {
    fprintf(stderr, "pause: %s: %s\n", kind_names[kind],
            rc < 0 ? "collection failed" : "heap corrupted");
    return 1;
  }
  return 0;
}

static double med(run_result *rs, int n, size_t off) {
  double v[64];
  for (int i = 0; i < n; i++) v[i] = *(double *)((char *)&rs[i] + off);
  return bench_median(v, (size_t)n);
}
#define MED(rs, n, field) med(rs, n, offsetof(run_result, field))

/* The worst run: a resident-memory bound must hold in every run, and the
 * median hides the one in four that went over. */
static double worst(run_result *rs, int n, size_t off) {
  double m = -INFINITY;
  for (int i = 0; i < n; i++) m = fmax(m, *(double *)((char *)&rs[i] + off));
  return m;
}
#define WORST(rs, n, field) worst(rs, n, offsetof(run_result, field))

/* One collector's pauses and utilisation over all its runs. */
typedef struct pooled {
  unsigned n, remarks, flips;
  double p50_ms, p99_ms, max_ms, remark_ms, flip_ms;
  double max_stop_ms; /* the longest time to safepoint, of any pause */
  double mmu[3], pause_mmu[3]; /* the least over the runs */
  int stalls_dropped;
} pooled;

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least pct% of them at or below. */
static double rank(const double *sorted, unsigned n, double pct) {
  if (!n) return 0;
  unsigned i = (unsigned)ceil(pct / 100.0 * n);
  return sorted[i ? i - 1 : 0];
}

static pooled pool_runs(const run_result *rs, int runs) {
  pooled p = {0};
  double v[64 * MAX_RUN_PAUSES];
  for (int w = 0; w < 3; w++) p.mmu[w] = p.pause_mmu[w] = 1.0;
  for (int r = 0; r < runs; r++) {
    for (unsigned i = 0; i < rs[r].npauses; i++) {
      const fh_pause_record *q = &rs[r].pauses[i];
      double ms = q->ns / 1e6;
      v[p.n++] = ms;
      p.max_stop_ms = fmax(p.max_stop_ms, q->stop_ns / 1e6);
      if (q->kind == FH_PAUSE_REMARK) p.remarks++, p.remark_ms = fmax(p.remark_ms, ms);
      if (q->kind == FH_PAUSE_FLIP) p.flips++, p.flip_ms = fmax(p.flip_ms, ms);
    }
    for (int w = 0; w < 3; w++) {
      p.mmu[w] = fmin(p.mmu[w], rs[r].mmu[w]);
      p.pause_mmu[w] = fmin(p.pause_mmu[w], rs[r].pause_mmu[w]);
    }
    p.stalls_dropped |= rs[r].stalls_dropped;
  }
  qsort(v, p.n, sizeof *v, by_value);
  p.p50_ms = rank(v, p.n, 50), p.p99_ms = rank(v, p.n, 99);
  p.max_ms = p.n ? v[p.n - 1] : 0;
  return p;
}

int wl_pause(int argc, char **argv) {
  static const char *const with_value[] = {"--json", "--runs", "--live", "--mutators", "--kinds",
                                           NULL};
  static const char *const bare[] = {"--help", "-v", NULL};
  if (bench_check_flags(argc, argv, with_value, bare) != 0) return 2;
  if (bench_has_flag(argc, argv, "--help")) {
    printf("usage: fhbench pause [--live MiB] [--runs N] [--mutators N] [--json FILE]\n"
           "  --live MiB     live data in the fragmented heap (default 256; as much garbage)\n"
           "  --runs N       runs per collector, fresh heap each (default 3; medians)\n"
           "  --mutators N   busy mutator threads during the collection (default 2, 0..%d)\n"
           "  --kinds L      comma-separated subset of the rows (default: all)\n"
           "  -v             list each run's pauses and its mutators' stalls over 1 ms\n",
           MAX_MUTATORS);
    return 0;
  }
  int runs = bench_runs_flag(argc, argv, 3);
  if (runs < 0) return 2;
  if (runs > 64) runs = 64;
  const char *lv = bench_flag(argc, argv, "--live");
  size_t live_mib = lv ? strtoul(lv, NULL, 10) : 256;
  if (live_mib < 8 || live_mib > 4096) {
    fprintf(stderr, "pause: --live must be 8..4096 MiB\n");
    return 2;
  }
  const char *mu = bench_flag(argc, argv, "--mutators");
  char *mu_end = NULL;
  long mutators = mu ? strtol(mu, &mu_end, 10) : 2;
  if (mu && (mu_end == mu || *mu_end || mutators < 0 || mutators > MAX_MUTATORS)) {
    fprintf(stderr, "pause: --mutators must be 0..%d\n", MAX_MUTATORS);
    return 2;
  }
  const char *json = bench_flag(argc, argv, "--json");
  verbose = bench_has_flag(argc, argv, "-v");
  const char *kinds = bench_flag(argc, argv, "--kinds");
  for (int k = 0; k < NKINDS; k++) kind_wanted[k] = !kinds || bench_list_has(kinds, kind_names[k]);
  bench_print_header(stdout);
  unsigned caps = fh_capabilities();
  int have_uffd = (caps & FH_CAP_UFFD) && (caps & FH_CAP_DONTUNMAP);
  run_result res[NKINDS][64];
  int status = 0;
  /* Interleave the kinds run by run: this VM drifts over seconds. */
  for (int r = 0; r < runs; r++)
    for (int k = 0; k < NKINDS; k++) {
      if ((concurrent_kind(k) && !have_uffd) || !kind_wanted[k]) continue;
      bench_progress("pause: run %d/%d %s", r + 1, runs, kind_names[k]);
      int st = run_once(k, live_mib, (int)mutators, &res[k][r]);
      if (st) status = st > status ? st : status;
    }
  bench_progress_done();
  printf("pause: %zu MiB live + as much interleaved garbage, %ld mutator(s), %d run(s), "
         "medians\n",
         live_mib, mutators, runs);
  printf("%-27s %9s %9s %9s %8s %8s %8s %9s %8s %9s %8s %8s %8s %8s\n", "collector",
         "pause_ms", "stall_ms", "gc_ms", "mark_ms", "faults", "p50_us", "p99_us", "flip_us",
         "GB/s/thr", "cpuGB/s", "allGB/s", "rss_MiB", "over_MiB");
  for (int k = 0; k < NKINDS; k++) {
    if (!kind_wanted[k]) continue;
    if (concurrent_kind(k) && !have_uffd) {
      printf("%-27s (userfaultfd unavailable: concurrent_compact falls back to mark_compact)\n",
             kind_names[k]);
      continue;
    }
    run_result *rs = res[k];
    printf("%-27s %9.2f %9.2f %9.1f %8.1f %8.0f %8.2f %9.2f %8.1f %9.2f %8.2f %8.2f %8.0f "
           "%8.1f\n",
           kind_names[k],
           MED(rs, runs, max_pause_ms), MED(rs, runs, max_stall_ms), MED(rs, runs, gc_ms),
           MED(rs, runs, mark_ms), MED(rs, runs, faults), MED(rs, runs, fault_p50_us),
           MED(rs, runs, fault_p99_us), MED(rs, runs, flip_kernel_us),
           k == K_STW ? MED(rs, runs, stw_build_gbps) : MED(rs, runs, worker_gbps),
           MED(rs, runs, cpu_gbps), MED(rs, runs, all_gbps), MED(rs, runs, rss_peak_mib),
           MED(rs, runs, over_mib));
  }
  pooled pl[NKINDS];
  for (int k = 0; k < NKINDS; k++)
    pl[k] = pool_runs(res[k], (concurrent_kind(k) && !have_uffd) || !kind_wanted[k] ? 0 : runs);
  printf("pauses of all runs pooled (max: the longest single one), remark and flip pauses the "
         "longest of their kind (-: none), MMU the least over runs and mutators, from operation "
         "gaps over %u us (pause_mmu: from the pauses alone; util: the mutators' mean "
         "utilisation over the span, median)\n",
         STALL_NS / 1000);
  printf("%-27s %6s %8s %8s %8s %8s %9s %8s %8s %8s %9s %11s %6s\n", "collector", "pauses",
         "p50_ms", "p99_ms", "max_ms", "stop_ms", "remark_ms", "flip_ms", "mmu_1ms", "mmu_10ms",
         "mmu_100ms", "pause_mmu10", "util");
  for (int k = 0; k < NKINDS; k++) {
    if ((concurrent_kind(k) && !have_uffd) || !kind_wanted[k]) continue;
    const pooled *p = &pl[k];
    char remark[16] = "-", flip[16] = "-";
    if (p->remarks) snprintf(remark, sizeof remark, "%.3f", p->remark_ms);
    if (p->flips) snprintf(flip, sizeof flip, "%.3f", p->flip_ms);
    printf("%-27s %6u %8.3f %8.3f %8.3f %8.3f %9s %8s %8.3f %8.3f %9.3f %11.3f %6.3f%s\n",
           kind_names[k], p->n, p->p50_ms, p->p99_ms, p->max_ms, p->max_stop_ms, remark, flip,
           p->mmu[0],
           p->mmu[1], p->mmu[2], p->pause_mmu[1], MED(res[k], runs, mean_util),
           p->stalls_dropped ? " (stall records overflowed: MMU too high)" : "");
  }
  if (have_uffd && kind_wanted[K_STW] && kind_wanted[K_SIGBUS] && kind_wanted[K_HANDLER]) {
    double stw = MED(res[K_STW], runs, max_pause_ms);
    printf("pause ratio concurrent/STW: SIGBUS %.2f, handler thread %.2f (target <= 0.5); "
           "live %.0f MiB, RSS before the cycle %.0f MiB, side tables %.1f MiB; over_MiB "
           "target <= %.1f\n",
           MED(res[K_SIGBUS], runs, max_pause_ms) / stw,
           MED(res[K_HANDLER], runs, max_pause_ms) / stw, MED(res[K_SIGBUS], runs, live_mib),
           MED(res[K_SIGBUS], runs, rss_before_mib), MED(res[K_SIGBUS], runs, table_mib),
           fmax(8.0, 0.05 * MED(res[K_SIGBUS], runs, live_mib)));
    printf("over_MiB of the worst run: mark_compact %.1f, SIGBUS %.1f, handler thread %.1f\n",
           WORST(res[K_STW], runs, over_mib), WORST(res[K_SIGBUS], runs, over_mib),
           WORST(res[K_HANDLER], runs, over_mib));
  }
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      perror(json);
      return 1;
    }
    fprintf(f, "{\"workload\": \"pause\", \"machine\": ");
    bench_json_machine(f);
    fprintf(f, ", \"live_mib\": %zu, \"runs\": %d, \"mutators\": %ld", live_mib, runs, mutators);
    for (int k = 0; k < NKINDS; k++) {
      if ((concurrent_kind(k) && !have_uffd) || !kind_wanted[k]) continue;
      run_result *rs = res[k];
      fprintf(f,
              ",\n \"%s\": {\"max_pause_ms\": %.3f, \"max_stall_ms\": %.3f, \"gc_ms\": %.2f, "
              "\"mark_ms\": %.2f, \"flip_kernel_us\": %.1f, \"rss_peak_mib\": %.1f, "
              "\"live_mib\": %.1f, \"rss_before_mib\": %.1f, \"table_mib\": %.1f, "
              "\"rss_over_mib\": %.1f, \"cpu_gbps_per_thread\": %.3f, \"all_gbps\": %.3f",
              kind_names[k], pl[k].max_ms, MED(rs, runs, max_stall_ms),
              MED(rs, runs, gc_ms), MED(rs, runs, mark_ms), MED(rs, runs, flip_kernel_us),
              MED(rs, runs, rss_peak_mib), MED(rs, runs, live_mib), MED(rs, runs, rss_before_mib),
              MED(rs, runs, table_mib), MED(rs, runs, over_mib), MED(rs, runs, cpu_gbps),
              MED(rs, runs, all_gbps));
      fprintf(f, ", \"rss_over_mib_worst\": %.1f", WORST(rs, runs, over_mib));
      const pooled *p = &pl[k];
      fprintf(f, ", \"pauses\": %u, \"p50_pause_ms\": %.3f, \"p99_pause_ms\": %.3f, "
                 "\"remark_ms\": %.3f, \"remark_pauses\": %u, \"flip_ms\": %.3f, "
                 "\"flip_pauses\": %u, \"mmu_1ms\": %.4f, \"mmu_10ms\": %.4f, "
                 "\"mmu_100ms\": %.4f, \"pause_mmu_1ms\": %.4f, \"pause_mmu_10ms\": %.4f, "
                 "\"pause_mmu_100ms\": %.4f, \"mean_util\": %.4f, \"median_run_max_pause_ms\": %.3f, "
                 "\"max_stop_ms\": %.3f",
              p->n, p->p50_ms, p->p99_ms, p->remark_ms, p->remarks, p->flip_ms, p->flips,
              p->mmu[0], p->mmu[1], p->mmu[2], p->pause_mmu[0], p->pause_mmu[1],
              p->pause_mmu[2], MED(rs, runs, mean_util), MED(rs, runs, max_pause_ms),
              p->max_stop_ms);
      if (k == K_STW)
        fprintf(f, ", \"build_gbps_per_thread\": %.3f", MED(rs, runs, stw_build_gbps));
      if (concurrent_kind(k))
        fprintf(f, ", \"faults\": %.0f, \"fault_p50_us\": %.2f, \"fault_p99_us\": %.2f, "
                   "\"worker_gbps\": %.3f, \"release_cpu_ms\": %.2f",
                MED(rs, runs, faults), MED(rs, runs, fault_p50_us), MED(rs, runs, fault_p99_us),
                MED(rs, runs, worker_gbps), MED(rs, runs, release_cpu_ms));
      fprintf(f, "}");
    }
    fprintf(f, "\n}\n");
    fclose(f);
  }
  return status;
}
