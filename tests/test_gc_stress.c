/* gc_stress=N: a collection at every Nth allocation and every Nth safepoint
 * poll, even though the inline fast paths never count anything (a stress
 * heap's threads are routed to the slow paths).  The point of it: a planted
 * missing root (an object pointer held in a C local across allocations) is
 * caught on every moving collector within a few allocations, while the same
 * program without gc_stress runs "fine". */
#include <signal.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_heap.h"

enum { CAUGHT = 0, NOT_CAUGHT = 3 };

/* A child ends with _exit: its heap (and the compactor's helper threads)
 * is left as the bug left it, which TSan's exit-time leak report would
 * otherwise turn into its own exit status. */
static int child_end(int code) { _exit(code); }

/* The moving configurations: every collector that moves objects. */
static const char *const moving[] = {
    "collector=semispace",
    "collector=mark_compact",
    "collector=concurrent_compact,uffd_sigbus=1",
    "collector=concurrent_compact,uffd_sigbus=0",
    "collector=mark_sweep", /* gc_stress runs homogeneous compactions there */
};
#define NMOVING (sizeof moving / sizeof moving[0])

static tnode *child_node(fh_thread *t, const test_types *ty, uint64_t v) {
  tnode *n = fh_alloc(t, ty->node, sizeof *n);
  CHILD_CHECK(n != NULL);
  n->value = v;
  n->check = test_check(v);
  return n;
}

typedef struct planted_arg {
  const char *collector;
  unsigned stress; /* 0: no gc_stress (the control) */
} planted_arg;

/* The rooting bug: `victim` lives only in a C local while the program
 * allocates.  Caught means: the stale pointer reads other contents (moved
 * or poisoned), a checked store of it is refused, or verification aborts
 * the child at the next collection (SIGABRT), or the read faults. */
static int planted(void *argp) {
  const planted_arg *a = argp;
  char spec[256];
  snprintf(spec, sizeof spec, "%s,heap_max=16M,verify=1,gc_stress=%u", a->collector, a->stress);
  fh_heap *h = test_child_heap(spec);
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  CHILD_CHECK(t != NULL);
  tnode *holder = child_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  /* Garbage below the victim, so that a sliding compaction moves it too. */
  for (int i = 0; i < 64; i++) child_node(t, &ty, 100 + (uint64_t)i);
  tnode *victim = child_node(t, &ty, 42); /* BUG: not rooted */
  fh_write_ref(t, holder, (void **)&holder->other, victim); /* reachable for now */
  unsigned n = a->stress ? a->stress : 8;
  for (unsigned i = 0; i < 2 * n + 2; i++) {
    if (i == 1) fh_write_ref(t, holder, (void **)&holder->other, NULL); /* now it dies */
    child_node(t, &ty, 1000 + i);
  }
  /* Use the stale pointer as the buggy program would. */
  int verbose = getenv("FH_TEST_VERBOSE") != NULL;
  if (victim->value != 42 || victim->check != test_check(42)) {
    if (verbose)
      fprintf(stderr, "%s: stale read %#llx %#llx\n", spec, (unsigned long long)victim->value,
              (unsigned long long)victim->check);
    return child_end(CAUGHT);
  }
  fh_clear_error();
  fh_write_ref(t, holder, (void **)&holder->next, victim);
  if (*fh_last_error()) { /* verify=1 refused the stale value */
    if (verbose) fprintf(stderr, "%s: %s\n", spec, fh_last_error());
    return child_end(CAUGHT);
  }
  fh_collect(t, FH_COLLECT_DEFAULT);   /* verification may abort here */
  return child_end(NOT_CAUGHT);
}

static int caught(int status) {
  return (WIFEXITED(status) && WEXITSTATUS(status) == CAUGHT) ||
         (WIFSIGNALED(status) && (WTERMSIG(status) == SIGABRT || WTERMSIG(status) == SIGSEGV ||
                                  WTERMSIG(status) == SIGBUS));
}

static int needs_uffd(const char *collector) { return strstr(collector, "concurrent") != NULL; }

static void test_planted_missing_root_is_caught(void **state) {
  (void)state;
  test_skip_under_tsan("the child leaves the heap as the bug left it, compactor threads "
                      "unjoined, which TSan reports as a leak at any exit");
  for (size_t i = 0; i < NMOVING; i++) {
    if (needs_uffd(moving[i]) && !test_have_uffd()) continue;
    for (unsigned stress = 1; stress <= 3; stress++) {
      planted_arg a = {moving[i], stress};
      int status = test_run_forked(planted, &a, 20);
      if (!caught(status)) {
        char why[128];
        test_child_ok(status, why, sizeof why);
        fail_msg("%s, gc_stress=%u: the missing root was not caught (%s)", moving[i], stress,
                 why);
      }
    }
  }
}

/* The control: without gc_stress the same bug goes unnoticed (no
 * collection happens in so few allocations), which is why gc_stress
 * exists. */
static void test_without_stress_the_bug_hides(void **state) {
  (void)state;
  test_skip_under_tsan("the child leaves the heap as the bug left it, compactor threads "
                      "unjoined, which TSan reports as a leak at any exit");
  for (size_t i = 0; i < NMOVING; i++) {
    if (needs_uffd(moving[i]) && !test_have_uffd()) continue;
    planted_arg a = {moving[i], 0};
    int status = test_run_forked(planted, &a, 20);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), NOT_CAUGHT);
  }
}

/* Exactly one collection per N allocations, and per N polls, on one
 * thread; a correct program (everything rooted) survives it intact. */
static void count_for(const char *collector) {
  char spec[256];
  snprintf(spec, sizeof spec, "%s,heap_max=16M,verify=1,gc_stress=5", collector);
  fh_heap *h = test_heap(spec);
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_stats s0, s1;
  tnode *list = NULL;
  fh_push_root(t, (void **)&list);
  fh_get_stats(h, &s0);
  for (uint64_t i = 0; i < 100; i++) {
    tnode *n = test_node(t, &ty, i);
    fh_write_ref(t, n, (void **)&n->next, list);
    list = n;
  }
  fh_get_stats(h, &s1);
  assert_int_equal(s1.collections - s0.collections, 20);
  for (int i = 0; i < 50; i++) fh_safepoint(t);
  fh_get_stats(h, &s0);
  assert_int_equal(s0.collections - s1.collections, 10);
  fh_gc_wait(h);
  uint64_t want = 99;
  for (tnode *n = list; n; n = n->next, want--) {
    assert_int_equal(n->value, want);
    assert_int_equal(n->check, test_check(want));
  }
  assert_int_equal(want, (uint64_t)-1);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_one_collection_every_n(void **state) {
  (void)state;
  for (size_t i = 0; i < NMOVING; i++) {
    if (needs_uffd(moving[i]) && !test_have_uffd()) continue;
    count_for(moving[i]);
  }
}

/* fh_alloc_nonmoving counts too; inside a critical section nothing runs
 * (no collection can), and the counter goes on afterwards. */
static void test_nonmoving_and_critical(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_compact,heap_max=16M,gc_stress=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  for (int i = 0; i < 4; i++) assert_non_null(fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
  fh_get_stats(h, &s1);
  assert_int_equal(s1.collections - s0.collections, 4);
  tnode *n = test_node(t, &ty, 7);
  fh_push_root(t, (void **)&n);
  void *p = fh_critical_begin(t, n);
  assert_non_null(p);
  fh_get_stats(h, &s0);
  for (int i = 0; i < 4; i++) assert_non_null(fh_alloc(t, ty.node, sizeof(tnode)));
  fh_safepoint(t);
  fh_get_stats(h, &s1);
  assert_int_equal(s1.collections, s0.collections); /* none inside the section */
  fh_critical_end(t, p);
  test_node(t, &ty, 8);
  fh_get_stats(h, &s0);
  assert_int_equal(s0.collections - s1.collections, 1);
  assert_int_equal(n->value, 7);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* verify=1 poisons what a moving collection vacated (README "verify"): a
 * stale pointer to an object that moved away (semispace: its old copy) or
 * died in the tail a sliding compaction freed reads FH_POISON at once. */
static int poisoned(void *argp) {
  const char *collector = argp;
  char spec[256];
  snprintf(spec, sizeof spec, "%s,heap_max=16M,verify=1", collector);
  fh_heap *h = test_child_heap(spec);
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  CHILD_CHECK(t != NULL);
  tnode *holder = child_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  for (int i = 0; i < 64; i++) child_node(t, &ty, 100 + (uint64_t)i);
  tnode *moved = child_node(t, &ty, 42), *dead = child_node(t, &ty, 43);
  fh_write_ref(t, holder, (void **)&holder->next, moved);
  tnode *stale_moved = moved; /* the bug: kept across a collection */
  CHILD_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
  fh_gc_wait(h);
  CHILD_CHECK(holder->next != stale_moved); /* it did move */
  CHILD_CHECK(holder->next->value == 42);
  /* Semispace vacates every old copy; a sliding compaction vacates the
   * tail, where the dead object lay (the moved one now has another object
   * slid over its old place). */
  if (strstr(collector, "semispace")) CHILD_CHECK(stale_moved->value == 0xdeadbeefdeadbeefull);
  CHILD_CHECK(dead->value == 0xdeadbeefdeadbeefull);
  CHILD_CHECK(dead->check == 0xdeadbeefdeadbeefull);
  return child_end(0);
}

static void test_verify_poisons_vacated_memory(void **state) {
  (void)state;
  test_skip_under_tsan("the child leaves the heap as the bug left it, compactor threads "
                      "unjoined, which TSan reports as a leak at any exit");
  for (size_t i = 0; i < NMOVING - 1; i++) { /* the bump-space collectors */
    if (needs_uffd(moving[i]) && !test_have_uffd()) continue;
    test_assert_child_ok(test_run_forked(poisoned, (void *)moving[i], 20), moving[i]);
  }
}

/* Homogeneous compaction moves every object: under verify=1 the old main
 * space is made inaccessible, so reading through a stale pointer faults
 * at once (caught here by a SIGSEGV handler) instead of reading zeroes. */
static sigjmp_buf fault_env;
static void on_fault(int sig) {
  (void)sig;
  siglongjmp(fault_env, 1);
}

static int hspace_guarded(void *arg) {
  (void)arg;
  fh_heap *h = test_child_heap("collector=mark_sweep,heap_max=16M,verify=1");
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  CHILD_CHECK(t != NULL);
  tnode *holder = child_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  for (int i = 0; i < 64; i++) child_node(t, &ty, 100 + (uint64_t)i);
  tnode *moved = child_node(t, &ty, 42);
  fh_write_ref(t, holder, (void **)&holder->next, moved);
  volatile tnode *stale = moved; /* the bug: kept across a compaction */
  CHILD_CHECK(fh_collect(t, FH_COLLECT_HSPACE_COMPACT) == 0);
  CHILD_CHECK(holder->next != stale && holder->next->value == 42);
  struct sigaction sa = {.sa_handler = on_fault}, old;
  sigemptyset(&sa.sa_mask);
  CHILD_CHECK(sigaction(SIGSEGV, &sa, &old) == 0);
  volatile int faulted = 0;
  if (sigsetjmp(fault_env, 1) == 0)
    (void)stale->value;
  else
    faulted = 1;
  sigaction(SIGSEGV, &old, NULL);
  CHILD_CHECK(faulted);
  /* The space comes back into use at the next compaction. */
  CHILD_CHECK(fh_collect(t, FH_COLLECT_HSPACE_COMPACT) == 0);
  CHILD_CHECK(fh_collect(t, FH_COLLECT_HSPACE_COMPACT) == 0);
  CHILD_CHECK(holder->next->value == 42);
  return child_end(0);
}

static void test_verify_guards_hspace_old_space(void **state) {
  (void)state;
  test_skip_under_tsan("the child leaves the heap as the bug left it");
  test_assert_child_ok(test_run_forked(hspace_guarded, NULL, 20), "mark_sweep");
}

static void test_option_parses(void **state) {
  (void)state;
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(o.gc_stress, 0);
  assert_int_equal(fh_options_parse(&o, "gc_stress=100"), 0);
  assert_int_equal(o.gc_stress, 100);
  assert_int_equal(fh_options_parse(&o, "gc_stress=x"), -1);
  assert_non_null(strstr(fh_last_error(), "gc_stress"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_option_parses),
      cmocka_unit_test(test_one_collection_every_n),
      cmocka_unit_test(test_nonmoving_and_critical),
      cmocka_unit_test(test_planted_missing_root_is_caught),
      cmocka_unit_test(test_without_stress_the_bug_hides),
      cmocka_unit_test(test_verify_poisons_vacated_memory),
      cmocka_unit_test(test_verify_guards_hspace_old_space),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
