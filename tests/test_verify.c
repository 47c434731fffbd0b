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
  while (n < sizeof buf - 1 && (r = read(pipefd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
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
  };
  return cmocka_run_group_tests_name("verify", tests, NULL, NULL);
}
