/* Stop-the-world mark-compact: contents, sizes, types and identity survive
 * sliding; the space really shrinks; non-moving objects' references are
 * updated; the moving space stays one VMA across cycles; several mutator
 * threads with verify=1; and the fallback of concurrent_compact when
 * userfaultfd is off. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "mc_graph.h"
#include "uffd/uffd.h"


static size_t moving_used(fh_heap *h) { return bump_space_used(&h->bump[h->active]); }

static void test_graph_survives_and_space_shrinks(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=64M,min_alloc_trigger=60M,verify=1");
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 20000);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  size_t before = moving_used(h);
  uintptr_t *old_addr = malloc(g.n * sizeof *old_addr);
  for (size_t i = 0; i < g.n; i++) old_addr[i] = (uintptr_t)g.table[i];
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  size_t after = moving_used(h);
  assert_true(after < before);
  assert_true(after % 4096 == 0);
  size_t moved = 0; /* objects slide down over garbage, never up */
  for (size_t i = 0; i < g.n; i++) {
    assert_true((uintptr_t)g.table[i] <= old_addr[i]);
    moved += (uintptr_t)g.table[i] < old_addr[i];
  }
  assert_true(moved > g.n / 2);
  free(old_addr);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_true(st.bytes_moved > 0 && st.bytes_freed > 0);
  /* Allocation continues above the new top and another cycle keeps it all. */
  for (int i = 0; i < 5000; i++) graph_garbage(t, &graph_ty, (size_t)i);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  assert_true(moving_used(h) <= after + 4096);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Reference arrays are marked a chunk at a time with a continuation per
 * array being scanned; a chain of 100 big arrays, each holding the next in
 * its first slot, nests deeper than the continuations go (the rest are
 * scanned whole), and each has enough slots left after its first chunk to
 * be split with an idle marker.  Every node must survive with its value. */
static void nested_big_arrays(void) {
  fh_heap *h = test_heap("collector=mark_compact,heap_max=128M,min_alloc_trigger=120M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  enum { DEPTH = 100, SLOTS = 3000 };
  void **root = NULL;
  fh_push_root(t, (void **)&root);
  for (int d = 0; d < DEPTH; d++) {
    void **arr = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
    assert_non_null(arr);
    fh_write_ref(t, arr, &arr[0], root); /* the previous array */
    root = arr;
    for (size_t i = 1; i < SLOTS; i++) {
      test_node(t, &ty, 0); /* garbage between the live nodes */
      tnode *n = test_node(t, &ty, (uint64_t)d * SLOTS + i);
      fh_write_ref(t, root, &root[i], n);
    }
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  void **arr = root;
  for (int d = DEPTH - 1; d >= 0; d--) {
    assert_non_null(arr);
    for (size_t i = 1; i < SLOTS; i++) {
      tnode *n = arr[i];
      assert_int_equal(n->value, (uint64_t)d * SLOTS + i);
      assert_int_equal(n->check, test_check(n->value));
    }
    arr = arr[0];
  }
  assert_null(arr);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_nested_big_arrays(void **s) {
  (void)s;
  nested_big_arrays();
}

/* The same with four markers: the arrays' remaining slots are split with
 * idle markers, each marker sets bits in bitmaps of its own, and they are
 * merged when marking ends.  A marker's bits left out of the merge lose
 * the nodes it marked (checked: the test fails then). */
static void test_nested_big_arrays_parallel(void **s) {
  (void)s;
  setenv("FH_MC_MARK_THREADS", "4", 1); /* unset by the teardown */
  nested_big_arrays();
}

static int unset_mark_threads(void **s) {
  (void)s;
  unsetenv("FH_MC_MARK_THREADS");
  return 0;
}

static void test_everything_dead(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=16M,verify=1");
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  for (int i = 0; i < 10000; i++) graph_garbage(t, &graph_ty, (size_t)i);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(moving_used(h), 0);
  tnode *n = test_node(t, &graph_ty, 5); /* allocation still works from the bottom */
  assert_int_equal(n->value, 5);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_nonmoving_refs_updated(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=16M,verify=1");
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  void **pinned = fh_alloc_nonmoving(t, graph_ty.array, 100 * sizeof(void *));
  assert_non_null(pinned);
  fh_push_root(t, (void **)&pinned);
  for (size_t i = 0; i < 100; i++) {
    graph_garbage(t, &graph_ty, i);
    fh_write_ref(t, pinned, &pinned[i], test_node(t, &graph_ty, 1000 + i));
  }
  void *pinned_before = pinned;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_ptr_equal(pinned, pinned_before); /* never moves */
  for (size_t i = 0; i < 100; i++) {
    tnode *n = pinned[i];
    assert_int_equal(n->value, 1000 + i);
    assert_int_equal(n->check, test_check(1000 + i));
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* The stop-the-world slide (collectors/mc_slide.c) keeps the graph and
 * leaves the space one VMA, without ever opening a userfaultfd. */
static void test_moving_space_stays_one_vma(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=32M");
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 5000);
  bump_space *b = &h->bump[h->active];
  for (int c = 0; c < 4; c++) {
    for (int i = 0; i < 3000; i++) graph_garbage(t, &graph_ty, (size_t)i);
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
    assert_int_equal(fh_uffd_count_vmas((void *)b->space.begin, b->space.end - b->space.begin), 1);
    assert_int_equal(graph_check(&graph_ty, &g), 0);
  }
  assert_null(h->mc->uffd);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_stress_three_mutators(void **s) {
  (void)s;
  run_mutators("collector=mark_compact,heap_max=48M,verify=1,min_alloc_trigger=2M,gc_threads=2", 3,
               6);
}

/* The same with three parallel markers (work sharing through the pool). */
static void test_stress_parallel_marking(void **s) {
  (void)s;
  setenv("FH_MC_MARK_THREADS", "3", 1); /* unset by the teardown */
  run_mutators("collector=mark_compact,heap_max=48M,verify=1,min_alloc_trigger=2M,gc_threads=2", 3,
               6);
  run_mutators("collector=concurrent_compact,heap_max=48M,verify=1,min_alloc_trigger=2M", 3, 4);
}

/* Without MREMAP_DONTUNMAP the space's pages are copied to from-space
 * instead, and a concurrent cycle builds every page in the pause; a
 * stop-the-world one slides in place, as always. */
static void test_without_dontunmap(void **s) {
  (void)s;
  setenv("FH_MC_NO_DONTUNMAP", "1", 1);
  const char *specs[] = {"collector=mark_compact,heap_max=32M,min_alloc_trigger=30M,verify=1",
                         "collector=concurrent_compact,heap_max=32M,min_alloc_trigger=30M,verify=1"};
  for (int k = 0; k < 2; k++) {
    fh_heap *h = test_heap(specs[k]);
    test_register(h, &graph_ty);
    fh_thread *t = fh_thread_attach(h);
    graph g = {0};
    fh_push_root(t, (void **)&g.table);
    graph_build(t, &graph_ty, &g, 8000);
    size_t before = moving_used(h);
    for (int c = 0; c < 3; c++) {
      assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
      assert_false(mc_phase_open(h)); /* all done in the pause */
      assert_true(k == 0 ? h->mc->slid : h->mc->moved_by_copy);
      assert_int_equal(graph_check(&graph_ty, &g), 0);
      for (int i = 0; i < 3000; i++) graph_garbage(t, &graph_ty, (size_t)i);
    }
    assert_true(moving_used(h) < before);
    bump_space *b = &h->bump[h->active];
    assert_int_equal(fh_uffd_count_vmas((void *)b->space.begin, b->space.end - b->space.begin), 1);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  unsetenv("FH_MC_NO_DONTUNMAP");
}

/* ---- fallback ---- */

static void test_concurrent_falls_back_without_uffd(void **s) {
  (void)s;
  fh_uffd_force_disable(1);
  assert_int_equal(fh_capabilities() & FH_CAP_UFFD, 0);
  fh_heap *h = test_heap("collector=concurrent_compact,heap_max=16M,verify=1");
  assert_ptr_equal(h->collector, &mark_compact_collector);
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 3000);
  assert_int_equal(fh_collect(t, FH_COLLECT_CONCURRENT_COMPACT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(text, "concurrent_compact unavailable"));
  free(text);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  fh_uffd_force_disable(0);
  /* The default collector follows what the process allows. */
  fh_uffd_force_disable(1);
  fh_heap *d = test_heap("heap_max=16M");
  assert_int_equal(d->opt.collector, FH_MARK_COMPACT);
  fh_heap_destroy(d);
  fh_uffd_force_disable(0);
  d = test_heap("heap_max=16M");
  unsigned caps = fh_capabilities();
  if ((caps & FH_CAP_UFFD) && (caps & FH_CAP_DONTUNMAP))
    assert_int_equal(d->opt.collector, FH_CONCURRENT_COMPACT);
  fh_heap_destroy(d);
  /* The explicit request's error text says what happened. */
  fh_uffd_force_disable(1);
  assert_ptr_equal(concurrent_compact_or_fallback(), &mark_compact_collector);
  assert_non_null(strstr(fh_last_error(), "using mark_compact"));
  fh_uffd_force_disable(0);
}

/* The default collector is chosen without probing the kernel, and settled
 * at the first collection: in a fresh process (this binary run again, so
 * that no earlier test has probed), heaps made before any probe are
 * unsettled and the probe has not run; a collection settles its heap, to
 * mark_compact when userfaultfd is off by then (force-disabled here after
 * creation), to what the kernel allows otherwise; a heap made after the
 * probe is settled at creation. */
static int lazy_probe_child(void) {
  test_child_signals(60);
  unsigned caps;
  fh_heap *a = test_heap("heap_max=16M,verify=1");
  fh_heap *b = test_heap("heap_max=16M,verify=1");
  CHILD_CHECK(atomic_load(&a->collector_unsettled) && atomic_load(&b->collector_unsettled));
  CHILD_CHECK(fh_uffd_caps_if_known(&caps) == 0); /* no probe yet */
  CHILD_CHECK(a->opt.collector == FH_CONCURRENT_COMPACT);
  fh_heap *heaps[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    fh_heap *h = heaps[k];
    fh_uffd_force_disable(k == 0);
    test_register(h, &graph_ty);
    fh_thread *t = fh_thread_attach(h);
    graph g = {0};
    fh_push_root(t, (void **)&g.table);
    graph_build(t, &graph_ty, &g, 2000);
    CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
    fh_gc_wait(h);
    CHILD_CHECK(graph_check(&graph_ty, &g) == 0);
    CHILD_CHECK(!atomic_load(&h->collector_unsettled));
    CHILD_CHECK(fh_uffd_caps_if_known(&caps) == 1);
    int concurrent = k == 1 && (caps & FH_CAP_UFFD) && (caps & FH_CAP_DONTUNMAP);
    CHILD_CHECK(h->opt.collector == (concurrent ? FH_CONCURRENT_COMPACT : FH_MARK_COMPACT));
    CHILD_CHECK(h->collector == (concurrent ? &concurrent_compact_collector : &mark_compact_collector));
    CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
    fh_gc_wait(h);
    CHILD_CHECK(graph_check(&graph_ty, &g) == 0);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  fh_uffd_force_disable(0);
  fh_heap *c = test_heap("heap_max=16M"); /* probed by now: settled at once */
  CHILD_CHECK(!atomic_load(&c->collector_unsettled));
  fh_heap_destroy(c);
  return 0;
}

static void test_default_collector_settled_at_first_collection(void **s) {
  (void)s;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("FH_TEST_LAZY_PROBE_CHILD", "1", 1);
    execl("/proc/self/exe", "test_mark_compact", (char *)NULL);
    _exit(127);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  if (getenv("FH_TEST_LAZY_PROBE_CHILD")) return lazy_probe_child();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_graph_survives_and_space_shrinks),
      cmocka_unit_test(test_everything_dead),
      cmocka_unit_test(test_nested_big_arrays),
      cmocka_unit_test_teardown(test_nested_big_arrays_parallel, unset_mark_threads),
      cmocka_unit_test(test_nonmoving_refs_updated),
      cmocka_unit_test(test_moving_space_stays_one_vma),
      cmocka_unit_test(test_stress_three_mutators),
      cmocka_unit_test_teardown(test_stress_parallel_marking, unset_mark_threads),
      cmocka_unit_test(test_without_dontunmap),
      cmocka_unit_test(test_concurrent_falls_back_without_uffd),
      cmocka_unit_test(test_default_collector_settled_at_first_collection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
