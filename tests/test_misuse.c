/* Misuse is reported, never silent: a thread that exits attached, a
 * detached handle used again, a handle used from another OS thread
 * (verify=1), fh_alloc inside a blocking region, fh_write_ref with a slot
 * outside its object (verify=1), and fh_last_error()/fh_clear_error() as
 * the way to tell whether a void call failed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_heap.h"

#define assert_error_has(text)                                                         \
  do {                                                                                 \
    if (!strstr(fh_last_error(), (text)))                                              \
      fail_msg("error \"%s\" does not mention \"%s\"", fh_last_error(), (text));       \
  } while (0)

/* ---- a thread that exits without fh_thread_detach ---- */

typedef struct exit_arg {
  fh_heap *h;
  const test_types *ty;
  int critical; /* also leave a critical section open */
} exit_arg;

static void *attach_and_exit(void *p) {
  exit_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  if (!t) return NULL;
  tnode *n = fh_alloc(t, a->ty->node, sizeof *n);
  if (n && a->critical) fh_critical_begin(t, n);
  return NULL; /* no fh_thread_detach: the bug */
}

static int exits_attached(void *p) {
  int critical = *(int *)p;
  fh_heap *h = test_child_heap("collector=mark_compact,heap_max=16M");
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  CHILD_CHECK(t != NULL);
  exit_arg a = {h, &ty, critical};
  pthread_t th;
  CHILD_CHECK(pthread_create(&th, NULL, attach_and_exit, &a) == 0);
  CHILD_CHECK(pthread_join(th, NULL) == 0);
  /* Without the exit hook this collection waits for ever for a thread
   * that no longer exists (the child's alarm would fire). */
  CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
  fh_thread_detach(t);
  fh_clear_error();
  fh_heap_destroy(h); /* refuses, with an error, while threads are attached */
  CHILD_CHECK(*fh_last_error() == 0);
  return 0;
}

static void test_thread_exit_without_detach(void **state) {
  (void)state;
  int critical = 0;
  test_assert_child_ok(test_run_forked(exits_attached, &critical, 20), "plain exit");
  critical = 1;
  test_assert_child_ok(test_run_forked(exits_attached, &critical, 20), "exit in a section");
}

/* ---- a detached handle ---- */

static void test_detached_handle_reports(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=16M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *n = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&n);
  fh_thread *old = fh_thread_attach(h);
  assert_non_null(test_node(old, &ty, 2));
  fh_thread_detach(old);

  fh_clear_error();
  assert_null(fh_alloc(old, ty.node, sizeof(tnode)));
  assert_error_has("was detached");
  assert_null(fh_alloc_nonmoving(old, ty.node, sizeof(tnode)));
  assert_error_has("was detached");
  fh_clear_error();
  fh_safepoint(old);
  assert_error_has("fh_safepoint");
  fh_clear_error();
  void *slot = NULL;
  fh_push_root(old, &slot);
  assert_error_has("fh_push_root");
  fh_clear_error();
  fh_write_ref(old, n, (void **)&n->next, n);
  assert_error_has("fh_write_ref");
  assert_null(n->next); /* nothing stored */
  assert_int_equal(fh_collect(old, FH_COLLECT_DEFAULT), -1);
  assert_error_has("was detached");
  assert_null(fh_critical_begin(old, n));
  fh_clear_error();
  fh_enter_blocking(old);
  assert_error_has("fh_enter_blocking");
  fh_clear_error();
  fh_thread_detach(old); /* twice */
  assert_error_has("fh_thread_detach");
  assert_int_equal(fh_object_hash(old, n), 0);
  assert_null(fh_ephemeron_new(old, n, NULL));
  assert_error_has("was detached");

  /* The tombstone is reused by the next attach, which works normally. */
  fh_thread *again = fh_thread_attach(h);
  assert_non_null(again);
  assert_non_null(test_node(again, &ty, 3));
  fh_thread_detach(again);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(n->value, 1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- a handle used from another OS thread (verify=1) ---- */

typedef struct foreign_arg {
  fh_thread *t;
  const test_types *ty;
  int alloc_refused, collect_refused, blocking_refused;
} foreign_arg;

static void *use_foreign(void *p) {
  foreign_arg *a = p;
  a->alloc_refused = fh_alloc(a->t, a->ty->node, sizeof(tnode)) == NULL &&
                     strstr(fh_last_error(), "another OS thread") != NULL;
  a->collect_refused = fh_collect(a->t, FH_COLLECT_DEFAULT) == -1 &&
                       strstr(fh_last_error(), "another OS thread") != NULL;
  fh_clear_error();
  fh_enter_blocking(a->t);
  a->blocking_refused = strstr(fh_last_error(), "another OS thread") != NULL;
  return NULL;
}

static void test_foreign_thread_with_verify(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  foreign_arg a = {t, &ty, 0, 0, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, use_foreign, &a), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(a.alloc_refused);
  assert_true(a.collect_refused);
  assert_true(a.blocking_refused);
  assert_non_null(test_node(t, &ty, 1)); /* the owner still works */
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- fh_alloc inside fh_enter_blocking ---- */

static void alloc_in_blocking(const char *collector) {
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=16M", collector);
  fh_heap *h = test_heap(spec);
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  assert_non_null(test_node(t, &ty, 1)); /* the TLAB or budget has room now */
  fh_enter_blocking(t);
  fh_clear_error();
  assert_null(fh_alloc(t, ty.node, sizeof(tnode)));
  assert_error_has("fh_enter_blocking");
  assert_null(fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
  assert_error_has("fh_enter_blocking");
  fh_leave_blocking(t);
  assert_non_null(test_node(t, &ty, 2));
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_alloc_inside_blocking_fails(void **state) {
  (void)state;
  alloc_in_blocking("semispace");
  alloc_in_blocking("mark_compact");
  alloc_in_blocking("mark_sweep");
}

/* ---- fh_write_ref with a slot outside its object ---- */

static void test_write_ref_slot_outside_object(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *a = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&a);
  tnode *b = test_node(t, &ty, 2);
  fh_push_root(t, (void **)&b);
  void *outside = NULL;
  fh_clear_error();
  fh_write_ref(t, a, &outside, b); /* a stack slot, not in a */
  assert_error_has("not inside object");
  assert_null(outside);
  fh_clear_error();
  fh_write_ref(t, a, (void **)((char *)a + sizeof(tnode)), b); /* just past its end */
  assert_error_has("not inside object");
  fh_clear_error();
  fh_write_ref(t, a, (void **)&b->next, b); /* inside another object */
  assert_error_has("not inside object");
  assert_null(b->next);
  fh_clear_error();
  fh_write_ref(t, a, (void **)&a->next, b); /* correct */
  assert_string_equal(fh_last_error(), "");
  assert_ptr_equal(a->next, b);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- fh_last_error: errno-like, cleared by fh_clear_error ---- */

static void test_last_error_contract(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=16M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  assert_null(fh_alloc(t, 60000, 8)); /* unregistered type */
  assert_string_not_equal(fh_last_error(), "");
  assert_non_null(test_node(t, &ty, 1)); /* success leaves the text alone */
  assert_string_not_equal(fh_last_error(), "");
  fh_clear_error();
  assert_string_equal(fh_last_error(), "");
  fh_pop_roots(t, 1); /* nothing pushed: a failure of a void call */
  assert_string_not_equal(fh_last_error(), "");
  fh_clear_error();
  void *slot = NULL;
  fh_push_root(t, &slot);
  fh_pop_roots(t, 1);
  assert_string_equal(fh_last_error(), ""); /* both succeeded */
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thread_exit_without_detach),
      cmocka_unit_test(test_detached_handle_reports),
      cmocka_unit_test(test_foreign_thread_with_verify),
      cmocka_unit_test(test_alloc_inside_blocking_fails),
      cmocka_unit_test(test_write_ref_slot_outside_object),
      cmocka_unit_test(test_last_error_contract),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
