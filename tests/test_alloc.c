/* Allocation: zeroed payloads, exact sizes and types, TLAB refills, large
 * objects, the inline fast path, and running out of memory without losing
 * live objects. */
#include <string.h>

#include "support_heap.h"

static void test_zeroed_sized_typed(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=32M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  for (size_t n = 0; n < 5000; n += 7) {
    unsigned char *p = fh_alloc(t, ty.bytes, n);
    assert_non_null(p);
    assert_int_equal(fh_object_size(p), n);
    assert_int_equal(fh_object_type(p), ty.bytes);
    assert_int_equal((uintptr_t)p % 8, 0);
    for (size_t i = 0; i < n; i++) assert_int_equal(p[i], 0);
    memset(p, 0xAB, n); /* dirty it: reused memory must come back zeroed */
  }
  tnode *n = test_node(t, &ty, 5);
  assert_int_equal(fh_object_size(n), sizeof(tnode));
  assert_int_equal(fh_object_type(n), ty.node);
  fh_collect(t, FH_COLLECT_DEFAULT);
  for (int round = 0; round < 3; round++)
    for (size_t k = 0; k < 20000; k++) {
      uint64_t *p = fh_alloc(t, ty.bytes, 64);
      for (int i = 0; i < 8; i++) assert_int_equal(p[i], 0);
      memset(p, 0xCD, 64);
    }
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_large_objects(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=64M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void **big = fh_alloc(t, ty.array, 4u << 20); /* 4 MiB reference array */
  assert_non_null(big);
  fh_push_root(t, (void **)&big);
  for (size_t i = 0; i < (4u << 20) / 8; i += 4096) {
    tnode *n = test_node(t, &ty, i);
    fh_write_ref(t, big, &big[i], n);
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_object_size(big), 4u << 20);
  for (size_t i = 0; i < (4u << 20) / 8; i++) {
    tnode *n = big[i];
    if (i % 4096) { assert_null(n); continue; }
    assert_non_null(n);
    assert_int_equal(n->value, i);
    assert_int_equal(n->check, test_check(i));
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_out_of_memory_keeps_live_objects(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=8M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  uint64_t count = 0;
  for (;;) { /* keep everything live until the heap is full */
    tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
    if (!n) break;
    n->value = count;
    n->check = test_check(count++);
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
  }
  assert_non_null(strstr(fh_last_error(), "heap full"));
  assert_true(count > 100000);
  /* Nothing was lost: every node is still there, intact. */
  uint64_t seen = 0;
  for (tnode *n = head; n; n = n->next, seen++) assert_int_equal(n->check, test_check(n->value));
  assert_int_equal(seen, count);
  /* A request larger than the heap fails at once with its own message. */
  assert_null(fh_alloc(t, ty.bytes, 64u << 20));
  assert_non_null(strstr(fh_last_error(), "larger than the heap"));
  /* Drop the roots: the heap works again. */
  head = NULL;
  for (int i = 0; i < 100000; i++) assert_non_null(test_node(t, &ty, i));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_fast_path_is_inline(void **state) {
  (void)state;
  /* The inline path must not call out while the TLAB has room: count slow
   * calls indirectly through the stats allocation counter, which only the
   * slow path advances (by whole TLABs). */
  fh_heap *h = test_heap("heap_max=32M,tlab_size=64k");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  (void)fh_alloc(t, ty.bytes, 24); /* first TLAB */
  fh_stats a, b;
  fh_get_stats(h, &a);
  for (int i = 0; i < 100; i++) assert_non_null(fh_alloc(t, ty.bytes, 24));
  fh_get_stats(h, &b);
  assert_int_equal(a.bytes_allocated, b.bytes_allocated);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zeroed_sized_typed),
      cmocka_unit_test(test_large_objects),
      cmocka_unit_test(test_out_of_memory_keeps_live_objects),
      cmocka_unit_test(test_fast_path_is_inline),
  };
  return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
