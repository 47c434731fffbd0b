/* Generational mark-compact's budgets and its young-or-full choice on a
 * running heap (collectors/mark_compact.c: mc_account; heap/gen_policy.c):
 * young cycles never budget more than the last full one, and a structure
 * that all stays live is not collected whole again and again; the policy
 * on a running heap and its throughput rule alone (gen_semispace's rules
 * are tested in test_gen_semispace.c); the generational option. */
#include <stdlib.h>

#include "collectors/mc.h"
#include "heap/gen_policy.h"
#include "heap/heap.h"
#include "support_gen.h"
#include "support_heap.h"

#define MiB ((size_t)1 << 20)

static const char *const collectors[] = {"mark_compact", "concurrent_compact"};
#define NCOLL 2

/* collectors[c], or mark_compact where userfaultfd is missing. */
static fh_heap *heap_on(int c, const char *rest, test_types *ty, fh_thread **t) {
  return test_heap_attached(c == 1 && test_have_uffd() ? collectors[1] : collectors[0], rest, ty,
                            t);
}

static void done(fh_heap *h, fh_thread *t) {
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

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

/* generational=1 (the default): generations with either kind of stack
 * roots (conservative ones keep the holes their pins leave out of the old
 * generation: tests/test_gen_conservative.c); 2: with precise roots only;
 * 0 turns them off. */
static void test_default_follows_stack_roots(void **st) {
  (void)st;
  static const struct {
    const char *spec;
    int on;
  } cases[] = {
      {"heap_max=16M", 1},
      {"heap_max=16M,stack_roots=conservative", 1},
      {"heap_max=16M,stack_roots=conservative,generational=2", 0},
      {"heap_max=16M,generational=2", 1},
      {"heap_max=16M,stack_roots=conservative,generational=0", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = heap_on(0, cases[i].spec, &ty, &t);
    assert_int_equal(mc_gen_enabled(h), cases[i].on);
    done(h, t);
  }
}

/* generational=0: every collection is full. */
static void test_option_off(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = heap_on(0, "heap_max=32M,verify=1,generational=0", &ty, &t);
  tnode *a = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&a);
  for (int i = 0; i < 3; i++) {
    for (int g = 0; g < 1000; g++) test_node(t, &ty, 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(s.young_collections, 0);
  assert_int_equal(s.full_collections, 3);
  assert_int_equal(a->check, test_check(1));
  fh_pop_roots(t, 1);
  done(h, t);
}

/* The throughput rule of the policy alone (gen_semispace's rules are
 * tested in test_gen_semispace.c). */
static void test_policy_throughput(void **st) {
  (void)st;
  /* Young while young throughput x 0.5 >= full throughput (ART). */
  gen_policy_in in = {.heap_max = 256 * MiB, .young_tp = 400, .full_tp = 200, .last_young = 1};
  assert_true(gen_policy_choose(&in).young);
  in.full_tp = 201;
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_THROUGHPUT);
  in.last_young = 0; /* after a full one: young again (as ART) */
  assert_true(gen_policy_choose(&in).young);
  in.last_young = 1;
  in.requested_young = 1;
  assert_true(gen_policy_choose(&in).young);
  in.no_generations = 1; /* cannot be young */
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_NO_GENERATIONS);
  /* A full collection frees at most the promoted bytes more than a young
   * one, for at least its work: below what the young one freed, it cannot
   * double its throughput, whatever the estimate says (quads at 5x). */
  in = (gen_policy_in){.heap_max = 256 * MiB, .young_tp = 400, .full_tp = 201, .last_young = 1,
                       .young_collected = 36 * MiB, .young_freed = 27 * MiB,
                       .promoted_since_full = 2 * MiB, .old_after_full = 512 * MiB};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_YOUNG);
  in.promoted_since_full = 27 * MiB;
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_THROUGHPUT);
  in = (gen_policy_in){.heap_max = 256 * MiB, .young_tp = 100}; /* no full yet */
  assert_true(gen_policy_choose(&in).young);
  /* The full throughput compared is what a full collection would do now
   * (mc_gen_full_tp_now), not the average of earlier ones: binary-trees'
   * early full collections freed 128 of 256 MiB, its last phase's free 64
   * of 256 at the same cost per live byte, and young ones 64 of 128 in a
   * quarter of the time.  Young must go on there. */
  mc_gen g = {.full_tp = 128.0 * MiB / 120, .full_ns_per_byte = 220e6 / (192.0 * MiB),
              .old_live = 128 * MiB};
  g.last = (gen_policy_in){.last_young = 1, .young_collected = 128 * MiB, .young_freed = 64 * MiB};
  double full_now = mc_gen_full_tp_now(&g);
  assert_true(full_now > 0.95 * 64.0 * MiB / 220 && full_now < 1.05 * 64.0 * MiB / 220);
  in = (gen_policy_in){.heap_max = 256 * MiB, .last_young = 1, .young_tp = 64.0 * MiB / 50,
                       .full_tp = full_now};
  assert_true(gen_policy_choose(&in).young);
  in.full_tp = g.full_tp; /* the stale average would have chosen full */
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_THROUGHPUT);
  /* Old garbage promoted since the last full one counts for full. */
  g.last.promoted_since_full = 512 * MiB;
  assert_true(mc_gen_full_tp_now(&g) > 4 * full_now);
  /* Before any full collection was measured: the average (0). */
  g.full_ns_per_byte = 0;
  assert_true(mc_gen_full_tp_now(&g) == g.full_tp);
}

/* The old generation's check (GEN_WHY_OLD_UNCHECKED, heap_policy=adaptive
 * only): full once the old generation is twice the young window, and its
 * size in allocation (doubled per check that found it live) and four
 * times its full collection's cost in time have passed since the last
 * full one. */
static void test_policy_old_unchecked(void **st) {
  (void)st;
  gen_policy_in in = {.heap_max = 1024 * MiB, .last_young = 1, .check_old = 1,
                      .old_after_full = 300 * MiB, .promoted_since_full = 20 * MiB,
                      .young_window = 160 * MiB, .full_ns_per_byte = 0.2,
                      .allocated_since_full = 320 * MiB,
                      .ns_since_full = (uint64_t)(4 * 0.2 * 320 * MiB)};
  assert_int_equal(gen_policy_choose(&in).why, GEN_WHY_OLD_UNCHECKED);
  gen_policy_in c = in;
  c.check_old = 0; /* heap_policy=fixed */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.allocated_since_full -= 1; /* less than the old generation allocated */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.ns_since_full -= 1000; /* less than four times what a full one costs */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.young_window = 161 * MiB; /* the old generation is under twice the window */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.old_after_full = GEN_PROMOTE_MIN / 2; /* too small to be worth it */
  c.young_window = 0;
  c.promoted_since_full = 0;
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.full_ns_per_byte = 0; /* no full collection measured yet */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.last_young = 0; /* right after a full one */
  assert_true(gen_policy_choose(&c).young);
  c = in;
  c.unchecked_shift = 1; /* one check found it live: twice the allocation */
  assert_true(gen_policy_choose(&c).young);
  c.allocated_since_full *= 2;
  assert_int_equal(gen_policy_choose(&c).why, GEN_WHY_OLD_UNCHECKED);
  /* Backing off: a check that found three quarters live doubles the wait;
   * any full collection that freed half starts again; else unchanged. */
  assert_int_equal(gen_policy_next_shift(0, 1, 100 * MiB, 80 * MiB), 1);
  assert_int_equal(gen_policy_next_shift(3, 1, 100 * MiB, 75 * MiB), 4);
  assert_int_equal(gen_policy_next_shift(3, 0, 100 * MiB, 80 * MiB), 3);
  assert_int_equal(gen_policy_next_shift(3, 1, 100 * MiB, 60 * MiB), 3);
  assert_int_equal(gen_policy_next_shift(3, 0, 100 * MiB, 50 * MiB), 0);
  assert_int_equal(gen_policy_next_shift(GEN_UNCHECKED_SHIFT_MAX, 1, 100 * MiB, 100 * MiB),
                   GEN_UNCHECKED_SHIFT_MAX);
}

/* Records the collections' choices (h->gen.choice after each). */
typedef struct unchecked_seen {
  fh_heap *h;
  int unchecked, full, young;
  size_t live_after; /* the last collection's */
} unchecked_seen;

static void note_choice(fh_heap *h, const fh_gc_event *e, void *user) {
  unchecked_seen *u = user;
  if (!e->end) return;
  u->live_after = e->live_after;
  if (h->gen.choice.why == GEN_WHY_OLD_UNCHECKED) u->unchecked++;
  if (h->gen.choice.young) u->young++;
  else u->full++;
}

/* On a running heap: a structure made old and then dropped (no store
 * tells young collections) is found dead by a check while only garbage
 * is allocated after it; with heap_policy=fixed, never (no promotion, no
 * growth: young collections forever). */
static void dead_old_generation_is_checked(void **st) {
  (void)st;
  for (int adaptive = 0; adaptive < 2; adaptive++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_heap_attached(
        "mark_compact",
        adaptive ? "heap_max=256M,heap_policy=adaptive,heap_expansiveness=1M,growth_factor_pct=140"
                 : "heap_max=256M,heap_policy=fixed",
        &ty, &t);
    assert_non_null(h);
    tnode *head = NULL;
    fh_push_root(t, (void **)&head);
    test_list_build(t, &ty, &head, 512 * 1024); /* 16 MiB */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    head = NULL;
    unchecked_seen u = {.h = h};
    fh_set_gc_callback(h, note_choice, &u);
    /* Garbage only.  With heap_policy=fixed, 64x the dead generation and
     * no check.  With adaptive, until the check: it also waits for four
     * times a full collection's measured cost in time, which a loaded
     * machine raises (1 GiB of allocation once saw none), so that loop is
     * bounded by time. */
    if (adaptive) {
      uint64_t until = heap_now_ns() + (uint64_t)60 * 1000000000;
      while (!u.unchecked && heap_now_ns() < until)
        for (int i = 0; i < 4096 && !u.unchecked; i++) test_node(t, &ty, 0);
    } else {
      for (size_t bytes = 0; bytes < 1024 * MiB; bytes += 32) test_node(t, &ty, 0);
    }
    fh_set_gc_callback(h, NULL, NULL);
    if (adaptive) {
      assert_int_equal(u.unchecked, 1);
      assert_true(u.young > 0);
      assert_true(u.live_after < 2 * MiB); /* the check freed it */
    } else {
      assert_int_equal(u.unchecked, 0);
      assert_int_equal(u.full, 0);
    }
    fh_pop_roots(t, 1);
    done(h, t);
  }
}

/* Checks of an old generation that stays live back off: each one waits
 * for the generation's size in allocation since the last full collection,
 * doubled per check before it (they all find it live), and the one right
 * after a full collection is never a check; each full collection's end is
 * where the next one counts from.  Records, at each collection's end (the
 * world stopped: allocation counted exactly), what was allocated. */
typedef struct backoff_seen {
  fh_heap *h;
  uint64_t full_at;  /* h->bytes_allocated at the last full one's end */
  size_t old;        /* the old generation then */
  int checks, last_was_full, ok;
} backoff_seen;

static void note_backoff(fh_heap *h, const fh_gc_event *e, void *user) {
  backoff_seen *b = user;
  if (!e->end) return;
  uint64_t now = atomic_load(&h->bytes_allocated);
  int full = !h->gen.choice.young;
  if (h->gen.choice.why == GEN_WHY_OLD_UNCHECKED) {
    b->ok &= !b->last_was_full && b->old > 0 && now - b->full_at >= (uint64_t)b->old << b->checks;
    b->checks++;
    b->ok &= h->mc->gen.last.unchecked_shift == (unsigned)b->checks;
  }
  if (full) {
    /* what the next checks count from: this collection's end */
    b->ok &= h->mc->gen.allocated_at_full == now &&
             heap_now_ns() - h->mc->gen.full_end_ns < (uint64_t)1000000000;
    b->full_at = now;
    b->old = h->mc->gen.last.old_after_full;
  }
  b->last_was_full = full;
}

static void live_old_generation_checks_back_off(void **st) {
  (void)st;
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(
      "mark_compact", "heap_max=256M,heap_policy=adaptive,heap_expansiveness=1M,growth_factor_pct=140",
      &ty, &t);
  assert_non_null(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  test_list_build(t, &ty, &head, 512 * 1024); /* 16 MiB, live to the end */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  backoff_seen b = {.h = h, .ok = 1, .last_was_full = 1, .old = h->mc->gen.last.old_after_full,
                    .full_at = atomic_load(&h->bytes_allocated)};
  assert_true(b.old >= 16 * MiB);
  fh_set_gc_callback(h, note_backoff, &b);
  /* Both of a check's timing-dependent conditions are taken out of the
   * test's way.  The window is capped at 0.4 x live (growth_factor_pct),
   * under half the old generation whatever the measured rates make of
   * it.  The loop is bounded by time, not allocation: a check also waits
   * until the time since the last full collection is four times what a
   * full one is estimated to cost, and a slow full pause (a loaded CI
   * machine) raises that estimate: 3 GiB of allocation once saw only
   * three checks. */
  uint64_t until = heap_now_ns() + (uint64_t)60 * 1000000000;
  while (b.checks < 4 && heap_now_ns() < until)
    for (int i = 0; i < 4096; i++) test_node(t, &ty, 0);
  fh_set_gc_callback(h, NULL, NULL);
  assert_true(b.ok);
  assert_int_equal(b.checks, 4);
  size_t n = 0;
  for (tnode *p = head; p; p = p->next) n++;
  assert_int_equal(n, 512 * 1024);
  fh_pop_roots(t, 1);
  done(h, t);
}

/* Allocation-triggered collections follow the policy: young ones, and
 * full ones once the old generation grows. */
static void test_policy_in_heap(void **st) {
  (void)st;
  for (int c = 0; c < NCOLL; c++) {
    test_types ty;
    fh_thread *t;
    fh_heap *h = heap_on(c, "heap_max=32M,verify=1", &ty, &t);
    test_gen_policy_workload(h, t, &ty);
    done(h, t);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(young_budget_stays_under_full),
      cmocka_unit_test(live_structure_is_not_collected_whole_again),
      cmocka_unit_test(test_default_follows_stack_roots),
      cmocka_unit_test(test_option_off),
      cmocka_unit_test(test_policy_throughput),
      cmocka_unit_test(test_policy_in_heap),
      cmocka_unit_test(test_policy_old_unchecked),
      cmocka_unit_test(dead_old_generation_is_checked),
      cmocka_unit_test(live_old_generation_checks_back_off),
  };
  return cmocka_run_group_tests_name("gen_budget", tests, NULL, NULL);
}
