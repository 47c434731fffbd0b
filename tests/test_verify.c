/* verify=1 catches what it exists for: a stale pointer kept across an
 * allocation without a root, and a corrupt header.  The broken heap lives in
 * a forked child, which must die with SIGABRT after printing the offending
 * object; the parent reads its stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_heap.h"

/* Run fn in a child with stderr captured; returns the text, sets *status. */
static char *run_child(void (*fn)(void), int *status) {
  int pipefd[2];
  assert_int_equal(pipe(pipefd), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(pipefd[1], 2);
    close(pipefd[0]);
    fn();
    _exit(0);
  }
  close(pipefd[1]);
  static char buf[16384];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof buf - 1 && (r = read(pipefd[0], buf + n, sizeof buf - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = 0;
  close(pipefd[0]);
  waitpid(pid, status, 0);
  return buf;
}

static void stale_pointer(void) {
  fh_heap *h = test_heap("collector=semispace,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *holder = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  tnode *unrooted = test_node(t, &ty, 2); /* only in a C local: a bug */
  fh_collect(t, FH_COLLECT_DEFAULT);      /* holder moves; unrooted is now stale */
  /* Stored behind the barrier's back (native code, memcpy): through
   * fh_write_ref, a verify=1 heap refuses the stale value at once. */
  holder->next = unrooted;
  fh_collect(t, FH_COLLECT_DEFAULT); /* verification must catch it here */
}

static void corrupt_header(void) {
  fh_heap *h = test_heap("collector=semispace,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *n = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&n);
  ((uint64_t *)n)[-1] = fh__make_header(4242, sizeof(tnode)); /* a type that does not exist */
  fh_collect(t, FH_COLLECT_DEFAULT);
}

/* FH_COLLECT_MARK_SWEEP on a bump-space heap frees dead non-moving objects
 * but cannot empty the bump space: dead bump objects that referred to
 * them stay behind.  verify=1 must not take those for a live object's bad
 * reference.  The child exits 0 when every collection passed. */
static const char *verify_collector;
static const char *const bump_collectors[] = {"semispace", "mark_compact", "concurrent_compact"};

static void dead_bump_refs(void) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(verify_collector, "heap_max=16M,verify=1", &ty, &t);
  tnode *keep = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&keep);
  for (int round = 0; round < 3; round++) {
    /* Garbage bump objects pointing at garbage non-moving ones, and a live
     * chain through both spaces. */
    for (int i = 0; i < 1000; i++) {
      tnode *nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
      tnode *b = test_node(t, &ty, 2);
      fh_write_ref(t, b, (void **)&b->next, nm);
      if (i % 100 == 0) {
        fh_write_ref(t, nm, (void **)&nm->next, keep->other);
        fh_write_ref(t, keep, (void **)&keep->other, nm);
      }
    }
    if (fh_collect(t, FH_COLLECT_MARK_SWEEP) < 0) _exit(3);
    if (fh_collect(t, FH_COLLECT_MARK_SWEEP) < 0) _exit(4); /* verified before, too */
  }
  if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) _exit(5);
  size_t n = 0;
  for (tnode *x = keep->other; x; x = x->next) n++;
  if (n != 30) _exit(6);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_mark_sweep_on_bump_heap_verifies(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bump_collectors / sizeof bump_collectors[0]; i++) {
    verify_collector = bump_collectors[i];
    int status;
    const char *err = run_child(dead_bump_refs, &status);
    char why[96];
    if (!test_child_ok(status, why, sizeof why))
      fail_msg("%s: %s:\n%.2000s", bump_collectors[i], why, err);
  }
}

/* ...while a live object's reference to a swept non-moving object is still
 * caught, after such a collection. */
static void live_ref_to_swept(void) {
  test_types ty;
  fh_thread *t;
  test_heap_attached(verify_collector, "heap_max=16M,verify=1", &ty, &t); /* never destroyed */
  tnode *holder = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  for (int i = 0; i < 100; i++) { /* dead bump objects referring to dead non-moving ones */
    tnode *b = test_node(t, &ty, 2);
    fh_write_ref(t, b, (void **)&b->next, fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
  }
  tnode *unrooted = fh_alloc_nonmoving(t, ty.node, sizeof(tnode)); /* only in a C local */
  fh_collect(t, FH_COLLECT_MARK_SWEEP); /* sweeps it; passes verification */
  fh_write_ref(t, holder, (void **)&holder->next, unrooted);
  fprintf(stderr, "injected\n");
  fh_collect(t, FH_COLLECT_MARK_SWEEP); /* verification must catch it here */
}

static void test_live_ref_to_swept_is_caught(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bump_collectors / sizeof bump_collectors[0]; i++) {
    verify_collector = bump_collectors[i];
    int status;
    const char *err = run_child(live_ref_to_swept, &status);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) || !strstr(err, "injected") ||
        !strstr(err, "reference into the non-moving space that is not an object") ||
        !strstr(err, "tnode"))
      fail_msg("%s: not caught as expected (status %#x):\n%.2000s", bump_collectors[i], status,
               err);
    /* The report names the live holder, after the injection. */
    assert_non_null(strstr(strstr(err, "injected"), "in object"));
  }
}

static void test_stale_pointer_is_caught(void **state) {
  (void)state;
  int status;
  const char *err = run_child(stale_pointer, &status);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  assert_non_null(strstr(err, "stale pointer"));
  assert_non_null(strstr(err, "tnode")); /* names the holder's type */
}

/* verify=1 checks every store: the same stale value through the barrier is
 * refused with an error, and nothing is stored. */
static void test_stale_store_is_refused(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=semispace,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *holder = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&holder);
  tnode *unrooted = test_node(t, &ty, 2);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_write_ref(t, holder, (void **)&holder->next, unrooted);
  assert_non_null(strstr(fh_last_error(), "not an object of this heap"));
  assert_null(holder->next);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_corrupt_header_is_caught(void **state) {
  (void)state;
  int status;
  const char *err = run_child(corrupt_header, &status);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  assert_non_null(strstr(err, "unregistered type"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stale_pointer_is_caught),
      cmocka_unit_test(test_stale_store_is_refused),
      cmocka_unit_test(test_corrupt_header_is_caught),
      cmocka_unit_test(test_mark_sweep_on_bump_heap_verifies),
      cmocka_unit_test(test_live_ref_to_swept_is_caught),
  };
  return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
