/* Roots: global slots, per-thread root stacks (with growth), the
 * embedder's scanner; objects reachable only from each kind survive, and
 * the slots are updated when objects move. */
#include <string.h>

#include "support_heap.h"

static fh_heap *h;
static test_types ty;
static fh_thread *t;

static int setup(void **state) {
  (void)state;
  h = test_heap("heap_max=16M,verify=1");
  test_register(h, &ty);
  t = fh_thread_attach(h);
  return 0;
}
static int teardown(void **state) {
  (void)state;
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void test_global_root(void **state) {
  (void)state;
  static tnode *global;
  test_node(t, &ty, 0); /* garbage below it: sliding compaction moves it too */
  global = test_node(t, &ty, 42);
  tnode *before = global;
  fh_root_add(h, (void **)&global);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_ptr_not_equal(global, before); /* moved, slot updated */
  assert_int_equal(global->value, 42);
  fh_root_remove(h, (void **)&global);
  fh_root_remove(h, (void **)&global); /* twice: an error, not a crash */
  assert_non_null(strstr(fh_last_error(), "not registered"));
}

static void test_root_stack_grows(void **state) {
  (void)state;
  enum { N = 5000 }; /* beyond the initial capacity */
  static tnode *slots[N];
  for (int i = 0; i < N; i++) {
    slots[i] = test_node(t, &ty, (uint64_t)i);
    fh_push_root(t, (void **)&slots[i]);
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  for (int i = 0; i < N; i++) assert_int_equal(slots[i]->check, test_check((uint64_t)i));
  fh_pop_roots(t, N);
  fh_pop_roots(t, 1); /* popping past the bottom is reported */
  assert_non_null(strstr(fh_last_error(), "only 0"));
}

static tnode *scanned[3];
static int scanner_calls;
static void scan(fh_visit_fn visit, void *ctx, void *user) {
  assert_ptr_equal(user, &scanned);
  scanner_calls++;
  for (int i = 0; i < 3; i++) visit((void **)&scanned[i], ctx);
}

static void test_scanner(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) scanned[i] = test_node(t, &ty, 100 + (uint64_t)i);
  fh_set_root_scanner(h, scan, &scanned);
  /* garbage in between, then collect twice */
  for (int i = 0; i < 100000; i++) test_node(t, &ty, 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_true(scanner_calls >= 2);
  for (int i = 0; i < 3; i++) assert_int_equal(scanned[i]->value, 100 + (uint64_t)i);
  /* A second scanner does not silently replace the first. */
  static int other_user;
  fh_clear_error();
  fh_set_root_scanner(h, scan, &scanned); /* the same again: nothing happens */
  assert_string_equal(fh_last_error(), "");
  fh_set_root_scanner(h, scan, &other_user);
  assert_non_null(strstr(fh_last_error(), "already set"));
  int before = scanner_calls;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* the first still runs */
  assert_true(scanner_calls > before);
  fh_set_root_scanner(h, NULL, NULL);
}

static void test_unrooted_objects_are_reclaimed(void **state) {
  (void)state;
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_stats a, b;
  fh_get_stats(h, &a);
  for (int i = 0; i < 50000; i++) test_node(t, &ty, 1);
  fh_collect(t, FH_COLLECT_DEFAULT);
  fh_get_stats(h, &b);
  assert_true(b.bytes_freed - a.bytes_freed >= 50000 * sizeof(tnode));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_global_root),
      cmocka_unit_test(test_root_stack_grows),
      cmocka_unit_test(test_scanner),
      cmocka_unit_test(test_unrooted_objects_are_reclaimed),
  };
  return cmocka_run_group_tests_name("roots", tests, setup, teardown);
}
