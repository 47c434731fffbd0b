#include "support_heap.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

fh_heap *test_heap(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (spec && fh_options_parse(&o, spec) < 0) fail_msg("options '%s': %s", spec, fh_last_error());
  fh_heap *h = fh_heap_create(&o);
  if (!h) fail_msg("heap '%s': %s", spec ? spec : "", fh_last_error());
  return h;
}

fh_heap *test_heap_attached(const char *collector, const char *rest, test_types *ty,
                            fh_thread **t) {
  char spec[512];
  snprintf(spec, sizeof spec, "collector=%s,%s", collector, rest);
  fh_heap *h = test_heap(spec);
  test_register(h, ty);
  *t = fh_thread_attach(h);
  assert_non_null(*t);
  return h;
}

/* concurrent_compact slides a cycle in the pause when little is live
 * (collectors/mc_policy.h), and the suites' heaps are small: every test
 * binary runs with the flip forced, so that the suites keep exercising it,
 * unless FH_MC_SLIDE says otherwise (tests/test_slide.c lets the policy
 * choose). */
__attribute__((constructor)) static void flip_by_default(void) { setenv("FH_MC_SLIDE", "0", 0); }

void test_policy_choose(const char *flip_cost_us) {
  setenv("FH_MC_SLIDE", "", 1);
  setenv("FH_MC_FLIP_COST_US", flip_cost_us, 1);
}

void test_policy_flip_always(void) {
  unsetenv("FH_MC_FLIP_COST_US");
  setenv("FH_MC_SLIDE", "0", 1);
}

int test_register_types(fh_heap *h, test_types *ty) {
  static const uint32_t node_refs[] = {0, 8};
  ty->node = fh_register_type(
      h, &(fh_type){.name = "tnode", .size = sizeof(tnode), .nrefs = 2, .ref_offsets = node_refs});
  ty->array = fh_register_type(h, &(fh_type){.name = "refarray", .flags = FH_TYPE_REF_ARRAY});
  ty->bytes = fh_register_type(h, &(fh_type){.name = "bytes"});
  return ty->node && ty->array && ty->bytes;
}

void test_register(fh_heap *h, test_types *ty) { assert_true(test_register_types(h, ty)); }

fh_heap *test_child_heap(const char *spec) {
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, spec) < 0) {
    fprintf(stderr, "options '%s': %s\n", spec, fh_last_error());
    return NULL;
  }
  fh_heap *h = fh_heap_create(&o);
  if (!h) fprintf(stderr, "heap '%s': %s\n", spec, fh_last_error());
  return h;
}

tnode *test_node(fh_thread *t, const test_types *ty, uint64_t value) {
  tnode *n = fh_alloc(t, ty->node, sizeof(tnode));
  if (!n) fail_msg("fh_alloc: %s", fh_last_error());
  n->value = value;
  n->check = test_check(value);
  return n;
}

void test_list_build(fh_thread *t, const test_types *ty, tnode **head, size_t n) {
  for (size_t i = 0; i < n; i++) {
    tnode *x = test_node(t, ty, i);
    fh_write_ref(t, x, (void **)&x->next, *head);
    *head = x;
  }
}

void test_ring_build(fh_thread *t, const test_types *ty, test_ring *g, size_t n,
                     unsigned nonmoving_every, unsigned garbage) {
  g->n = n;
  g->arr = fh_alloc(t, ty->array, n * sizeof(void *));
  assert_non_null(g->arr);
  fh_push_root(t, (void **)&g->arr);
  for (size_t i = 0; i < n; i++) {
    tnode *x = i % nonmoving_every == 0 ? fh_alloc_nonmoving(t, ty->node, sizeof(tnode))
                                        : test_node(t, ty, i);
    assert_non_null(x);
    x->value = i;
    x->check = test_check(i);
    fh_write_ref(t, g->arr, &g->arr[i], x);
    for (unsigned k = 0; k < garbage; k++) test_node(t, ty, 0);
  }
  for (size_t i = 0; i < n; i++) {
    tnode *x = g->arr[i];
    fh_write_ref(t, x, (void **)&x->next, g->arr[(i + 1) % n]);
  }
}

fh_collect_kind test_collect_kind(const char *collector, int i) {
  if (strcmp(collector, "mark_sweep") == 0)
    return i % 2 ? FH_COLLECT_HSPACE_COMPACT : FH_COLLECT_MARK_SWEEP;
  static const fh_collect_kind k[] = {FH_COLLECT_DEFAULT, FH_COLLECT_SEMISPACE,
                                      FH_COLLECT_MARK_COMPACT, FH_COLLECT_CONCURRENT_COMPACT,
                                      FH_COLLECT_MARK_SWEEP};
  return k[i % 5];
}

/* ---- sanitizers, capabilities ---- */

int test_sanitizer_is(const char *name) {
  const char *san = getenv("FH_TEST_SANITIZER");
  return san && strcmp(san, name) == 0;
}

int test_sanitized(void) {
  const char *san = getenv("FH_TEST_SANITIZER");
  return san && *san;
}

void test_skip_under_tsan(const char *why) {
  if (!test_sanitizer_is("tsan")) return;
  print_message("skipped under TSan: %s\n", why);
  skip(); /* cmocka's _skip() longjmps out of the test, from here too */
}

int test_have_uffd(void) {
  unsigned c = fh_capabilities();
  return (c & FH_CAP_UFFD) && (c & FH_CAP_DONTUNMAP);
}

void test_skip_without_uffd(void) {
  if (test_have_uffd()) return;
  fprintf(stderr, "userfaultfd unavailable here: skipped\n");
  skip();
}

/* ---- forked children ---- */

void test_child_report(const char *file, int line, const char *expr) {
  fprintf(stderr, "pid %d: %s:%d: %s (%s)\n", (int)getpid(), file, line, expr, fh_last_error());
}

void test_child_signals(unsigned timeout_s) {
  /* cmocka's handlers, inherited, would longjmp back into the suite's
   * runner and go on running the other tests in the child (or turn a fatal
   * signal into an exit code): die of the signal instead, so the parent
   * can name it. */
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS};
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], SIG_DFL);
  alarm(timeout_s);
}

int test_run_forked(int (*fn)(void *), void *arg, unsigned timeout_s) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    test_child_signals(timeout_s);
    _exit(fn(arg));
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

int test_run_isolated(int (*fn)(void *), void *arg, unsigned timeout_s) {
  if (test_sanitizer_is("tsan")) return (fn(arg) & 0xff) << 8; /* a wait status: exited */
  return test_run_forked(fn, arg, timeout_s);
}

int test_child_ok(int status, char *why, size_t n) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
  if (WIFSIGNALED(status))
    snprintf(why, n, "child killed by signal %d%s", WTERMSIG(status),
             WTERMSIG(status) == SIGALRM ? " (hung: alarm)" : "");
  else
    snprintf(why, n, "child exited with %d", WEXITSTATUS(status));
  return 0;
}

void test_assert_child_ok_at(int status, const char *what, const char *file, int line) {
  char why[96];
  if (test_child_ok(status, why, sizeof why)) return;
  print_error("ERROR: %s: %s\n", what, why);
  _fail(file, line); /* the caller's line, as fail_msg there would give */
}

size_t test_spaces_resident(fh_heap *h) {
  fh_stats s;
  fh_get_stats(h, &s);
  size_t r = 0;
  for (unsigned i = 0; i < s.nspaces; i++) r += s.spaces[i].resident;
  return r;
}
