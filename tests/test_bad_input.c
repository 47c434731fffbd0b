/* Every entry point given bad input returns an error with a message, never
 * crashes, and leaves the heap usable. */
#include <string.h>

#include "support_heap.h"

static void expect_error(const char *needle) {
  if (!strstr(fh_last_error(), needle))
    fail_msg("error '%s' does not mention '%s'", fh_last_error(), needle);
}

static void test_null_arguments(void **state) {
  (void)state;
  fh_options_init(NULL);
  assert_int_equal(fh_options_parse(NULL, "x=1"), -1);
  fh_heap_destroy(NULL);
  assert_null(fh_thread_attach(NULL)), expect_error("NULL");
  fh_thread_detach(NULL), expect_error("NULL");
  fh_safepoint(NULL);
  fh_enter_blocking(NULL), expect_error("NULL");
  fh_leave_blocking(NULL), expect_error("NULL");
  assert_null(fh_alloc(NULL, 1, 8)), expect_error("NULL");
  assert_null(fh_alloc_nonmoving(NULL, 1, 8)), expect_error("NULL");
  assert_int_equal(fh_object_size(NULL), 0), expect_error("NULL");
  assert_int_equal(fh_object_type(NULL), 0), expect_error("NULL");
  fh_write_ref(NULL, NULL, NULL, NULL), expect_error("NULL");
  assert_null(fh_critical_begin(NULL, NULL)), expect_error("NULL");
  fh_critical_end(NULL, NULL), expect_error("NULL");
  fh_root_add(NULL, NULL), expect_error("NULL");
  fh_root_remove(NULL, NULL), expect_error("NULL");
  fh_push_root(NULL, NULL), expect_error("NULL");
  fh_pop_roots(NULL, 1), expect_error("NULL");
  fh_set_root_scanner(NULL, NULL, NULL), expect_error("NULL");
  assert_int_equal(fh_collect(NULL, FH_COLLECT_DEFAULT), -1), expect_error("NULL");
  fh_gc_wait(NULL);
  fh_set_background(NULL, 1), expect_error("NULL");
  fh_get_stats(NULL, NULL), expect_error("NULL");
  fh_dump(NULL, stderr), expect_error("NULL");
  assert_int_equal(fh_register_type(NULL, NULL), 0), expect_error("NULL");
}

static void test_bad_allocations_leave_heap_usable(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep = test_node(t, &ty, 123);
  fh_push_root(t, (void **)&keep);
  assert_null(fh_alloc(t, 9999, 8)), expect_error("not registered");
  assert_null(fh_alloc(t, 0, 8)), expect_error("not registered"); /* the filler type */
  assert_null(fh_alloc(t, FH__MAX_TYPES + 5, 8)), expect_error("not registered");
  assert_null(fh_alloc(t, ty.node, sizeof(tnode) + 8)), expect_error("fixed size");
  assert_null(fh_alloc(t, ty.bytes, SIZE_MAX)), expect_error("larger than the heap");
  assert_null(fh_alloc(t, ty.bytes, 17u << 20)), expect_error("larger than the heap");
  assert_null(fh_alloc_nonmoving(t, 424242, 8)), expect_error("not registered");
  assert_null(fh_alloc_nonmoving(t, ty.bytes, SIZE_MAX)), expect_error("larger");
  int not_heap = 0;
  void *slot = NULL;
  fh_write_ref(t, &not_heap, &slot, keep), expect_error("not an object of this heap");
  assert_null(slot); /* nothing stored */
  assert_int_equal(fh_collect(t, (fh_collect_kind)77), -1), expect_error("unknown");
  /* everything still works */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(keep->value, 123);
  assert_non_null(test_node(t, &ty, 1));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_destroy_with_attached_thread_is_refused(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M");
  fh_thread *t = fh_thread_attach(h);
  fh_heap_destroy(h);
  expect_error("still attached");
  fh_thread_detach(t); /* the heap is intact and usable */
  fh_heap_destroy(h);
}

static void test_bad_heap_options(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  o.heap_max = 0;
  assert_null(fh_heap_create(&o)), expect_error("heap_max");
  fh_options_init(&o);
  o.gc_threads = 0;
  assert_null(fh_heap_create(&o)), expect_error("gc_threads");
  fh_options_init(&o);
  o.collector = (fh_collector)99;
  assert_null(fh_heap_create(&o)), expect_error("collector");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null_arguments),
      cmocka_unit_test(test_bad_allocations_leave_heap_usable),
      cmocka_unit_test(test_destroy_with_attached_thread_is_refused),
      cmocka_unit_test(test_bad_heap_options),
  };
  return cmocka_run_group_tests_name("bad input", tests, NULL, NULL);
}
