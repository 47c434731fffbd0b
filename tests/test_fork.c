/* Forking a heap, in-process: after fh_prefork and with a plain fork(),
 * for every collector.  Each child checks the whole heap, allocates,
 * collects with every kind its heap can run, writes zygote objects and
 * keeps what they point to alive, checks again and exits 0; the parent
 * checks the exit status and then its own heap.  A child that hangs (a
 * deadlock on a heap thread that does not exist in it) is killed by
 * alarm() and fails the test. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "support_heap.h"

/* TSan kills a child of a multi-threaded process that starts a thread, and
 * every process here has liburcu's thread before it forks. */
#define NO_FORK_UNDER_TSAN "no new threads after a multi-threaded fork"

typedef test_ring graph;

static void build(fh_thread *t, const test_types *ty, graph *g, size_t n) {
  test_ring_build(t, ty, g, n, 4, 2);
}

static int graph_ok(const graph *g, uint64_t other_base) {
  for (size_t i = 0; i < g->n; i++) {
    tnode *x = g->arr[i];
    if (x->value != i || x->check != test_check(i) || x->next != g->arr[(i + 1) % g->n])
      return 0;
    if (other_base && i % 5 == 0 &&
        (!x->other || x->other->value != other_base + i ||
         x->other->check != test_check(other_base + i)))
      return 0;
  }
  return 1;
}

/* Pages of [lo, hi) mapped only by this process (pagemap bit 56): after a
 * fork, the pages this process has written since. */
static size_t exclusive_pages(uintptr_t lo, uintptr_t hi) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return (size_t)-1;
  size_t n = 0;
  for (uintptr_t p = lo & ~(uintptr_t)4095; p < hi; p += 4096) {
    uint64_t e = 0;
    if (pread(fd, &e, sizeof e, (off_t)(p / 4096 * 8)) != sizeof e) break;
    if ((e >> 63) & 1 && (e >> 56) & 1) n++;
  }
  close(fd);
  return n;
}

static int cmp_uintptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* The child's work; returns only by _exit.  The zygote pages it may copy
 * are those it writes, counted from right after the fork (jemalloc's own
 * fork handler has written a few pages of the frozen arenas' metadata by
 * then: its mutexes live there). */
static void child_main(fh_heap *h, fh_thread *t, const test_types *ty, graph *g,
                       const char *collector, int hooks) {
  alarm(120); /* a deadlock fails the test; a loaded machine under ASan does not */
  if (hooks) fh_postfork_child(h);
  CHILD_CHECK(h->nthreads == 1);
  heap_verify(h, "in the child, after fork");
  CHILD_CHECK(graph_ok(g, 0));
  int zygote = zygote_space_present(&h->zygote);
  size_t dirty_before = zygote ? exclusive_pages(h->zygote.space.begin, h->zygote.space.end) : 0;
  /* Zygote (or old) objects point at objects made in the child. */
  for (size_t i = 0; i < g->n; i += 5) {
    tnode *x = g->arr[i];
    tnode *fresh = fh_alloc(t, ty->node, sizeof(tnode));
    CHILD_CHECK(fresh != NULL);
    fresh->value = 7000000 + i;
    fresh->check = test_check(7000000 + i);
    fh_write_ref(t, x, (void **)&x->other, fresh);
  }
  for (int round = 0; round < 5; round++) {
    for (int k = 0; k < 10000; k++) CHILD_CHECK(fh_alloc(t, ty->node, sizeof(tnode)) != NULL);
    CHILD_CHECK(fh_collect(t, test_collect_kind(collector, round)) == 0);
    fh_gc_wait(h);
    heap_verify(h, "in the child, after a collection");
    CHILD_CHECK(graph_ok(g, 7000000));
  }
  if (zygote) {
    /* The child wrote one slot in every fifth node: exactly the pages of
     * those slots may have been copied, none that only collections touch. */
    static uintptr_t pages[4096];
    size_t np = 0, written = 0;
    for (size_t i = 0; i < g->n && np < 4096; i += 5)
      pages[np++] = (uintptr_t)&((tnode *)g->arr[i])->other & ~(uintptr_t)4095;
    qsort(pages, np, sizeof pages[0], cmp_uintptr);
    for (size_t i = 0; i < np; i++) written += i == 0 || pages[i] != pages[i - 1];
    size_t dirty = exclusive_pages(h->zygote.space.begin, h->zygote.space.end);
    if (dirty - dirty_before > written) {
      fprintf(stderr, "child: %zu zygote pages copied, the program wrote %zu\n",
              dirty - dirty_before, written);
      _exit(2);
    }
  }
  _exit(0);
}

static void wait_child(pid_t pid) {
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) fail_msg("child killed by signal %d", WTERMSIG(status));
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void parent_after(fh_heap *h, fh_thread *t, const test_types *ty, graph *g,
                         const char *collector) {
  heap_verify(h, "in the parent, after the child");
  assert_true(graph_ok(g, 0));
  for (int round = 0; round < 3; round++) {
    for (int k = 0; k < 20000; k++) test_node(t, ty, 0);
    assert_int_equal(fh_collect(t, test_collect_kind(collector, round)), 0);
    fh_gc_wait(h);
    assert_true(graph_ok(g, 0));
  }
}

static fh_heap *make_heap_with(const char *collector, const char *extra, test_types *ty) {
  char spec[200];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=64M,non_moving_max=32M%s", collector, extra);
  fh_heap *h = test_heap(spec);
  test_register(h, ty);
  return h;
}

static fh_heap *make_heap(const char *collector, test_types *ty) {
  return make_heap_with(collector, "", ty);
}

static void prefork_fork(const char *collector) {
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  test_types ty;
  fh_heap *h = make_heap(collector, &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 4000);
  assert_int_equal(fh_prefork(t), 0);
  pid_t pids[2];
  for (int c = 0; c < 2; c++) { /* two children at once share the zygote */
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) child_main(h, t, &ty, &g, collector, 1);
  }
  fh_postfork_parent(h);
  for (int c = 0; c < 2; c++) wait_child(pids[c]);
  parent_after(h, t, &ty, &g, collector);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_prefork_semispace(void **s) { (void)s; prefork_fork("semispace"); }
static void test_prefork_gen_semispace(void **s) { (void)s; prefork_fork("gen_semispace"); }
static void test_prefork_mark_compact(void **s) { (void)s; prefork_fork("mark_compact"); }
static void test_prefork_concurrent(void **s) { (void)s; prefork_fork("concurrent_compact"); }
static void test_prefork_mark_sweep(void **s) { (void)s; prefork_fork("mark_sweep"); }

/* A mutator thread that keeps the parent busy while it forks: allocating,
 * polling safepoints, never calling the fork hooks. */
typedef struct busy {
  fh_heap *h;
  const test_types *ty;
  _Atomic int stop, started;
} busy;

static void *busy_main(void *arg) {
  busy *b = arg;
  fh_thread *t = fh_thread_attach(b->h);
  atomic_store(&b->started, 1);
  while (!atomic_load(&b->stop)) {
    for (int k = 0; k < 1000; k++) (void)fh_alloc(t, b->ty->node, sizeof(tnode));
    fh_safepoint(t);
  }
  fh_thread_detach(t);
  return NULL;
}

/* A plain fork() (no hooks) from a process with a second attached thread
 * and, for the concurrent collector, a compaction phase still running: the
 * atfork handlers let the phase end and close the userfaultfd; the child
 * detaches the thread it does not have and collects without waiting for it. */
static void plain_fork_with(const char *collector, const char *extra) {
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  alarm(120); /* a deadlock kills the suite instead of hanging it */
  test_types ty;
  fh_heap *h = make_heap_with(collector, extra, &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 4000);
  busy b = {.h = h, .ty = &ty};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, busy_main, &b), 0);
  while (!atomic_load(&b.started)) fh_safepoint(t);
  for (int round = 0; round < 3; round++) {
    /* returns after the pause: the concurrent phase may still run */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    /* Round 1 forks from inside a blocking region, where the thread must
     * still be after the fork (the busy thread's collections would wait
     * for it forever otherwise). */
    if (round == 1) fh_enter_blocking(t);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      if (round == 1) fh_leave_blocking(t);
      if (h->mc) CHILD_CHECK(h->mc->uffd == NULL); /* no fd crossed the fork */
      child_main(h, t, &ty, &g, collector, 0);
    }
    if (round != 1) fh_enter_blocking(t); /* the busy thread may collect while we wait */
    int status = 0;
    pid_t w = waitpid(pid, &status, 0);
    fh_leave_blocking(t);
    assert_int_equal(w, pid);
    if (WIFSIGNALED(status)) fail_msg("child killed by signal %d", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  atomic_store(&b.stop, 1);
  fh_enter_blocking(t);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  parent_after(h, t, &ty, &g, collector);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  alarm(0);
}

static void plain_fork(const char *collector) { plain_fork_with(collector, ""); }

static void test_plain_fork_semispace(void **s) { (void)s; plain_fork("semispace"); }
static void test_plain_fork_gen_semispace(void **s) { (void)s; plain_fork("gen_semispace"); }
static void test_plain_fork_mark_compact(void **s) { (void)s; plain_fork("mark_compact"); }
static void test_plain_fork_concurrent(void **s) { (void)s; plain_fork("concurrent_compact"); }
static void test_plain_fork_mark_sweep(void **s) { (void)s; plain_fork("mark_sweep"); }
/* Faults served by a handler thread: the thread is joined before the fork. */
static void test_plain_fork_concurrent_thread_mode(void **s) {
  (void)s;
  plain_fork_with("concurrent_compact", ",uffd_sigbus=0");
}

/* A plain fork() while the background homogeneous compaction thread runs:
 * the prepare handler waits for it; the child neither has it nor waits. */
static void test_fork_during_background_compaction(void **s) {
  (void)s;
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  test_types ty;
  fh_heap *h = make_heap_with("mark_sweep", ",hspace_fragmentation_pct=0,hspace_min_interval_ms=0",
                              &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 4000);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  for (int round = 0; round < 3; round++) {
    fh_set_background(h, 1); /* starts the compaction on a heap thread */
    fh_set_background(h, 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      alarm(120);
      CHILD_CHECK(h->nthreads == 1);
      CHILD_CHECK(graph_ok(&g, 0));
      CHILD_CHECK(fh_collect(t, FH_COLLECT_HSPACE_COMPACT) == 0);
      CHILD_CHECK(fh_collect(t, FH_COLLECT_MARK_SWEEP) == 0);
      heap_verify(h, "in the child");
      CHILD_CHECK(graph_ok(&g, 0));
      _exit(0);
    }
    fh_enter_blocking(t); /* the background compaction may want us parked */
    int status = 0;
    pid_t w = waitpid(pid, &status, 0);
    fh_leave_blocking(t);
    assert_int_equal(w, pid);
    if (WIFSIGNALED(status)) fail_msg("child killed by signal %d", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(graph_ok(&g, 0));
  }
  parent_after(h, t, &ty, &g, "mark_sweep");
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Pitchfork's reforking: a warmed-up child becomes the new mold.  It adds
 * a zygote generation of its own and forks a grandchild, which sees both
 * generations intact and collects with every kind. */
static void refork(const char *collector) {
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  test_types ty;
  fh_heap *h = make_heap(collector, &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g1;
  build(t, &ty, &g1, 2000);
  assert_int_equal(fh_prefork(t), 0);
  pid_t mold = fork();
  assert_true(mold >= 0);
  if (mold == 0) {
    alarm(120);
    fh_postfork_child(h);
    graph g2;
    g2.n = 2000;
    g2.arr = fh_alloc(t, ty.array, g2.n * sizeof(void *));
    CHILD_CHECK(g2.arr != NULL);
    fh_push_root(t, (void **)&g2.arr);
    for (size_t i = 0; i < g2.n; i++) {
      tnode *x = fh_alloc(t, ty.node, sizeof(tnode));
      CHILD_CHECK(x != NULL);
      x->value = i;
      x->check = test_check(i);
      fh_write_ref(t, g2.arr, &g2.arr[i], x);
    }
    for (size_t i = 0; i < g2.n; i++) {
      tnode *x = g2.arr[i];
      fh_write_ref(t, x, (void **)&x->next, g2.arr[(i + 1) % g2.n]);
    }
    CHILD_CHECK(fh_prefork(t) == 0);
    CHILD_CHECK(h->zygote.generations == 2);
    CHILD_CHECK(space_contains(&h->zygote.space, g2.arr[7]));
    pid_t grandchild = fork();
    CHILD_CHECK(grandchild >= 0);
    if (grandchild == 0) {
      fh_postfork_child(h);
      CHILD_CHECK(graph_ok(&g2, 0));
      child_main(h, t, &ty, &g1, collector, 0);
    }
    fh_postfork_parent(h);
    int st = 0;
    CHILD_CHECK(waitpid(grandchild, &st, 0) == grandchild);
    CHILD_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHILD_CHECK(graph_ok(&g1, 0) && graph_ok(&g2, 0));
    _exit(0);
  }
  fh_postfork_parent(h);
  wait_child(mold);
  parent_after(h, t, &ty, &g1, collector);
  assert_int_equal(h->zygote.generations, 1); /* the mold's generation was its own */
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_refork_semispace(void **s) { (void)s; refork("semispace"); }
static void test_refork_gen_semispace(void **s) { (void)s; refork("gen_semispace"); }
static void test_refork_concurrent(void **s) { (void)s; refork("concurrent_compact"); }
static void test_refork_mark_sweep(void **s) { (void)s; refork("mark_sweep"); }

/* Threads of this process, as the kernel counts them. */
static int task_count(void) {
  int n = -1;
  FILE *st = fopen("/proc/self/status", "r");
  char line[128];
  while (st && fgets(line, sizeof line, st))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  if (st) fclose(st);
  return n;
}

/* fh_prefork leaves no heap thread running and no userfaultfd open: the
 * process has as many threads as before the first collection (ART polls
 * the same number before forking). */
static void *no_op(void *arg) { return arg; }

static void test_prefork_parks_heap_threads(void **s) {
  (void)s;
  /* A sanitizer runtime starts a thread of its own with the process's
   * first pthread_create (TSan's background thread), which then stays:
   * let that happen before counting. */
  pthread_t first;
  assert_int_equal(pthread_create(&first, NULL, no_op, NULL), 0);
  pthread_join(first, NULL);
  test_types ty;
  fh_heap *h = make_heap_with("concurrent_compact", ",uffd_sigbus=0", &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 2000);
  int before = task_count();
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0); /* worker + handler thread */
  print_message("threads: %d before, %d after a concurrent collection\n", before, task_count());
  assert_int_equal(fh_prefork(t), 0);
  assert_true(!h->mc || (!h->mc->uffd && !h->mc->worker_joinable));
  /* A joined thread is still counted until the kernel reaps it: its join
   * returns when it clears its tid, a little before its exit completes
   * (seen under load: 2 counted where 1 was expected).  Poll, as ART does
   * before it forks. */
  for (int i = 0; i < 2000 && task_count() != before; i++) usleep(1000);
  assert_int_equal(task_count(), before);
  assert_true(graph_ok(&g, 0));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* fork() from one thread while another makes the process's first
 * jemalloc call (a mark_sweep heap's malloc spaces start the private
 * jemalloc, Makefile: JE_PRIVATE): a child forked during the start-up
 * inherited jemalloc's start-up lock held and waited for a thread it does
 * not have, at its first jemalloc call (heap/fork.c: the prepare handler
 * now waits for the start-up).  Each round runs in a fresh child of this
 * process, which itself never calls jemalloc before this test (the first
 * of the suite), so that every round meets a start-up. */
enum { START_ROUNDS = 50, START_FORKS = 40 };

static void *make_mark_sweep_heap(void *arg) {
  (void)arg;
  fh_options o;
  fh_options_init(&o);
  o.collector = FH_MARK_SWEEP;
  fh_heap *h = fh_heap_create(&o);
  if (h) fh_heap_destroy(h);
  return h ? arg : (void *)1;
}

static int start_race_round(void *arg) {
  (void)arg;
  pthread_t th;
  CHILD_CHECK(pthread_create(&th, NULL, make_mark_sweep_heap, NULL) == 0);
  pid_t pids[START_FORKS];
  for (int i = 0; i < START_FORKS; i++) { /* back to back, to meet the start-up */
    pid_t pid = fork();
    CHILD_CHECK(pid >= 0);
    if (pid == 0) {
      alarm(10); /* a hang is the failure */
      CHILD_CHECK(make_mark_sweep_heap(NULL) == NULL);
      _exit(0);
    }
    pids[i] = pid;
  }
  for (int i = 0; i < START_FORKS; i++) {
    int st = 0;
    CHILD_CHECK(waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  void *r = NULL;
  CHILD_CHECK(pthread_join(th, &r) == 0 && r == NULL);
  return 0;
}

static void test_fork_while_jemalloc_starts(void **s) {
  (void)s;
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  /* The other thread allocates (fh_heap_create's calloc) while this one
   * forks: under ASan, whose allocator (this toolchain's libasan) holds no
   * lock across fork(), a child inherited its size-class lock held and
   * hung in calloc. */
  if (test_sanitizer_is("asan")) {
    print_message("skipped under ASan: its allocator is not fork-safe while another thread allocates\n");
    skip();
  }
  for (int r = 0; r < START_ROUNDS; r++)
    test_assert_child_ok(test_run_forked(start_race_round, NULL, 60), "fork during start-up");
}

/* fh_postfork_child starts the child's statistics afresh; the parent's
 * are kept. */
static void test_postfork_child_resets_counters(void **s) {
  (void)s;
  test_skip_under_tsan(NO_FORK_UNDER_TSAN);
  test_types ty;
  fh_heap *h = make_heap("semispace", &ty);
  fh_thread *t = fh_thread_attach(h);
  graph g;
  build(t, &ty, &g, 500);
  assert_int_equal(fh_prefork(t), 0);
  fh_stats before;
  fh_get_stats(h, &before);
  assert_true(before.collections >= 2);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    fh_postfork_child(h);
    fh_stats st;
    fh_get_stats(h, &st);
    CHILD_CHECK(st.collections == 0 && st.bytes_allocated == 0 && st.pause_ns_total == 0);
    uint64_t hist = 0; /* the pause records describe this process too */
    for (unsigned k = 0; k < FH_PAUSE_BUCKETS; k++) hist += st.pause_hist[k];
    CHILD_CHECK(st.pauses == 0 && hist == 0 && st.kind_pauses[FH_PAUSE_FULL] == 0 &&
                st.recent_pauses[0].ns == 0);
    _exit(0);
  }
  fh_postfork_parent(h);
  wait_child(pid);
  fh_stats after;
  fh_get_stats(h, &after);
  assert_int_equal(after.collections, before.collections);
  fh_postfork_child(NULL);
  fh_postfork_parent(NULL);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fork_while_jemalloc_starts), /* first: see there */
      cmocka_unit_test(test_prefork_semispace),
      cmocka_unit_test(test_prefork_gen_semispace),
      cmocka_unit_test(test_prefork_mark_compact),
      cmocka_unit_test(test_prefork_concurrent),
      cmocka_unit_test(test_prefork_mark_sweep),
      cmocka_unit_test(test_plain_fork_semispace),
      cmocka_unit_test(test_plain_fork_gen_semispace),
      cmocka_unit_test(test_plain_fork_mark_compact),
      cmocka_unit_test(test_plain_fork_concurrent),
      cmocka_unit_test(test_plain_fork_mark_sweep),
      cmocka_unit_test(test_plain_fork_concurrent_thread_mode),
      cmocka_unit_test(test_fork_during_background_compaction),
      cmocka_unit_test(test_postfork_child_resets_counters),
      cmocka_unit_test(test_prefork_parks_heap_threads),
      cmocka_unit_test(test_refork_semispace),
      cmocka_unit_test(test_refork_gen_semispace),
      cmocka_unit_test(test_refork_concurrent),
      cmocka_unit_test(test_refork_mark_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
