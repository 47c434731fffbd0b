/* Pins (fh_pin/fh_unpin): the API's answers, and pinned objects that stay
 * alive and in place through many collections of every collector while the
 * objects around them move. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "support_configs.h"

/* ---- the API ---- */

static void pin_api(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=16M", &ty, &t);
  tnode *n = test_node(t, &ty, 7);
  assert_int_equal(fh_pin(t, NULL), -1);
  assert_non_null(strstr(fh_last_error(), "NULL"));
  int local = 0;
  assert_int_equal(fh_pin(t, &local), -1);
  assert_non_null(strstr(fh_last_error(), "fh_pin"));
  assert_int_equal(fh_pin(NULL, n), -1);
  fh_clear_error();
  fh_unpin(t, n); /* never pinned */
  assert_non_null(strstr(fh_last_error(), "not pinned"));
  /* Counted: two pins need two unpins. */
  assert_int_equal(fh_pin(t, n), 0);
  assert_int_equal(fh_pin(t, n), 0);
  fh_clear_error();
  fh_unpin(t, n);
  fh_unpin(t, n);
  assert_string_equal(fh_last_error(), "");
  fh_unpin(t, n);
  assert_non_null(strstr(fh_last_error(), "not pinned"));
  test_config_teardown(h, t);
}

/* Another thread cannot unpin this thread's pin. */
typedef struct other_ctx {
  fh_heap *h;
  void *obj;
  char err[256];
} other_ctx;

static void *other_unpin(void *arg) {
  other_ctx *c = arg;
  fh_thread *t = fh_thread_attach(c->h);
  fh_clear_error();
  fh_unpin(t, c->obj);
  snprintf(c->err, sizeof c->err, "%s", fh_last_error());
  fh_thread_detach(t);
  return NULL;
}

static void pin_owned_by_thread(void **state) {
  (void)state;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_sweep", "heap_max=16M", &ty, &t);
  tnode *n = test_node(t, &ty, 7);
  assert_int_equal(fh_pin(t, n), 0);
  other_ctx c = {.h = h, .obj = n};
  pthread_t th;
  fh_enter_blocking(t);
  assert_int_equal(pthread_create(&th, NULL, other_unpin, &c), 0);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  assert_non_null(strstr(c.err, "not pinned by this thread"));
  fh_unpin(t, n);
  test_config_teardown(h, t);
}

/* ---- pinned objects stay put while the rest moves ---- */

enum { PINNED = 24, ROUNDS = 100 };

/* Fill the heap so that pinned objects sit between garbage and live
 * objects; pin every PIN_EVERY-th; collect ROUNDS times; the pinned ones
 * keep their address and contents (held by nothing but the pin), the
 * others keep their contents. */
static void pinned_stay_under(const test_config *cfg) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_config_heap(cfg, &ty, &t);
  void **live = fh_alloc(t, ty.array, 64 * sizeof(void *));
  assert_non_null(live);
  fh_push_root(t, (void **)&live);
  uintptr_t pinned[PINNED];
  for (int i = 0; i < PINNED; i++) {
    for (int g = 0; g < 50; g++) test_node(t, &ty, 1000 + g); /* garbage below */
    tnode *p = test_node(t, &ty, (uint64_t)i);
    assert_int_equal(fh_pin(t, p), 0);
    pinned[i] = (uintptr_t)p; /* an integer: not a root */
    p = NULL;
    if (i < 64) fh_write_ref(t, live, &live[i], test_node(t, &ty, 500 + (uint64_t)i));
  }
  int others_moved = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int g = 0; g < 200; g++) test_node(t, &ty, 9); /* churn */
    tnode *before = live[0];
    test_config_collect(cfg, t, r);
    fh_gc_wait(h);
    if (live[0] != before) others_moved = 1;
    for (int i = 0; i < PINNED; i++) {
      tnode *p = (tnode *)pinned[i];
      assert_int_equal(p->value, (uint64_t)i);
      assert_int_equal(p->check, test_check((uint64_t)i));
    }
    for (int i = 0; i < PINNED; i++) assert_int_equal(((tnode *)live[i])->value, 500 + (uint64_t)i);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.pinned_last, PINNED);
  /* Mark-sweep never moves; every other configuration compacts around the
   * pins (its first kind moves objects). */
  if (strcmp(cfg->collector, "mark_sweep") != 0) assert_true(others_moved);
  for (int i = 0; i < PINNED; i++) fh_unpin(t, (void *)pinned[i]);
  fh_pop_roots(t, 1);
  test_config_teardown(h, t);
}

static void pinned_stay_mark_sweep(void **state) {
  (void)state;
  pinned_stay_under(&test_configs[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pin_api),
      cmocka_unit_test(pin_owned_by_thread),
      cmocka_unit_test(pinned_stay_mark_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
