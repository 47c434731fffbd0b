/* What the concurrent-marking suites share (support_cmark.h). */
#include "support_cmark.h"

#include <pthread.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <unistd.h>

#include "collectors/collector.h"
#include "heap/heap.h"
#include "support_heap.h"

typedef struct rewire {
  fh_heap *h;
  test_types ty;
  _Atomic int stop;
  unsigned seed;
  int bad;
  uint64_t ops;
} rewire;

enum { SLOTS = 512, KEEP = 4096 };
/* A node's value with this bit holds its identity hash (the other bits). */
#define HASHED_VALUE ((uint64_t)1 << 63)

static tnode *checked(tnode *n, int *bad) {
  if (n && n->check != test_check(n->value)) *bad = 1;
  return n;
}

static void *rewire_main(void *p) {
  rewire *r = p;
  fh_thread *t = fh_thread_attach(r->h);
  void **arr = fh_alloc(t, r->ty.array, SLOTS * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  uint64_t x = r->seed * 0x9E3779B97F4A7C15ull + 1;
  tnode *hand = NULL;
  fh_push_root(t, (void **)&hand);
  /* Nodes kept for a while (KEEP allocations), then dropped: they get old
   * before they die, so generational heaps run full cycles too. */
  void **keep = fh_alloc(t, r->ty.array, KEEP * sizeof(void *));
  fh_push_root(t, (void **)&keep);
  size_t kept = 0;
  while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t i = x % SLOTS, j = (x >> 16) % SLOTS;
    tnode *a = checked(arr[i], &r->bad), *b = checked(arr[j], &r->bad);
    switch ((x >> 32) % 7) {
    case 0: { /* a new node, linked to what slot i held (read again: the
               * allocation may have moved it) */
      tnode *n = test_node(t, &r->ty, x >> 8);
      a = arr[i];
      if (a) fh_write_ref(t, n, (void **)&n->next, a);
      fh_write_ref(t, arr, &arr[i], n);
      break;
    }
    case 1: /* move a reference from a to b, drop the original */
      if (a && b) {
        tnode *moved = checked(a->next, &r->bad);
        fh_write_ref(t, b, (void **)&b->other, moved);
        fh_write_ref(t, a, (void **)&a->next, NULL);
      }
      break;
    case 2: /* swap two array slots */
      fh_write_ref(t, arr, &arr[i], b);
      fh_write_ref(t, arr, &arr[j], a);
      break;
    case 3: /* drop from the array into the hand, then back elsewhere */
      if (hand) fh_write_ref(t, arr, &arr[j], hand);
      hand = a;
      fh_write_ref(t, arr, &arr[i], NULL);
      break;
    case 4:
      for (tnode *n = a; n; n = checked(n->next, &r->bad))
        if ((x & 7) == 0) break;
      break;
    case 5: /* identity hashes, stable across moves: the first is kept in
             * the node (value's top bit says so), later ones must equal it */
      if (a) {
        uint64_t hash = fh_object_hash(t, a) | HASHED_VALUE;
        if (!(a->value & HASHED_VALUE)) {
          a->value = hash;
          a->check = test_check(hash);
        } else if (a->value != hash) {
          r->bad = 1;
        }
      }
      break;
    default: {
      tnode *n = test_node(t, &r->ty, x >> 1);
      fh_write_ref(t, keep, &keep[kept++ % KEEP], n);
      break;
    }
    }
    if ((r->ops++ & 255) == 0) fh_safepoint(t);
    if ((r->ops & 8191) == 0) {
      fh_enter_blocking(t);
      fh_leave_blocking(t);
    }
  }
  for (size_t k = 0; k < SLOTS; k++)
    for (tnode *n = arr[k]; n; n = n->next) checked(n, &r->bad);
  fh_pop_roots(t, 3);
  fh_thread_detach(t);
  return NULL;
}

/* A thread that attaches, allocates and detaches over and over. */
static void *churn_main(void *p) {
  rewire *r = p;
  while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
    fh_thread *t = fh_thread_attach(r->h);
    for (int i = 0; i < 200; i++) (void)test_node(t, &r->ty, (uint64_t)i);
    fh_thread_detach(t);
  }
  return NULL;
}

void test_rewire_run(const char *spec, int ms) {
  enum { N = 4 };
  fh_heap *h = test_heap(spec);
  rewire r[N];
  pthread_t th[N + 1];
  test_types ty;
  test_register(h, &ty);
  for (int i = 0; i < N; i++) {
    r[i] = (rewire){.h = h, .ty = ty, .seed = (unsigned)i + 1};
    assert_int_equal(pthread_create(&th[i], NULL, rewire_main, &r[i]), 0);
  }
  rewire churn = {.h = h, .ty = ty};
  assert_int_equal(pthread_create(&th[N], NULL, churn_main, &churn), 0);
  uint64_t t0 = heap_now_ns();
  fh_stats st;
  /* At least ms, and until a cycle has marked concurrently (a slow build,
   * TSan's, may need longer for the generational heap's first full one),
   * at most 12 s. */
  uint64_t el;
  do {
    usleep(10000);
    fh_get_stats(h, &st);
    el = heap_now_ns() - t0;
  } while ((el < (uint64_t)ms * 1000000u && st.kind_pauses[FH_PAUSE_REMARK] < 100) ||
           (!st.kind_pauses[FH_PAUSE_REMARK] && el < 12000000000u));
  for (int i = 0; i < N; i++) atomic_store(&r[i].stop, 1);
  atomic_store(&churn.stop, 1);
  for (int i = 0; i <= N; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N; i++) assert_false(r[i].bad);
  fh_get_stats(h, &st);
  assert_true(st.concurrent_marks > 0);
  assert_true(st.kind_pauses[FH_PAUSE_REMARK] > 0);
  fh_heap_destroy(h);
}


void test_cmark_start_cycle(fh_thread *t) {
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_ALLOC_TRIGGER, t->heap->collections), 0);
}

void test_cmark_remark(fh_thread *t) {
  assert_int_equal(gc_run(t, FH_COLLECT_DEFAULT, GC_CAUSE_REMARK, 0), 0);
  assert_null(t->heap->cm);
  fh_gc_wait(t->heap);
}

void test_cmark_destroy_while_marking(const char *collector, const char *rest) {
  /* The real marker, a heap large enough that it is still marking. */
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, rest, &ty, &t);
  void **arr = fh_alloc(t, ty.array, 20000 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < 20000; i++) fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)i));
  test_cmark_start_cycle(t);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h); /* abandons the cycle, joins the marker */
}

static int fork_child_ok(fh_heap *h, const test_types *ty) {
  fh_thread *t = fh_thread_attach(h);
  if (!t) return 0;
  for (int i = 0; i < 1000; i++) (void)test_node(t, ty, (uint64_t)i);
  int ok = fh_collect(t, FH_COLLECT_DEFAULT) == 0;
  fh_gc_wait(h);
  fh_thread_detach(t);
  return ok;
}

void test_cmark_fork_while_marking(const char *collector, const char *rest) {
  if (test_sanitizer_is("tsan")) test_skip_under_tsan("fork of a multi-threaded process");
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, rest, &ty, &t);
  void **arr = fh_alloc(t, ty.array, 5000 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < 5000; i++) {
    fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)i));
    (void)test_node(t, &ty, 0); /* garbage between them */
  }
  for (int round = 0; round < 2; round++) {
    h->cm_manual = round == 0; /* a cycle that stays open; then the real marker */
    test_cmark_start_cycle(t);
    fh_enter_blocking(t); /* the fork handler stops this heap */
    pid_t pid = fork();
    if (pid == 0) {
      test_child_signals(20);
      fh_leave_blocking(t);
      /* The child finds no cycle half-marked. */
      CHILD_CHECK(h->cm == NULL);
      for (int i = 0; i < 5000; i++) CHILD_CHECK(((tnode *)arr[i])->value == (uint64_t)i);
      fh_thread_detach(t);
      CHILD_CHECK(fork_child_ok(h, &ty));
      _exit(0);
    }
    fh_leave_blocking(t);
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    test_assert_child_ok(status, "child after a fork while marking");
    assert_null(h->cm);
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
    for (int i = 0; i < 5000; i++) assert_int_equal(((tnode *)arr[i])->value, (uint64_t)i);
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

void test_cmark_prefork_while_marking(const char *collector, const char *rest) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, rest, &ty, &t);
  h->cm_manual = 1; /* the cycle stays open until fh_prefork */
  void **arr = fh_alloc(t, ty.array, 100 * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  for (int i = 0; i < 100; i++) fh_write_ref(t, arr, &arr[i], test_node(t, &ty, (uint64_t)i));
  test_cmark_start_cycle(t);
  assert_non_null(h->cm);
  assert_int_equal(fh_prefork(t), 0);
  assert_null(h->cm);
  for (int i = 0; i < 100; i++) assert_int_equal(((tnode *)arr[i])->value, (uint64_t)i);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}
