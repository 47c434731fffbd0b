/* The concurrent worker's choice between UFFDIO_COPY and UFFDIO_MOVE
 * (collectors/install_costs.c): both are sampled first, the cheaper wins by
 * the median of recent runs (one outlier does not flip it), the loser is
 * re-tried at an interval that doubles while it keeps losing and resets
 * when it wins, and a retry that could not run is not scored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "collectors/install_costs.h"

enum { COPY = 0, MOVE = 1 };

/* One run: ask, "run" what was asked at the given costs, record. */
static int run(install_costs *c, uint64_t copy_ns, uint64_t move_ns) {
  int m = install_choose_move(c);
  if (install_wants_timing(c, m)) install_record(c, m, m, m ? move_ns : copy_ns);
  return m;
}

/* A fresh choice past its sampling, settled on COPY at 4 us against MOVE
 * at 20 us a page. */
static void settled_on_copy(install_costs *c) {
  install_costs_init(c);
  for (int i = 0; i < 6; i++) run(c, 4000, 20000);
}

/* Runs until the next retry of the costlier method; returns how many runs
 * that took (the retry included). */
static unsigned runs_to_retry(install_costs *c, int cheaper, uint64_t copy_ns, uint64_t move_ns) {
  for (unsigned n = 1; n < 10000; n++)
    if (run(c, copy_ns, move_ns) != cheaper) return n;
  fail_msg("no retry in 10000 runs");
  return 0;
}

static void test_samples_both_then_picks_the_cheaper(void **s) {
  (void)s;
  install_costs c;
  install_costs_init(&c);
  assert_int_equal(run(&c, 4000, 20000), MOVE);
  assert_int_equal(run(&c, 4000, 20000), MOVE);
  assert_int_equal(run(&c, 4000, 20000), COPY);
  assert_int_equal(run(&c, 4000, 20000), COPY);
  for (int i = 0; i < 20; i++) assert_int_equal(run(&c, 4000, 20000), COPY);
  assert_int_equal(install_cost_of(&c, COPY), 4000);
  assert_int_equal(install_cost_of(&c, MOVE), 20000);
}

static void test_one_outlier_does_not_flip(void **s) {
  (void)s;
  install_costs c;
  settled_on_copy(&c);
  /* A preempted COPY run: 160 us a page. */
  int m = install_choose_move(&c);
  assert_int_equal(m, COPY);
  install_record(&c, m, m, 160000);
  assert_int_equal(install_cost_of(&c, COPY), 4000);
  assert_int_equal(run(&c, 4000, 20000), COPY);
}

static void test_retry_interval_doubles_and_resets(void **s) {
  (void)s;
  install_costs c;
  settled_on_copy(&c);
  unsigned a = runs_to_retry(&c, COPY, 4000, 20000);
  unsigned b = runs_to_retry(&c, COPY, 4000, 20000);
  unsigned d = runs_to_retry(&c, COPY, 4000, 20000);
  assert_true(b >= 2 * a - 1 && d >= 2 * b - 1); /* doubling while MOVE loses */
  for (int i = 0; i < 12; i++) runs_to_retry(&c, COPY, 4000, 20000);
  assert_true(runs_to_retry(&c, COPY, 4000, 20000) <= 1025); /* capped */
  /* The costs turn: MOVE becomes the cheaper one, and after its retries
   * win the choice follows. */
  int moved = 0;
  for (int i = 0; i < 5000 && !moved; i++) moved = run(&c, 20000, 1000) == MOVE;
  assert_true(moved);
  for (int i = 0; i < 5; i++) run(&c, 20000, 1000);
  assert_int_equal(run(&c, 20000, 1000), MOVE);
}

static void test_a_retry_that_did_not_run_is_not_scored(void **s) {
  (void)s;
  install_costs c;
  settled_on_copy(&c);
  unsigned first = runs_to_retry(&c, COPY, 4000, 20000);
  /* The next retry asks for MOVE, but staging fails and COPY runs. */
  unsigned n = 0;
  int m;
  while ((m = install_choose_move(&c)) == COPY) {
    install_record(&c, m, m, 4000);
    n++;
  }
  install_record(&c, MOVE, COPY, 4000);
  /* Not scored: the very next run retries MOVE again ... */
  assert_int_equal(install_choose_move(&c), MOVE);
  install_record(&c, MOVE, MOVE, 20000);
  /* ... and that lost retry doubles the interval, as if nothing failed. */
  unsigned next = runs_to_retry(&c, COPY, 4000, 20000);
  assert_true(n + 1 >= 2 * first - 1);
  assert_true(next >= 2 * (n + 1) - 1);
}

/* The worker reads a system-call clock around the runs it times: every
 * retry and every first sample must be timed (the choice and its retry
 * interval are built on them), and of the settled method's runs only one
 * in INSTALL_SAMPLE_EVERY. */
static void test_times_retries_and_a_sample_of_the_rest(void **s) {
  (void)s;
  install_costs c;
  install_costs_init(&c);
  for (int i = 0; i < 4; i++) { /* two samples of each */
    int m = install_choose_move(&c);
    assert_true(install_wants_timing(&c, m));
    install_record(&c, m, m, m ? 20000 : 4000);
  }
  unsigned timed = 0, retries = 0, runs = 4000;
  for (unsigned i = 0; i < runs; i++) {
    int m = install_choose_move(&c);
    int t = install_wants_timing(&c, m);
    if (m == MOVE) {
      retries++;
      assert_true(t);
    } else {
      timed += (unsigned)t;
    }
    if (t) install_record(&c, m, m, m ? 20000 : 4000);
  }
  assert_true(retries >= 3); /* the interval doubles up to 1024 runs */
  assert_true(timed >= runs / INSTALL_SAMPLE_EVERY - retries); /* a retry may take a slot */
  assert_true(timed <= runs / INSTALL_SAMPLE_EVERY + 3); /* + COPY's third sample */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_samples_both_then_picks_the_cheaper),
      cmocka_unit_test(test_one_outlier_does_not_flip),
      cmocka_unit_test(test_retry_interval_doubles_and_resets),
      cmocka_unit_test(test_a_retry_that_did_not_run_is_not_scored),
      cmocka_unit_test(test_times_retries_and_a_sample_of_the_rest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
