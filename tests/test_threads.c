/* Threads: stop-the-world through safepoints, blocking regions, critical
 * sections, and attach/detach while other threads collect. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "support_heap.h"

static fh_heap *h;
static test_types ty;
static atomic_int stop, phase;

static int setup(void **state) {
  (void)state;
  h = test_heap("heap_max=32M,verify=1");
  test_register(h, &ty);
  atomic_store(&stop, 0);
  atomic_store(&phase, 0);
  return 0;
}
static int teardown(void **state) { (void)state; fh_heap_destroy(h); return 0; }

/* A thread that never allocates, only polls: collections must still get
 * through, and its rooted object must be updated when it moves. */
static void *spinner(void *arg) {
  (void)arg;
  fh_thread *t = fh_thread_attach(h);
  tnode *mine = test_node(t, &ty, 99);
  fh_push_root(t, (void **)&mine);
  atomic_store(&phase, 1);
  while (!atomic_load(&stop)) {
    fh_safepoint(t);
    if (mine->value != 99 || mine->check != test_check(99)) return (void *)1;
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void test_safepoint_stops_spinning_thread(void **state) {
  (void)state;
  pthread_t th;
  pthread_create(&th, NULL, spinner, NULL);
  while (!atomic_load(&phase)) usleep(100);
  fh_thread *t = fh_thread_attach(h);
  for (int i = 0; i < 20; i++) {
    for (int g = 0; g < 1000; g++) test_node(t, &ty, 1);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  }
  atomic_store(&stop, 1);
  void *ret;
  pthread_join(th, &ret);
  assert_null(ret);
  fh_thread_detach(t);
}

static void *blocker(void *arg) {
  (void)arg;
  fh_thread *t = fh_thread_attach(h);
  tnode *mine = test_node(t, &ty, 5);
  fh_push_root(t, (void **)&mine);
  fh_enter_blocking(t);
  atomic_store(&phase, 1);
  while (!atomic_load(&stop)) usleep(1000); /* "a blocking system call" */
  fh_leave_blocking(t);
  void *bad = (void *)(uintptr_t)(mine->value != 5);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return bad;
}

static void test_blocked_thread_does_not_hold_up_collection(void **state) {
  (void)state;
  pthread_t th;
  pthread_create(&th, NULL, blocker, NULL);
  while (!atomic_load(&phase)) usleep(100);
  fh_thread *t = fh_thread_attach(h);
  for (int i = 0; i < 10; i++) assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  atomic_store(&stop, 1);
  void *ret;
  pthread_join(th, &ret);
  assert_null(ret);
  fh_thread_detach(t);
}

static tnode *critical_obj;
static void *critical_holder(void *arg) {
  fh_thread *t = arg;
  (void)t;
  return NULL;
}

static void *collector_thread(void *arg) {
  (void)arg;
  fh_thread *t = fh_thread_attach(h);
  atomic_store(&phase, 2);
  int rc = fh_collect(t, FH_COLLECT_DEFAULT);
  atomic_store(&phase, 3);
  fh_thread_detach(t);
  return (void *)(intptr_t)rc;
}

static void test_critical_section_holds_off_collection(void **state) {
  (void)state;
  (void)critical_holder;
  fh_thread *t = fh_thread_attach(h);
  critical_obj = test_node(t, &ty, 11);
  fh_push_root(t, (void **)&critical_obj);
  tnode *raw = fh_critical_begin(t, critical_obj);
  assert_ptr_equal(raw, critical_obj);
  pthread_t th;
  pthread_create(&th, NULL, collector_thread, NULL);
  while (atomic_load(&phase) < 2) usleep(100);
  usleep(50000);
  /* The collection waits for us: the object has not moved. */
  assert_int_equal(atomic_load(&phase), 2);
  assert_ptr_equal(raw, critical_obj);
  /* A collection from inside our own critical section is refused. */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), -1);
  assert_non_null(strstr(fh_last_error(), "critical section"));
  fh_critical_end(t, raw);
  void *ret;
  fh_enter_blocking(t); /* let the other collection stop the world */
  pthread_join(th, &ret);
  fh_leave_blocking(t);
  assert_int_equal((intptr_t)ret, 0);
  assert_int_equal(atomic_load(&phase), 3);
  assert_int_equal(critical_obj->value, 11);
  fh_critical_end(t, critical_obj); /* unbalanced: reported */
  assert_non_null(strstr(fh_last_error(), "no critical section"));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
}

static void *churn(void *arg) {
  (void)arg;
  for (int i = 0; i < 200; i++) {
    fh_thread *t = fh_thread_attach(h);
    for (int k = 0; k < 500; k++) test_node(t, &ty, 3);
    fh_thread_detach(t);
  }
  return NULL;
}

static void test_attach_detach_while_collecting(void **state) {
  (void)state;
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, churn, NULL);
  fh_thread *t = fh_thread_attach(h);
  for (int i = 0; i < 50; i++) {
    fh_collect(t, FH_COLLECT_DEFAULT);
    fh_enter_blocking(t);
    usleep(200);
    fh_leave_blocking(t);
  }
  fh_thread_detach(t);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  /* every thread detached: the heap can be destroyed (by teardown) */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_safepoint_stops_spinning_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blocked_thread_does_not_hold_up_collection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_critical_section_holds_off_collection, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attach_detach_while_collecting, setup, teardown),
  };
  return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
