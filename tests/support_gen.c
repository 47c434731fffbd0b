#include "support_gen.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_heap.h"
#include "collectors/mc.h"
#include "heap/barrier.h"

typedef struct stress_arg {
  fh_heap *h;
  const test_types *ty;
  int iters, collect_every, full_period;
  int failed;
} stress_arg;

static void *stress_thread(void *p) {
  stress_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  enum { SLOTS = 512 };
  void **table = fh_alloc(t, a->ty->array, SLOTS * sizeof(void *));
  fh_push_root(t, (void **)&table);
  for (int i = 0; i < a->iters; i++) {
    tnode *n = test_node(t, a->ty, (uint64_t)i);
    size_t s = (size_t)(i * 7919) % SLOTS;
    /* Chain onto the slot's list: old heads get young tails. */
    tnode *head = table[s];
    if (head && head->value % 3 == 0) {
      fh_write_ref(t, head, (void **)&head->other, n);
    } else {
      fh_write_ref(t, n, (void **)&n->next, head);
      fh_write_ref(t, table, &table[s], n);
    }
    if (i % a->collect_every == 0 &&
        fh_collect(t, (i / a->collect_every) % a->full_period ? FH_COLLECT_YOUNG
                                                              : FH_COLLECT_DEFAULT))
      a->failed = 1;
    if (i % 997 == 0) { /* cut a chain: garbage in the old generation too */
      tnode *hd = table[(size_t)i % SLOTS];
      if (hd) fh_write_ref(t, hd, (void **)&hd->next, NULL);
    }
  }
  for (size_t s = 0; s < SLOTS; s++)
    for (tnode *n = table[s]; n; n = n->next) {
      if (n->check != test_check(n->value)) a->failed = 2;
      if (n->other && ((tnode *)n->other)->check != test_check(((tnode *)n->other)->value))
        a->failed = 3;
    }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

void test_gen_stress(const char *spec, int iters, int collect_every, int full_period) {
  fh_heap *h = test_heap(spec);
  test_types ty;
  test_register(h, &ty);
  enum { N = 3 };
  pthread_t th[N];
  stress_arg args[N];
  for (int i = 0; i < N; i++) {
    args[i] = (stress_arg){h, &ty, iters, collect_every, full_period, 0};
    assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &args[i]), 0);
  }
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N; i++) assert_int_equal(args[i].failed, 0);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.young_collections > 0 && s.full_collections > 0);
  assert_true(s.bytes_promoted > 0);
  fh_heap_destroy(h);
}

void test_gen_policy_workload(fh_heap *h, fh_thread *t, const test_types *ty) {
  enum { KEEP = 50000 };
  void **keep = fh_alloc(t, ty->array, KEEP * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  for (int i = 0; i < 1000000; i++) {
    tnode *n = test_node(t, ty, (uint64_t)i);
    if (i % 10 == 0) fh_write_ref(t, keep, &keep[(i / 10) % KEEP], n);
  }
  for (int i = 0; i < KEEP; i++) {
    tnode *n = keep[i];
    assert_non_null(n);
    assert_int_equal(n->check, test_check(n->value));
    assert_int_equal(n->value % 10, 0);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.young_collections > 0);
  assert_true(s.full_collections > 0);
  fh_pop_roots(t, 1);
}

const char *const test_gen_mc_collectors[TEST_GEN_NCOLL] = {"mark_compact", "concurrent_compact"};

void test_gen_done(fh_heap *h, fh_thread *t) {
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

fh_heap *test_gen_mc_heap(int c, const char *rest, test_types *ty, fh_thread **t) {
  return test_heap_attached(test_gen_mc_collectors[c == 1 && test_have_uffd()], rest, ty, t);
}

int test_gen_in_old(fh_heap *h, const void *p) {
  return h->mc && h->mc->gen.valid && (uintptr_t)p >= h->bump[h->active].space.begin &&
         (uintptr_t)p < h->mc->gen.old_end;
}

int test_gen_in_mid(fh_heap *h, const void *p) {
  return h->mc && h->mc->gen.valid && (uintptr_t)p >= h->mc->gen.old_end &&
         (uintptr_t)p < h->mc->gen.mid_end;
}

int test_gen_card_dirty(fh_heap *h, const void *obj) { return *card_for(h, (uintptr_t)obj) != 0; }

void test_gen_garbage(fh_thread *t, const test_types *ty, int n) {
  for (int g = 0; g < n; g++) test_node(t, ty, 0);
}

/* The child of test_gen_missing_barrier: verify=1 must abort it. */
static int missing_barrier_child(const char *collector, int (*in_old)(fh_heap *, const void *)) {
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=16M,verify=1", collector);
  fh_heap *h = test_child_heap(spec);
  CHILD_CHECK(h != NULL);
  test_types ty;
  CHILD_CHECK(test_register_types(h, &ty));
  fh_thread *t = fh_thread_attach(h);
  tnode *old = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&old);
  fh_collect(t, FH_COLLECT_YOUNG);
  fh_collect(t, FH_COLLECT_YOUNG);
  CHILD_CHECK(in_old(h, old) && !test_gen_card_dirty(h, old));
  old->other = test_node(t, &ty, 2); /* the bug: no fh_write_ref */
  fh_collect(t, FH_COLLECT_YOUNG);   /* verify aborts here */
  return 0;
}

void test_gen_missing_barrier(const char *collector, int (*in_old)(fh_heap *, const void *)) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    test_child_signals(20);
    _exit(missing_barrier_child(collector, in_old));
  }
  close(fds[1]);
  static char out[1 << 16];
  size_t n = 0;
  for (ssize_t r; (r = read(fds[0], out + n, sizeof out - 1 - n)) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    n += (size_t)r;
  }
  out[n] = 0;
  close(fds[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) fprintf(stderr, "%s", out);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  assert_non_null(strstr(out, "before young collection"));
  assert_non_null(strstr(out, "clean card"));
  assert_non_null(strstr(out, "tnode"));    /* the holder's type, */
  assert_non_null(strstr(out, "offset 8")); /* and its slot */
}

void test_gen_large_cards_first_young(fh_heap *h, fh_thread *t, const test_types *ty,
                                      void ***empty, void ***holder) {
  *empty = fh_alloc(t, ty->array, 64 << 10);
  *holder = fh_alloc(t, ty->array, 64 << 10);
  tnode *nd = test_node(t, ty, 7); /* an allocation since holder's: */
  fh_write_ref(t, *holder, &(*holder)[7], nd); /* a store through the barrier */
  assert_true(test_gen_card_dirty(h, *empty)); /* born dirty */
  assert_int_equal(fh_collect(t, FH_COLLECT_YOUNG), 0);
  assert_false(test_gen_card_dirty(h, *empty));
  assert_true(test_gen_card_dirty(h, *holder)); /* its node is still young */
}
