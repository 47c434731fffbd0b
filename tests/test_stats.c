/* Statistics and the dump: counters move the way the work did. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_heap.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters),
      cmocka_unit_test(test_dump),
  };
  return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
