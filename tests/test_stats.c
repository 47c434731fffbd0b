/* Statistics and the dump: counters move the way the work did. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "heap/heap.h"
#include "support_configs.h"
#include "support_heap.h"

static void check_pauses(const fh_stats *s);

static void test_counters(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=32M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.collections, 0);
  assert_true(s.nspaces >= 3 && s.nspaces <= 8);
  tnode *keep = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&keep);
  for (int i = 0; i < 10000; i++) test_node(t, &ty, 2);
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_get_stats(h, &s);
  assert_int_equal(s.collections, 2);
  assert_true(s.bytes_allocated >= 10001 * (sizeof(tnode) + 8));
  assert_true(s.bytes_freed >= 10000 * (sizeof(tnode) + 8));
  assert_true(s.bytes_moved >= 2 * (sizeof(tnode) + 8)); /* keep moved twice */
  assert_true(s.pause_ns_max > 0 && s.pause_ns_total >= s.pause_ns_max);
  /* The histogram counts both pauses, the longest in its bucket. */
  uint64_t counted = 0;
  for (unsigned k = 0; k < FH_PAUSE_BUCKETS; k++) counted += s.pause_hist[k];
  assert_int_equal(counted, 2);
  uint64_t us = s.pause_ns_max / 1000;
  unsigned top = us ? 63u - (unsigned)__builtin_clzll(us) : 0;
  assert_true(s.pause_hist[top < FH_PAUSE_BUCKETS ? top : FH_PAUSE_BUCKETS - 1] >= 1);
  assert_int_equal(s.pauses, 2);
  check_pauses(&s);
  size_t used = 0;
  for (unsigned i = 0; i < s.nspaces; i++) {
    assert_non_null(s.spaces[i].name);
    assert_true(s.spaces[i].used <= s.spaces[i].capacity);
    used += s.spaces[i].used;
  }
  assert_true(used >= sizeof(tnode) + 8 && used < (1u << 20));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_dump(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M");
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(buf, "collector"));
  assert_non_null(strstr(buf, "userfaultfd"));
  assert_non_null(strstr(buf, "non-moving space"));
  assert_non_null(strstr(buf, "collections 0"));
  free(buf);
  fh_heap_destroy(h);
}


/* ---- pauses: histogram, kinds, recent ---- */

static unsigned bucket_of(uint64_t ns) {
  uint64_t us = ns / 1000;
  unsigned k = us ? 63u - (unsigned)__builtin_clzll(us) : 0;
  return k < FH_PAUSE_BUCKETS ? k : FH_PAUSE_BUCKETS - 1;
}

/* Every counter of the pauses agrees with the others: the histogram holds
 * as many as were counted, by kind too, and (while the recent list has
 * them all) exactly the recent pauses' buckets, whose lengths add up to
 * pause_ns_total and peak at pause_ns_max. */
static void check_pauses(const fh_stats *s) {
  uint64_t in_hist = 0, by_kind = 0, kind_total = 0, kind_max = 0;
  for (unsigned k = 0; k < FH_PAUSE_BUCKETS; k++) in_hist += s->pause_hist[k];
  for (unsigned k = 0; k < FH_PAUSE_KINDS; k++) {
    by_kind += s->kind_pauses[k];
    kind_total += s->kind_pause_ns_total[k];
    if (s->kind_pause_ns_max[k] > kind_max) kind_max = s->kind_pause_ns_max[k];
    assert_true(s->kind_pause_ns_max[k] <= s->kind_pause_ns_total[k]);
  }
  assert_int_equal(in_hist, s->pauses);
  assert_int_equal(by_kind, s->pauses);
  assert_int_equal(kind_total, s->pause_ns_total);
  assert_int_equal(kind_max, s->pause_ns_max);
  if (s->pauses == 0 || s->pauses > FH_PAUSE_RECENT) return;
  uint64_t hist[FH_PAUSE_BUCKETS] = {0}, total = 0, max = 0;
  for (uint64_t i = 0; i < s->pauses; i++) {
    const fh_pause_record *r = &s->recent_pauses[i];
    hist[bucket_of(r->ns)]++;
    total += r->ns;
    if (r->ns > max) max = r->ns;
    assert_true(r->kind < FH_PAUSE_KINDS);
    assert_true(r->stop_ns <= r->ns);
    if (i) assert_true(r->start_ns >= s->recent_pauses[i - 1].start_ns + s->recent_pauses[i - 1].ns);
  }
  assert_memory_equal(hist, s->pause_hist, sizeof hist);
  assert_int_equal(total, s->pause_ns_total);
  assert_int_equal(max, s->pause_ns_max);
}

/* Every collector, both collection kinds of its configuration: one pause
 * a collection, none of them a remark (marking is not concurrent yet);
 * a concurrent compaction's pause is a flip pause, one per cycle built. */
static void test_pauses_every_collector(void **state) {
  (void)state;
  for (size_t c = 0; c < test_nconfigs; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(&test_configs[c], &ty, &t);
    tnode *keep = test_node(t, &ty, 1);
    fh_push_root(t, (void **)&keep);
    for (int i = 0; i < 4; i++) {
      for (int j = 0; j < 2000; j++) test_node(t, &ty, 2);
      test_config_collect(&test_configs[c], t, i);
      fh_gc_wait(h);
    }
    fh_stats s;
    fh_get_stats(h, &s);
    check_pauses(&s);
    assert_int_equal(s.pauses, s.collections);
    assert_int_equal(s.kind_pauses[FH_PAUSE_REMARK], 0);
    assert_int_equal(s.kind_pauses[FH_PAUSE_ROOTS], 0);
    assert_int_equal(s.kind_pauses[FH_PAUSE_YOUNG], s.young_collections);
    assert_int_equal(s.kind_pauses[FH_PAUSE_FLIP], s.compactions_built);
    if (!strcmp(test_configs[c].collector, "concurrent_compact") && test_have_uffd())
      assert_true(s.kind_pauses[FH_PAUSE_FLIP] >= 1); /* the suites never slide (FH_MC_SLIDE=0) */
    assert_int_equal(fh_gc_phase_open(h), 0); /* waited for */
    fh_pop_roots(t, 1);
    test_config_teardown(h, t);
  }
}

/* Young collections are pauses of their own kind. */
static void test_pauses_young(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("gen_semispace", "heap_max=32M", &ty, &t);
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 1000; j++) test_node(t, &ty, 2);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  check_pauses(&s);
  assert_true(s.young_collections >= 1);
  assert_int_equal(s.kind_pauses[FH_PAUSE_YOUNG], s.young_collections);
  assert_int_equal(s.kind_pause_ns_max[FH_PAUSE_YOUNG], s.young_pause_ns_max);
  assert_int_equal(s.kind_pause_ns_total[FH_PAUSE_YOUNG], s.young_pause_ns_total);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The recent list keeps the last FH_PAUSE_RECENT, oldest overwritten. */
static void test_pauses_recent_wraps(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("semispace", "heap_max=16M", &ty, &t);
  unsigned n = FH_PAUSE_RECENT + 5;
  uint64_t last_start = 0;
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_stats s;
    fh_get_stats(h, &s);
    const fh_pause_record *r = &s.recent_pauses[(s.pauses - 1) % FH_PAUSE_RECENT];
    assert_true(r->start_ns > last_start);
    assert_true(r->ns <= s.pause_ns_max);
    last_start = r->start_ns;
  }
  fh_stats s;
  fh_get_stats(h, &s);
  check_pauses(&s);
  assert_int_equal(s.pauses, n);
  /* in order from the oldest kept, at index n % RECENT */
  for (unsigned i = 1; i < FH_PAUSE_RECENT; i++)
    assert_true(s.recent_pauses[(n + i) % FH_PAUSE_RECENT].start_ns >
                s.recent_pauses[(n + i - 1) % FH_PAUSE_RECENT].start_ns);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Pauses of known lengths land in their buckets (the bounds included) and
 * under their kind; fh_dump lists them.  pause_record is what a collector
 * stopping the world on its own (a remark) calls. */
static void test_pause_buckets(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M");
  static const struct {
    uint64_t ns;
    unsigned bucket;
  } cases[] = {{0, 0},         {999, 0},         {1000, 0},       {1999, 0},
               {2000, 1},      {3999, 1},        {4000, 2},       {1023999, 9},
               {1024000, 10},  {57000000, 15},   {1ull << 40, FH_PAUSE_BUCKETS - 1}};
  size_t n = sizeof cases / sizeof *cases;
  uint64_t t0 = 1000000;
  for (size_t i = 0; i < n; i++) {
    pause_record(h, i % 2 ? FH_PAUSE_REMARK : FH_PAUSE_FLIP, t0, t0 + cases[i].ns);
    t0 += cases[i].ns + 1;
  }
  fh_stats s;
  fh_get_stats(h, &s);
  check_pauses(&s);
  assert_int_equal(s.pauses, n);
  assert_int_equal(s.collections, 0); /* pauses, not collections */
  uint64_t want[FH_PAUSE_BUCKETS] = {0};
  for (size_t i = 0; i < n; i++) {
    want[cases[i].bucket]++;
    assert_int_equal(s.recent_pauses[i].ns, cases[i].ns);
    assert_int_equal(s.recent_pauses[i].kind, i % 2 ? FH_PAUSE_REMARK : FH_PAUSE_FLIP);
    assert_int_equal(s.recent_pauses[i].stop_ns, 0); /* no world_stop began them */
  }
  assert_memory_equal(want, s.pause_hist, sizeof want);
  assert_int_equal(s.kind_pauses[FH_PAUSE_REMARK], n / 2);
  assert_int_equal(s.kind_pause_ns_max[FH_PAUSE_REMARK], 57000000);
  assert_int_equal(s.pause_ns_max, 1ull << 40);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(buf, "pauses by length (us, from): 1: 4 2: 2 4: 1 512: 1 1024: 1 32768: 1 8388608: 1\n"));
  assert_non_null(strstr(buf, "remark 5 (total"));
  assert_non_null(strstr(buf, "flip 6 (total"));
  free(buf);
  fh_heap_destroy(h);
}

/* A compacting cycle's parts are public: where its pause went, and for a
 * flip the concurrent phase's work once it has ended. */
static void test_last_cycle(void **state) {
  (void)state;
  const char *collectors[] = {"mark_compact", "concurrent_compact"};
  for (int c = 0; c < 2; c++) {
    if (c == 1 && !test_have_uffd()) continue;
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=64M", &ty, &t);
    tnode *keep = NULL;
    fh_push_root(t, (void **)&keep);
    for (int i = 0; i < 20000; i++) { /* a list of ~1 MiB among as much garbage */
      tnode *n = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, n, (void **)&n->next, keep);
      keep = n;
      test_node(t, &ty, 0);
    }
    fh_stats s;
    fh_get_stats(h, &s);
    assert_int_equal(s.last_cycle.mark_ns, 0); /* none yet */
    assert_int_equal(fh_collect(t, c ? FH_COLLECT_CONCURRENT_COMPACT : FH_COLLECT_MARK_COMPACT), 0);
    fh_gc_wait(h);
    assert_int_equal(fh_gc_phase_open(h), 0);
    fh_get_stats(h, &s);
    const fh_cycle_stats *lc = &s.last_cycle;
    assert_true(lc->mark_ns > 0 && lc->mark_ns <= s.pause_ns_max);
    assert_true(lc->mark_ns + lc->forward_ns + lc->update_ns <= s.pause_ns_max);
    assert_true(lc->live_bytes >= 20000 * sizeof(tnode) && lc->live_bytes < (4u << 20));
    assert_true(lc->table_bytes > 0);
    assert_int_equal(lc->concurrent_mark_ns, 0);
    if (c == 1) { /* flipped (FH_MC_SLIDE=0): the worker built pages */
      assert_int_equal(s.kind_pauses[FH_PAUSE_FLIP], 1);
      assert_true(lc->flip_mremap_ns > 0 && lc->flip_register_ns > 0);
      assert_true(lc->worker_bytes > 0 || s.uffd_faults > 0);
    } else {
      assert_int_equal(s.kind_pauses[FH_PAUSE_FULL], 1);
      assert_int_equal(lc->flip_register_ns, 0);
      assert_int_equal(lc->worker_bytes, 0);
    }
    assert_true(s.uffd_fault_p50_ns <= s.uffd_fault_p99_ns);
    assert_int_equal(fh_gc_transient_bytes(NULL), 0);
    assert_int_equal(fh_gc_phase_open(NULL), 0);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* A thread the heap does not know reads the lock-free figures while
 * collections replace the compactor's state (a semi-space collection
 * between two compactions makes the next one start over): never a freed
 * state (ASan would see it), and never waiting for a pause. */
typedef struct watcher {
  fh_heap *h;
  _Atomic int stop;
  _Atomic uint64_t reads;
} watcher;

static void *watch(void *arg) {
  watcher *w = arg;
  while (!atomic_load(&w->stop)) {
    (void)fh_gc_transient_bytes(w->h);
    (void)fh_gc_phase_open(w->h);
    atomic_fetch_add(&w->reads, 1);
  }
  return NULL;
}

static void test_watcher_across_state_changes(void **state) {
  (void)state;
  const char *collectors[] = {"mark_compact", "concurrent_compact"};
  for (int c = 0; c < 2; c++) {
    if (c == 1 && !test_have_uffd()) continue;
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(collectors[c], "heap_max=32M,gc_threads=2", &ty, &t);
    tnode *keep = NULL;
    fh_push_root(t, (void **)&keep);
    for (int i = 0; i < 5000; i++) {
      tnode *n = test_node(t, &ty, (uint64_t)i);
      fh_write_ref(t, n, (void **)&n->next, keep);
      keep = n;
    }
    watcher w = {.h = h};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch, &w), 0);
    for (int i = 0; i < 6; i++) {
      /* the watcher reads between every two collections, however busy
       * the machine */
      for (uint64_t r0 = atomic_load(&w.reads); atomic_load(&w.reads) < r0 + 2;) sched_yield();
      fh_collect_kind k = i % 2 ? FH_COLLECT_SEMISPACE
                          : c   ? FH_COLLECT_CONCURRENT_COMPACT
                                : FH_COLLECT_MARK_COMPACT;
      assert_int_equal(fh_collect(t, k), 0);
    }
    fh_gc_wait(h);
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    assert_true(w.reads > 0);
    fh_stats s;
    fh_get_stats(h, &s);
    check_pauses(&s);
    assert_int_equal(s.pauses, 6);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* A thread that polls late makes the pause wait for it: the record's
 * stop_ns (time to safepoint) shows it. */
typedef struct late {
  fh_heap *h;
  _Atomic int go, done;
} late;

static void *late_poller(void *arg) {
  late *l = arg;
  fh_thread *t = fh_thread_attach(l->h);
  atomic_store(&l->go, 1);
  while (atomic_load(&l->go) != 2) fh_safepoint(t);
  atomic_store(&l->go, 3); /* no poll from here until after the sleep */
  /* The sleep starts once the stop has begun (it asked this thread to
   * poll), so the stop waits for all of it however late the collecting
   * thread got a CPU. */
  while (!atomic_load(&t->fast.safepoint_requested)) sched_yield();
  struct timespec ts = {0, 30 * 1000000}; /* running, not polling */
  nanosleep(&ts, NULL);
  while (!atomic_load(&l->done)) fh_safepoint(t);
  fh_thread_detach(t);
  return NULL;
}

static void test_pause_time_to_stop(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=16M", &ty, &t);
  late l = {.h = h};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, late_poller, &l), 0);
  while (atomic_load(&l.go) != 1) sched_yield();
  atomic_store(&l.go, 2);
  while (atomic_load(&l.go) != 3) sched_yield();
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  atomic_store(&l.done, 1);
  fh_enter_blocking(t);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  fh_stats s;
  fh_get_stats(h, &s);
  check_pauses(&s);
  assert_int_equal(s.pauses, 1);
  assert_true(s.recent_pauses[0].stop_ns >= 15 * 1000000ull); /* of the 30 ms sleep */
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- fh_mmu on synthetic stalls, with known answers ---- */

#define MS 1000000ull

static void test_mmu_known(void **state) {
  (void)state;
  uint64_t b = 1000 * MS, e = b + 1000 * MS; /* a 1 s span */
  /* no stall: 1 at every window */
  assert_true(fh_mmu(NULL, 0, b, e, 1 * MS) == 1.0);
  /* one 5 ms pause: a 1 ms window fits inside it, 10 ms ones hold it
   * whole with 5 ms to spare, 100 ms ones 95 */
  fh_interval one = {b + 300 * MS, b + 305 * MS};
  assert_true(fh_mmu(&one, 1, b, e, 1 * MS) == 0.0);
  assert_float_equal(fh_mmu(&one, 1, b, e, 10 * MS), 0.5, 1e-12);
  assert_float_equal(fh_mmu(&one, 1, b, e, 100 * MS), 0.95, 1e-12);
  /* a window wider than the span is the span: 5 of 1000 ms */
  assert_float_equal(fh_mmu(&one, 1, b, e, 2000 * MS), 0.995, 1e-12);
  /* two 5 ms pauses 2 ms apart: 8 ms of any 10 ms window, 10 of 20 */
  fh_interval two[] = {{b + 107 * MS, b + 112 * MS}, {b + 100 * MS, b + 105 * MS}};
  assert_float_equal(fh_mmu(two, 2, b, e, 10 * MS), 0.2, 1e-12);
  assert_float_equal(fh_mmu(two, 2, b, e, 20 * MS), 0.5, 1e-12);
  assert_float_equal(fh_mmu(two, 2, b, e, 4 * MS), 0.0, 1e-12);
  /* overlapping stalls count once */
  fh_interval over[] = {{b + 100 * MS, b + 104 * MS}, {b + 102 * MS, b + 105 * MS}};
  assert_float_equal(fh_mmu(over, 2, b, e, 10 * MS), 0.5, 1e-12);
  /* clipped to the span: a pause from before it counts only inside it */
  fh_interval edge = {b - 50 * MS, b + 2 * MS};
  assert_float_equal(fh_mmu(&edge, 1, b, e, 10 * MS), 0.8, 1e-12);
  fh_interval outside = {e + MS, e + 2 * MS};
  assert_true(fh_mmu(&outside, 1, b, e, 10 * MS) == 1.0);
  /* regular 1 ms stalls every 4 ms: a quarter of any long window, and a
   * 2 ms window holds at most one of them whole (0.5) */
  fh_interval reg[250];
  for (int i = 0; i < 250; i++) reg[i] = (fh_interval){b + 4 * MS * i, b + 4 * MS * i + MS};
  assert_float_equal(fh_mmu(reg, 250, b, e, 100 * MS), 0.75, 1e-12);
  assert_float_equal(fh_mmu(reg, 250, b, e, 2 * MS), 0.5, 1e-12);
  assert_float_equal(fh_mmu(reg, 250, b, e, 1 * MS), 0.0, 1e-12);
  /* a brute-force check on stalls at awkward places */
  fh_interval odd[] = {{b + 3, b + 10}, {b + 12, b + 20}, {b + 35, b + 36}, {b + 50, b + 61}};
  for (uint64_t w = 1; w <= 70; w++) {
    uint64_t worst = 0;
    for (uint64_t s0 = b; s0 + w <= b + 70; s0++) {
      uint64_t st = 0;
      for (uint64_t x = s0; x < s0 + w; x++)
        for (int i = 0; i < 4; i++) st += x >= odd[i].begin_ns && x < odd[i].end_ns;
      if (st > worst) worst = st;
    }
    assert_float_equal(fh_mmu(odd, 4, b, b + 70, w), 1.0 - (double)worst / (double)w, 1e-12);
  }
}

static void test_mmu_bad_input(void **state) {
  (void)state;
  fh_interval one = {10, 20};
  assert_true(fh_mmu(NULL, 1, 0, 100, 10) == -1.0);
  assert_non_null(strstr(fh_last_error(), "NULL"));
  assert_true(fh_mmu(&one, 1, 0, 100, 0) == -1.0);
  assert_non_null(strstr(fh_last_error(), "window"));
  assert_true(fh_mmu(&one, 1, 100, 100, 10) == 1.0); /* empty span */
  fh_interval backwards = {20, 10};                  /* empty stall */
  assert_true(fh_mmu(&backwards, 1, 0, 100, 10) == 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters),
      cmocka_unit_test(test_dump),
      cmocka_unit_test(test_pauses_every_collector),
      cmocka_unit_test(test_pauses_young),
      cmocka_unit_test(test_pauses_recent_wraps),
      cmocka_unit_test(test_pause_buckets),
      cmocka_unit_test(test_last_cycle),
      cmocka_unit_test(test_watcher_across_state_changes),
      cmocka_unit_test(test_pause_time_to_stop),
      cmocka_unit_test(test_mmu_known),
      cmocka_unit_test(test_mmu_bad_input),
  };
  return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
