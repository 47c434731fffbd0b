/* Multi-threaded stress, for every collector this build has: four mutator
 * threads allocate, link objects across threads through a global root,
 * drop most of what they build, collect explicitly now and then, and check
 * checksums of everything they can reach, with verify=1 checking the whole
 * heap around every collection. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_heap.h"

enum { THREADS = 4, SHARED = 256, ROUNDS = 300000 };

static fh_heap *h;
static test_types ty;
static void **shared; /* global root: a reference array, written by all */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t rng(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static int check_list(const tnode *n, uint64_t *count) {
  for (*count = 0; n; n = n->next, (*count)++)
    if (n->check != test_check(n->value)) return -1;
  return 0;
}

static void *mutator(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  uint64_t seed = 0x1234567 + id * 7919;
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL, *tmp = NULL;
  fh_push_root(t, (void **)&head);
  fh_push_root(t, (void **)&tmp);
  uint64_t kept = 0;
  for (uint64_t i = 0; i < ROUNDS; i++) {
    uint64_t v = (id << 48) | i;
    tmp = fh_alloc(t, ty.node, sizeof(tnode));
    if (!tmp) return (void *)"allocation failed";
    tmp->value = v;
    tmp->check = test_check(v);
    uint64_t r = rng(&seed);
    if (r % 4 == 0) { /* keep one in four on our own list */
      fh_write_ref(t, tmp, (void **)&tmp->next, head);
      head = tmp;
      kept++;
    }
    if (r % 16 == 1) { /* publish to the shared array; pick up another's */
      pthread_mutex_lock(&shared_lock);
      size_t k = (r >> 8) % SHARED;
      tnode *other = shared[k];
      if (other && other->check != test_check(other->value)) {
        pthread_mutex_unlock(&shared_lock);
        return (void *)"corrupt shared node";
      }
      fh_write_ref(t, tmp, (void **)&tmp->other, other);
      fh_write_ref(t, shared, &shared[k], tmp);
      pthread_mutex_unlock(&shared_lock);
    }
    if (r % 8192 == 2) { /* drop our list now and then: mass garbage */
      uint64_t n;
      if (check_list(head, &n) < 0 || n != kept) return (void *)"own list corrupt";
      head = NULL;
      kept = 0;
    }
    if (r % 20000 == 3 && fh_collect(t, FH_COLLECT_DEFAULT) < 0) return (void *)"collect failed";
  }
  uint64_t n;
  const char *err = check_list(head, &n) < 0 || n != kept ? "own list corrupt at end" : NULL;
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  return (void *)err;
}

static void run_with(const char *collector) {
  char spec[160];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,verify=1,min_alloc_trigger=2M",
           collector);
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, spec), 0);
  h = fh_heap_create(&o);
  if (!h) {
    printf("  (collector %s not in this build: %s)\n", collector, fh_last_error());
    return;
  }
  test_register(h, &ty);
  fh_thread *main_t = fh_thread_attach(h);
  shared = fh_alloc(main_t, ty.array, SHARED * sizeof(void *));
  fh_root_add(h, (void **)&shared);
  fh_enter_blocking(main_t); /* the main thread only waits from here on */
  pthread_t th[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, mutator, (void *)i);
  const char *errs[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], (void **)&errs[i]);
  fh_leave_blocking(main_t);
  for (int i = 0; i < THREADS; i++)
    if (errs[i]) fail_msg("collector %s, thread %d: %s", collector, i, errs[i]);
  /* Every shared node, and what it links to, is intact after a final GC. */
  assert_int_equal(fh_collect(main_t, FH_COLLECT_DEFAULT), 0);
  for (int k = 0; k < SHARED; k++)
    for (tnode *n = shared[k]; n; n = n->other) assert_int_equal(n->check, test_check(n->value));
  fh_stats s;
  fh_get_stats(h, &s);
  printf("  %s: %llu collections, %llu MiB allocated, pause max %.2f ms\n", collector,
         (unsigned long long)s.collections, (unsigned long long)(s.bytes_allocated >> 20),
         s.pause_ns_max / 1e6);
  assert_true(s.collections > 3);
  fh_root_remove(h, (void **)&shared);
  fh_thread_detach(main_t);
  fh_heap_destroy(h);
}

static void test_stress_semispace(void **state) { (void)state; run_with("semispace"); }
static void test_stress_gen_semispace(void **state) { (void)state; run_with("gen_semispace"); }
static void test_stress_mark_sweep(void **state) { (void)state; run_with("mark_sweep"); }
static void test_stress_mark_compact(void **state) { (void)state; run_with("mark_compact"); }
static void test_stress_concurrent(void **state) { (void)state; run_with("concurrent_compact"); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_semispace),
      cmocka_unit_test(test_stress_gen_semispace),
      cmocka_unit_test(test_stress_mark_sweep),
      cmocka_unit_test(test_stress_mark_compact),
      cmocka_unit_test(test_stress_concurrent),
  };
  return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
