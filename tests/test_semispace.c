/* The semi-space collector: contents and identity survive copying, cycles
 * and shared objects stay shared, deep structures do not recurse, the old
 * half's pages go back to the system, and triggers fire on allocation. */
#include <string.h>

#include "support_heap.h"

static void test_graph_preserved(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=32M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  enum { N = 2000 };
  void **arr = fh_alloc(t, ty.array, N * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < N; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    fh_write_ref(t, arr, &arr[i], n);
  }
  /* next: a ring; other: a shared object (node 0) and self-loops */
  for (int i = 0; i < N; i++) {
    tnode *n = arr[i];
    fh_write_ref(t, n, (void **)&n->next, arr[(i + 1) % N]);
    fh_write_ref(t, n, (void **)&n->other, i % 2 ? arr[0] : (void *)n);
  }
  for (int round = 0; round < 3; round++) {
    for (int g = 0; g < 20000; g++) test_node(t, &ty, 0); /* garbage */
    assert_int_equal(fh_collect(t, FH_COLLECT_SEMISPACE), 0);
    for (int i = 0; i < N; i++) {
      tnode *n = arr[i];
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
      assert_ptr_equal(n->next, arr[(i + 1) % N]);
      assert_ptr_equal(n->other, i % 2 ? arr[0] : (void *)n);
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_ten_million_list_does_not_recurse(void **state) {
  (void)state;
  /* 10M nodes * 40 bytes: the trace must be a loop, not recursion. */
  fh_heap *h = test_heap("collector=semispace,heap_max=1G");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  for (uint64_t i = 0; i < 10000000; i++) {
    tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
    assert_non_null(n);
    n->value = i;
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  uint64_t count = 0, expect = 10000000;
  for (tnode *n = head; n; n = n->next) assert_int_equal(n->value, --expect), count++;
  assert_int_equal(count, 10000000);
  head = NULL;
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_pages_released_and_trigger(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=256M,min_alloc_trigger=8M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  /* 100 MiB of garbage with a tiny live set: triggers must fire and the
   * resident size must stay near the trigger, not near 100 MiB. */
  for (int i = 0; i < 100 * 1024; i++) assert_non_null(fh_alloc(t, ty.bytes, 1016));
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections >= 5);
  size_t resident = 0;
  for (unsigned i = 0; i < s.nspaces; i++) resident += s.spaces[i].resident;
  assert_true(resident < 40u << 20);
  assert_true(s.pause_ns_max > 0 && s.pause_ns_total >= s.pause_ns_max);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_graph_preserved),
      cmocka_unit_test(test_ten_million_list_does_not_recurse),
      cmocka_unit_test(test_pages_released_and_trigger),
  };
  return cmocka_run_group_tests_name("semispace", tests, NULL, NULL);
}
