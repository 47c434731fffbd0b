/* Concurrent marking (collector=mark_sweep, issue 16): a reference hidden
 * from the marker (moved from an unscanned object into a scanned one) is
 * never lost; mutators rewiring a graph while marking runs lose nothing
 * (verify=1); fork, fh_prefork, collections, thread attach/detach and heap
 * destruction while a cycle marks; ephemerons, finalizers, pins and large
 * objects with concurrent marking.
 *
 * Deterministic tests set h->cm_manual: the initial pause starts no marker
 * task, the test steps the marker itself (cmark_test_step) between
 * mutator operations, and a GC_CAUSE_REMARK collection finishes the cycle
 * in its pause. */
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "heap/barrier.h"
#include "heap/heap.h"
#include "heap/object.h"
#include "support_heap.h"
#include "support_cmark.h"

static int ms_marked(fh_heap *h, void *obj) {
  return bitmap_test(&heap_main_malloc(h)->mark_bits, obj_start(obj));
}

static int ms_allocated(fh_heap *h, void *obj) {
  return bitmap_test(&heap_main_malloc(h)->alloc_bits, obj_start(obj));
}

static fh_heap *manual_heap(const char *rest, test_types *ty, fh_thread **t) {
  char spec[256];
  snprintf(spec, sizeof spec, "concurrent_mark=1%s%s", *rest ? "," : "", rest);
  fh_heap *h = test_heap_attached("mark_sweep", spec, ty, t);
  h->cm_manual = 1;
  return h;
}

/* The hiding pattern: B is scanned, A (gray) holds the only reference to
 * X; the mutator moves it into B and clears A's slot; the barrier's log of
 * the overwritten reference (SATB) must bring X back.  With the log
 * emptied by hand (a barrier that did not record the store) X is freed:
 * the test sees the loss it guards against. */
static void hide(int break_barrier) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap(break_barrier ? "" : "verify=1", &ty, &t);
  tnode *a = test_node(t, &ty, 1), *b = test_node(t, &ty, 2), *x = test_node(t, &ty, 77);
  fh_write_ref(t, a, (void **)&a->next, x);
  /* Pushed in this order, the marker scans b first (a stack). */
  FH_PUSH_ROOTS(t, (void **)&a, (void **)&b);
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_true(ms_marked(h, a) && ms_marked(h, b) && !ms_marked(h, x));
  assert_int_equal(cmark_test_step(h, 1), 1); /* b scanned: nothing in it */
  assert_false(ms_marked(h, x));
  fh_write_ref(t, b, (void **)&b->next, x);
  fh_write_ref(t, a, (void **)&a->next, NULL);
  if (break_barrier) t->satb_n = 0; /* the overwritten reference's log entry */
  uintptr_t xs = (uintptr_t)x;
  x = NULL;
  test_cmark_remark(t);
  if (break_barrier) {
    assert_false(ms_allocated(h, (void *)xs)); /* lost: swept */
  } else {
    assert_true(ms_allocated(h, b->next));
    assert_int_equal(b->next->value, 77);
    assert_int_equal(b->next->check, test_check(77));
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* verify=1 checks all */
  }
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_hiding_pattern(void **state) {
  (void)state;
  hide(0);
}

static void test_hiding_pattern_detected(void **state) {
  (void)state;
  hide(1);
}

/* Objects allocated while marking runs are live for the cycle (black),
 * even when nothing marks them; their stores are seen too. */
static void test_black_allocation(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  tnode *root = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&root);
  test_cmark_start_cycle(t);
  tnode *n = test_node(t, &ty, 5), *m = test_node(t, &ty, 6);
  assert_true(ms_marked(h, n));
  fh_write_ref(t, n, (void **)&n->next, m);
  fh_write_ref(t, root, (void **)&root->next, n);
  /* A large object allocated now, holding the only reference to m2. */
  void **big = fh_alloc(t, ty.array, 64 << 10);
  tnode *m2 = test_node(t, &ty, 7);
  fh_write_ref(t, big, &big[3], m2);
  fh_write_ref(t, root, (void **)&root->other, big);
  m = m2 = NULL;
  n = NULL;
  big = NULL;
  test_cmark_remark(t);
  fh_stats st;
  fh_get_stats(h, &st);
  assert_int_equal(st.concurrent_marks, 1);
  assert_int_equal(st.kind_pauses[FH_PAUSE_ROOTS], 1); /* the initial pause */
  assert_int_equal(st.kind_pauses[FH_PAUSE_REMARK], 1);
  assert_true(st.remark_ns_max > 0);
  assert_int_equal(st.collections, 1); /* the cycle, counted once */
  assert_int_equal(root->next->next->value, 6);
  assert_int_equal(((tnode *)((void **)root->other)[3])->value, 7);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- many mutators rewiring a graph while cycles mark ---- */

static void test_rewire_verify(void **state) {
  (void)state;
  test_rewire_run("collector=mark_sweep,concurrent_mark=1,verify=1,heap_max=64M,min_alloc_trigger=1M", 1500);
}

static void test_rewire_fast(void **state) {
  (void)state;
  test_rewire_run("collector=mark_sweep,concurrent_mark=1,heap_max=64M,min_alloc_trigger=2M", 1500);
}

/* ---- lifecycle ---- */

static void test_collect_while_marking(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  tnode *keep = test_node(t, &ty, 3);
  fh_push_root(t, (void **)&keep);
  (void)test_node(t, &ty, 4); /* garbage */
  test_cmark_start_cycle(t);
  uint64_t c = h->collections;
  /* Another trigger while marking: finishes this cycle, starts no other. */
  test_cmark_start_cycle(t);
  assert_null(h->cm);
  assert_int_equal(h->cm_cycles, 1);
  assert_int_equal(h->collections, c);
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_int_equal(h->collections, c + 1); /* a cycle counts at its initial pause */
  /* An explicit collection finishes the cycle, then collects. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_null(h->cm);
  assert_int_equal(h->collections, c + 2);
  assert_int_equal(keep->value, 3);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* With the real marker: collections triggered from several threads while
 * it marks wait for it; none starts a second marker. */
static void test_triggers_while_marking(void **state) {
  (void)state;
  test_rewire_run("collector=mark_sweep,concurrent_mark=1,heap_max=64M,min_alloc_trigger=256K", 800);
}

static void test_attach_detach_while_marking(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  void **arr = fh_alloc(t, ty.array, 8 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  test_cmark_start_cycle(t);
  /* A thread attached during marking allocates black; what it stored
   * survives its detach. */
  fh_thread *u = fh_thread_attach(h);
  tnode *n = test_node(u, &ty, 9);
  fh_write_ref(u, arr, &arr[0], n);
  fh_thread_detach(u);
  n = NULL;
  test_cmark_remark(t);
  assert_int_equal(((tnode *)arr[0])->value, 9);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_destroy_while_marking(void **state) {
  (void)state;
  test_cmark_destroy_while_marking("mark_sweep", "concurrent_mark=1,heap_max=128M");
}

static void test_fork_while_marking(void **state) {
  (void)state;
  test_cmark_fork_while_marking("mark_sweep", "concurrent_mark=1,heap_max=64M,verify=1");
}

static void test_prefork_while_marking(void **state) {
  (void)state;
  test_cmark_prefork_while_marking("mark_sweep", "concurrent_mark=1,verify=1");
}

/* ---- weak references, finalizers, pins, large objects ---- */

static void test_weak_pins_large(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = manual_heap("verify=1", &ty, &t);
  tnode *key = test_node(t, &ty, 1), *val = test_node(t, &ty, 2);
  void *eph = fh_ephemeron_new(t, key, val);
  tnode *live_key = test_node(t, &ty, 3);
  void *eph2 = fh_ephemeron_new(t, live_key, test_node(t, &ty, 4));
  tnode *fin = test_node(t, &ty, 5);
  assert_int_equal(fh_finalizer_attach(t, fin, (void *)0x55), 0);
  tnode *pinned = test_node(t, &ty, 6);
  assert_int_equal(fh_pin(t, pinned), 0);
  void **big = fh_alloc(t, ty.array, 64 << 10); /* large-object space */
  FH_PUSH_ROOTS(t, &eph, &eph2, (void **)&live_key, (void **)&big);
  test_cmark_start_cycle(t);
  while (cmark_test_step(h, 1000)) {
  } /* everything reachable scanned: big too */
  /* Stored into the scanned large object during marking; the only other
   * reference was a root, dropped. */
  tnode *late = test_node(t, &ty, 7);
  tnode *old = NULL;
  (void)old;
  key = val = fin = NULL;
  uintptr_t pin_addr = (uintptr_t)pinned;
  pinned = NULL;
  fh_write_ref(t, big, &big[100], late);
  late = NULL;
  test_cmark_remark(t);
  assert_null(fh_ephemeron_key(t, eph)); /* key dead: cleared */
  assert_int_equal(((tnode *)fh_ephemeron_value(t, eph2))->value, 4);
  void *obj, *data;
  assert_int_equal(fh_finalizer_pop(t, &obj, &data), 1);
  assert_ptr_equal(data, (void *)0x55);
  assert_int_equal(((tnode *)obj)->value, 5);
  assert_true(ms_allocated(h, (void *)pin_addr));
  assert_int_equal(((tnode *)big[100])->value, 7);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_pop_roots(t, 4);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_dump_says_when_off(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "concurrent_mark=0", &ty, &t);
  test_cmark_start_cycle(t);
  assert_null(h->cm);
  assert_int_equal(h->cm_cycles, 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(buf, "concurrent marking: off (concurrent_mark=0)"));
  free(buf);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hiding_pattern),
      cmocka_unit_test(test_hiding_pattern_detected),
      cmocka_unit_test(test_black_allocation),
      cmocka_unit_test(test_collect_while_marking),
      cmocka_unit_test(test_attach_detach_while_marking),
      cmocka_unit_test(test_prefork_while_marking),
      cmocka_unit_test(test_weak_pins_large),
      cmocka_unit_test(test_dump_says_when_off),
      cmocka_unit_test(test_destroy_while_marking),
      cmocka_unit_test(test_fork_while_marking),
      cmocka_unit_test(test_rewire_verify),
      cmocka_unit_test(test_rewire_fast),
      cmocka_unit_test(test_triggers_while_marking),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
