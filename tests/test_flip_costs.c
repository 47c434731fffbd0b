/* What a flip gives away, and work taken out of pauses (issue 17,
 * collectors/mc_policy.c, mark_compact.c, mc_gen.c): concurrent_compact's
 * slide-or-flip choice counts the pages a flip hands back for the
 * mutators to fault in again and, with generations, the young survivors
 * it promotes; a slide's end-of-cycle task starts after the pause; a full
 * collection's per-card walk points are filled after it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "collectors/mc_policy.h"
#include "heap/barrier.h"
#include "heap/heap.h"
#include "mc_graph.h"

static char *dump_text(fh_heap *h) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fh_dump(h, f);
  fclose(f);
  return text;
}

/* What a flip gives away, priced (mc_policy_flip_extra_ns): the pages a
 * slide keeps resident above the new top, faulted in again, and the young
 * survivors a slide keeps young, promoted. */
static void test_policy_flip_extra(void **s) {
  (void)s;
  unsetenv("FH_MC_SLIDE");
  unsetenv("FH_MC_FLIP_COST_US");
  mc_slide_model p;
  mc_policy_init(&p);
  p.update_ns_per_byte = 0.5, p.move_ns_per_byte = 0.25, p.flip_fixed_ns = 1e6;
  assert_true(mc_policy_flip_extra_ns(&p, 0, 0, 0) == 0.0);
  double small = mc_policy_flip_extra_ns(&p, 1 << 20, 0, 1);
  double big = mc_policy_flip_extra_ns(&p, 1 << 20, 0, 0);
  assert_true(small > 0 && big > small); /* a 4 KiB fault costs more than a huge page's share */
  assert_true(mc_policy_flip_extra_ns(&p, 2 << 20, 0, 0) == 2 * big);
  /* promoting 1 MiB costs its faults and a slide of it (0.79 ms) */
  double kept = mc_policy_flip_extra_ns(&p, 0, 1 << 20, 1);
  assert_true(kept >= mc_policy_slide_ns(&p, 1 << 20, 1 << 20) + small);
  /* 2 MiB live (1.05 ms) flips against the fixed cost alone, slides once
   * the flip's refaults count */
  assert_false(mc_policy_choose_slide_extra(&p, 2 << 20, 0, 0, 0.0, NULL));
  assert_true(mc_policy_choose_slide_extra(&p, 2 << 20, 0, 0, big, NULL));
  assert_true(mc_policy_choose_slide_extra(&p, 2 << 20, 0, 0, kept, NULL));
  /* capped at 7x the fixed cost: 100 MiB of young survivors do not make
   * a 50 ms pause */
  assert_true(mc_policy_flip_extra_ns(&p, 0, 100 << 20, 0) == 7 * p.flip_fixed_ns);
  assert_false(mc_policy_choose_slide_extra(
      &p, 100 << 20, 100 << 20, 0, mc_policy_flip_extra_ns(&p, 0, 100 << 20, 0), NULL));
  p.force = 0;
  assert_false(mc_policy_choose_slide_extra(&p, 2 << 20, 0, 0, 1e12, NULL));
}

/* With generations, a full collection whose young survivors (allocated
 * since the last collection) a slide would keep young slides where the
 * same heap without generations flips: a flip would promote them all
 * (GCBench: its half-built stretch tree, promoted by the second
 * collection's flip, died old and held the trigger at 3x 20 MiB).  The
 * trace line and fh_dump say why. */
static void test_generational_full_keeps_young_by_sliding(void **s) {
  (void)s;
  test_skip_without_uffd();
  test_policy_choose("3000");
  char path[] = "/tmp/fh_slide_keepXXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  fh_heap *h = test_heap("collector=concurrent_compact,heap_max=128M,min_alloc_trigger=120M,"
                         "verify=1,trace=1");
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  graph g = {0};
  fh_push_root(t, (void **)&g.table);
  graph_build(t, &graph_ty, &g, 300);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  h->mc->policy.update_ns_per_byte = 1.0; /* as in test_concurrent_chooses: this flips alone */
  graph_build(t, &graph_ty, &g, 60000);   /* ~8 MiB live, allocated since the last one */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(h);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  assert_int_equal(graph_check(&graph_ty, &g), 0);
  assert_true(h->mc->chose_slide);
  assert_true(h->mc->gen.keep_mid);
  assert_true(h->mc->choice_young_kept >= ((size_t)1 << 20));
  char *text = dump_text(h);
  assert_non_null(strstr(text, "chose to slide in the pause"));
  assert_non_null(strstr(text, "KiB a slide keeps young"));
  free(text);
  char buf[8192] = {0};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(path);
  assert_true(n > 0);
  assert_non_null(strstr(buf, "slid in the pause (less than a flip with its refaults and promotions)"));
  /* the generations stay known: the next collection may be young */
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  fh_gc_wait(h);
  assert_true(h->mc->gen.young);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  test_policy_flip_always();
}

/* A slide's end-of-cycle task (clearing the tables, the prefault) starts
 * after the world resumed, not in the pause (mc_after_pause): started in
 * it, the wakeup could hand the collecting thread's CPU to the task on a
 * busy machine (fhbench young at a load of 7: pause p50 3.2-4.5 ms for
 * 0.7 ms of work).  Nothing may skip it: a cycle left pending (a path
 * that never reaches the driver's resume) is finished by whoever joins
 * the worker next, inline and without the prefault. */
static void test_end_of_cycle_after_the_pause(void **s) {
  (void)s;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=256M,min_alloc_trigger=64M,"
                         "generational=0");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *keep = NULL;
  fh_push_root(t, &keep);
  for (int c = 0; c < 3; c++) {
    for (int i = 0; i < 200000; i++) { /* ~8 MiB, a tenth of it kept */
      void *n = test_node(t, &ty, (uint64_t)i);
      if (i % 10 == 0) keep = n;
    }
    assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
    mc_state *m = h->mc;
    /* started once the world ran again: pending no more, a task to join */
    assert_false(m->end_pending);
    assert_true(m->worker_joinable);
    mc_join_worker(m);
    assert_true(m->t.old_top == m->t.begin); /* the tables were reset */
  }
  /* left pending: the next join does it inline */
  for (int i = 0; i < 200000; i++) test_node(t, &ty, (uint64_t)i);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  mc_state *m = h->mc;
  mc_join_worker(m);
  m->t.old_top = m->t.begin + 4096; /* as if a cycle had just ended */
  m->end_pending = 1;
  mc_join_worker(m);
  assert_false(m->end_pending);
  assert_true(m->t.old_top == m->t.begin);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_COMPACT), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* After a full collection (a flip, whose worker ends its phase, or a
 * slide, whose end-of-cycle task runs after the pause) every card of the
 * old generation gets its walk point outside the pause
 * (mc_gen_fill_walk): the first young cycle's card walks then start at
 * most one object back, not at the page's first object (fhbench young:
 * 4 ms of marking in that cycle, 0.4-0.5 in the next ones).  The young
 * collection that follows finds every object (verify=1). */
static void check_walk_filled(fh_heap *h) {
  mc_state *m = h->mc;
  if (m->worker_joinable) { /* to the end: mc_join_worker would stop the walk */
    gc_pool_join(&h->pool, m->worker);
    m->worker_joinable = 0;
  }
  assert_true(m->gen.valid && !m->gen.young);
  assert_false(m->gen.fill_walk);
  uintptr_t begin = m->t.begin;
  size_t cards = (m->gen.old_end - begin) / FH_CARD_BYTES;
  assert_true(cards > 1000);
  for (size_t c = 0; c < cards; c++) {
    uintptr_t w = m->gen.walk[c], cs = begin + c * FH_CARD_BYTES;
    assert_true(w != 0 && w <= cs);
    /* An object covering the card, not a page's first: near, or one that
     * spans it (the dense prefix's dead wood may be one filler of several
     * pages, collectors/fwd_wood.c). */
    assert_true(cs - w < 4096 || w + obj_bytes(*(const uint64_t *)w) > cs);
  }
}

static void test_full_collection_fills_walk_points(void **s) {
  (void)s;
  for (int flip = 0; flip < 2; flip++) {
    if (flip) {
      test_skip_without_uffd();
      setenv("FH_MC_SLIDE", "0", 1);
    }
    fh_heap *h = test_heap(flip ? "collector=concurrent_compact,heap_max=128M,verify=1"
                                : "collector=mark_compact,heap_max=128M,verify=1");
    test_register(h, &graph_ty);
    fh_thread *t = fh_thread_attach(h);
    graph g = {0};
    fh_push_root(t, (void **)&g.table);
    graph_build(t, &graph_ty, &g, 60000); /* ~8 MiB */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    check_walk_filled(h);
    for (int i = 0; i < 20000; i++) graph_garbage(t, &graph_ty, (size_t)i);
    assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
    fh_gc_wait(h);
    assert_true(h->mc->gen.young);
    assert_int_equal(graph_check(&graph_ty, &g), 0);
    fh_pop_roots(t, 1);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
  setenv("FH_MC_SLIDE", "0", 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_policy_flip_extra),
      cmocka_unit_test(test_generational_full_keeps_young_by_sliding),
      cmocka_unit_test(test_end_of_cycle_after_the_pause),
      cmocka_unit_test(test_full_collection_fills_walk_points),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
