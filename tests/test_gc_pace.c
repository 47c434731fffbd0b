/* Pacing the GC's concurrent work (heap/gc_pace.h, option gc_cpu_pct):
 * the share it may take follows the allocation budget; the concurrent
 * marker of both collectors and mark_sweep's background sweeper rest
 * between bursts, and whoever waits for them (a collection, fh_gc_wait)
 * wakes them at once; mutators rewiring a graph under heavily paced
 * marking lose nothing (verify=1). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "collectors/collector.h"
#include "heap/gc_pace.h"
#include "heap/heap.h"
#include "support_cmark.h"
#include "support_heap.h"

/* Bursts of 20 us (1 ms outside tests): every cycle here takes many.
 * The hurry tests use 500 us, so that at gc_cpu_pct=1 a rest (99 bursts,
 * 50 ms) is far longer than the test needs to see it and wake it. */
#define BURST_NS 20000u
#define HURRY_BURST_NS 500000u

static void test_duty_follows_budget(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,gc_cpu_pct=20");
  fh_thread *t = fh_thread_attach(h);
  size_t trigger = h->gc_trigger, since = atomic_load(&h->alloc_since_gc);
  h->gc_trigger = 1000;
  h->pace.cpus = 1; /* this thread running takes every CPU */
  static const struct {
    size_t allocated;
    unsigned pct;
  } want[] = {{0, 20}, {500, 20}, {750, 60}, {999, 99}, {1000, 100}, {5000, 100}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    atomic_store(&h->alloc_since_gc, want[i].allocated);
    assert_int_equal(gc_pace_duty_pct(h), want[i].pct);
  }
  atomic_store(&h->alloc_since_gc, 0);
  gc_pace_hurry_begin(h); /* someone waits: unpaced */
  assert_int_equal(gc_pace_duty_pct(h), 100);
  gc_pace_hurry_end(h);
  assert_int_equal(gc_pace_duty_pct(h), 20);
  h->pace.cpus = 2; /* a CPU no mutator uses: unpaced */
  assert_int_equal(gc_pace_duty_pct(h), 100);
  h->pace.cpus = 1;
  fh_enter_blocking(t); /* no mutator running: unpaced */
  assert_int_equal(gc_pace_duty_pct(h), 100);
  fh_leave_blocking(t);
  assert_int_equal(gc_pace_duty_pct(h), 20);
  gc_budget b = gc_pace_burst(h, NULL);
  assert_true(b.until_ns > heap_now_ns());
  h->opt.gc_cpu_pct = 100; /* unpaced: bursts still end, no rest between them */
  assert_int_equal(gc_pace_duty_pct(h), 100);
  b = gc_pace_burst(h, NULL);
  assert_true(b.until_ns > heap_now_ns());
  uint64_t rests = atomic_load(&h->pace.rests);
  gc_pace_rest(h, NULL);
  assert_int_equal(atomic_load(&h->pace.rests), rests);
  b = gc_budget_unpaced(NULL); /* the world stopped: no time limit */
  assert_false(gc_budget_over(&b));
  _Atomic int stop = 1;
  b = gc_pace_burst(h, &stop);
  assert_true(gc_budget_over(&b));
  assert_false(b.yielded); /* stopped, not out of time */
  h->gc_trigger = trigger;
  atomic_store(&h->alloc_since_gc, since);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A graph big enough that its marking takes several bursts. */
enum { NODES = 200000 };

static fh_heap *paced_heap(const char *collector, const char *rest, uint64_t burst_ns,
                           test_types *ty, fh_thread **t, void ***arr) {
  if (strcmp(collector, "concurrent_compact") == 0 && !test_have_uffd())
    test_skip_without_uffd();
  fh_heap *h = test_heap_attached(collector, rest, ty, t);
  h->pace.burst_ns = burst_ns;
  h->pace.cpus = 1; /* this test's one mutator takes every CPU: paced */
  *arr = fh_alloc(*t, ty->array, NODES * sizeof(void *));
  assert_non_null(*arr);
  fh_push_root(*t, (void **)arr);
  for (size_t i = 0; i < NODES; i++) {
    tnode *n = test_node(*t, ty, i);
    fh_write_ref(*t, *arr, &(*arr)[i], n);
    if (i) fh_write_ref(*t, n, (void **)&n->next, (*arr)[i / 2]);
    (void)test_node(*t, ty, i); /* garbage for the sweep */
  }
  /* A cycle the allocations above triggered ends here: the test's own
   * starts afresh. */
  assert_int_equal(fh_collect(*t, FH_COLLECT_DEFAULT), 0);
  return h;
}

/* The cycle the trigger would start: it marks concurrently. */
static void start_cycle(fh_thread *t) {
  test_cmark_start_cycle(t);
  assert_non_null(t->heap->cm);
}

static void check_graph(void **arr) {
  for (size_t i = 0; i < NODES; i++) {
    tnode *n = arr[i];
    assert_int_equal(n->value, i);
    assert_int_equal(n->check, test_check(i));
    if (i) assert_ptr_equal(n->next, arr[i / 2]);
  }
}

static uint64_t pace_rests(fh_heap *h) { return atomic_load(&h->pace.rests); }

/* Until the cycle that marks concurrently has ended, at safepoints. */
static void wait_marked(fh_thread *t) {
  fh_stats s;
  for (;;) {
    fh_get_stats(t->heap, &s);
    if (s.concurrent_marks && s.concurrent_marks_done == s.concurrent_marks) return;
    fh_safepoint(t);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
}

/* The marker rests between bursts and the cycle ends with every object
 * intact. */
static void paced_cycle(const char *collector, const char *rest) {
  test_types ty;
  fh_thread *t;
  void **arr;
  fh_heap *h = paced_heap(collector, rest, BURST_NS, &ty, &t, &arr);
  uint64_t r0 = pace_rests(h);
  start_cycle(t);
  wait_marked(t);
  fh_gc_wait(h);
  assert_true(pace_rests(h) > r0);
  check_graph(arr);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks the heap */
  check_graph(arr);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_mark_sweep_marker_rests(void **state) {
  (void)state;
  paced_cycle("mark_sweep", "concurrent_mark=1,gc_cpu_pct=5,verify=1");
}

static void test_concurrent_compact_marker_rests(void **state) {
  (void)state;
  paced_cycle("concurrent_compact", "concurrent_mark=1,generational=0,gc_cpu_pct=5,verify=1");
}

/* Until the paced work is in a rest (after its first burst). */
static void wait_resting(fh_heap *h) {
  while (!atomic_load(&h->pace.resting)) {
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
}

/* A collection requested while the marker rests (50 ms at 1%) wakes it:
 * that rest ends early and the marker finishes unpaced. */
static void hurried(const char *collector, const char *rest) {
  test_types ty;
  fh_thread *t;
  void **arr;
  fh_heap *h = paced_heap(collector, rest, HURRY_BURST_NS, &ty, &t, &arr);
  uint64_t w0 = atomic_load(&h->pace.rests_woken);
  start_cycle(t);
  wait_resting(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(atomic_load(&h->pace.rests_woken), w0 + 1);
  assert_int_equal(atomic_load(&h->pace.resting), 0);
  check_graph(arr);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_collection_hurries_marker(void **state) {
  (void)state;
  hurried("mark_sweep", "concurrent_mark=1,gc_cpu_pct=1,verify=1");
}

static void test_collection_hurries_cc_marker(void **state) {
  (void)state;
  hurried("concurrent_compact", "concurrent_mark=1,generational=0,gc_cpu_pct=1,verify=1");
}

/* mark_sweep's sweeper after a concurrent remark rests too; fh_gc_wait
 * hurries it, and every dead node is freed when it returns. */
static void test_gc_wait_hurries_sweeper(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  void **arr;
  fh_heap *h = paced_heap("mark_sweep", "concurrent_mark=1,gc_cpu_pct=1", HURRY_BURST_NS, &ty, &t,
                          &arr);
  /* The marking in the remark pause (no marker task): the sweeper starts
   * after it, at 1%, resting 50 ms after each burst. */
  h->cm_manual = 1;
  start_cycle(t);
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_REMARK, 0), 0);
  assert_null(h->cm);
  assert_true(fh_gc_phase_open(h));
  uint64_t w0 = atomic_load(&h->pace.rests_woken);
  while (fh_gc_phase_open(h) && !atomic_load(&h->pace.resting)) {
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
  int was_resting = fh_gc_phase_open(h);
  fh_gc_wait(h);
  assert_false(fh_gc_phase_open(h));
  if (was_resting) assert_int_equal(atomic_load(&h->pace.rests_woken), w0 + 1);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.bytes_freed > 0);
  check_graph(arr);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Mutators rewiring and allocating under heavily paced marking: the
 * budget's ramp makes the marker catch up, nothing is lost. */
static void test_rewire_paced_mark_sweep(void **state) {
  (void)state;
  test_rewire_run("collector=mark_sweep,concurrent_mark=1,gc_cpu_pct=5,verify=1,heap_max=64M,"
                  "min_alloc_trigger=1M",
                  1200);
}

static void test_rewire_paced_concurrent_compact(void **state) {
  (void)state;
  if (!test_have_uffd()) test_skip_without_uffd();
  test_rewire_run("collector=concurrent_compact,concurrent_mark=1,generational=0,gc_cpu_pct=5,"
                  "verify=1,heap_max=64M,min_alloc_trigger=1M",
                  1200);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_duty_follows_budget),
      cmocka_unit_test(test_mark_sweep_marker_rests),
      cmocka_unit_test(test_concurrent_compact_marker_rests),
      cmocka_unit_test(test_collection_hurries_marker),
      cmocka_unit_test(test_collection_hurries_cc_marker),
      cmocka_unit_test(test_gc_wait_hurries_sweeper),
      cmocka_unit_test(test_rewire_paced_mark_sweep),
      cmocka_unit_test(test_rewire_paced_concurrent_compact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
