/* Generational mark-compact's budgets and its young-or-full choice on a
 * running heap (collectors/mark_compact.c: mc_account; heap/gen_policy.c):
 * young cycles never budget more than the last full one, and a structure
 * that all stays live is not collected whole again and again.  The pure
 * policy function is tested with gen_semispace's (test_gen_semispace.c). */
#include <stdlib.h>

#include "heap/heap.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)

/* Young mark-compact cycles never budget more than the last full one: the
 * old generation's bytes include what died in it since, and a budget
 * grown from them grew the heap with its garbage.  Each round promotes
 * 256 KiB of nodes that die at once (old garbage) through two young
 * collections; without the cap the young budget grew with them (growth
 * factor 300%: 2 x the old generation). */
static void young_budget_stays_under_full(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,min_alloc_trigger=1M,heap_policy=fixed,growth_factor_pct=300",
      &ty, &t);
  assert_non_null(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, 65536); /* 2 MiB live */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  size_t full_budget = h->gc_trigger;
  assert_true(full_budget >= 4 * MiB);
  size_t young = 0;
  for (int r = 0; r < 16; r++) {
    tnode *doomed = NULL;
    fh_push_root(t, (void **)&doomed);
    test_list_build(t, &ty, &doomed, 8192); /* 256 KiB, promoted by two young cycles */
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    fh_pop_roots(t, 1);
    assert_true(h->gc_trigger <= full_budget);
    young += 2;
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.young_collections >= young);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* A structure that all stays live while it is built (binary-trees'
 * stretch tree): once a full collection freed nothing, young collections
 * that free little do not bring another one, nor does the throughput
 * rule; only the old generation's growth by half does.  Before, every
 * other collection was a full one that marked the whole structure again
 * (five of 256 MiB at depth 21; here 2 young and 1 full). */
static void live_structure_is_not_collected_whole_again(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact",
                                  "heap_max=256M,min_alloc_trigger=256K,heap_policy=fixed,growth_factor_pct=110",
                                  &ty, &t);
  assert_non_null(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, 16 * 32768); /* 16 MiB live, then a full collection */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  /* 6 MiB more, all live, with a budget of 1.6 MiB: young collections
   * that free nothing, and the old generation grows by less than half */
  test_list_build(t, &ty, &head, 6 * 32768);
  fh_get_stats(h, &s1);
  assert_true(s1.young_collections - s0.young_collections >= 3);
  assert_int_equal(s1.full_collections - s0.full_collections, 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(young_budget_stays_under_full),
      cmocka_unit_test(live_structure_is_not_collected_whole_again),
  };
  return cmocka_run_group_tests_name("gen_budget", tests, NULL, NULL);
}
