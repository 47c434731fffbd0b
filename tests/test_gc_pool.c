/* The heap's GC worker pool (heap/gc_pool.h): tasks run and are joined with
 * pthread_create/pthread_join's contract, detached tasks end before the
 * pool does, threads are reused (collections start no thread once the
 * pool holds what they need), pool threads block asynchronous signals,
 * a forked child starts its own, and fh_get_stats reports the GC's CPU
 * time and faults. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "heap/gc_pool.h"
#include "support_heap.h"

static void *add_one(void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
  return NULL;
}

static void pool_runs_and_reuses(void **state) {
  (void)state;
  gc_pool p;
  gc_pool_init(&p);
  _Atomic int n = 0;
  for (int round = 0; round < 50; round++) {
    gc_task tasks[3];
    for (int i = 0; i < 3; i++) assert_int_equal(gc_pool_start(&p, &tasks[i], "t", add_one, &n), 0);
    for (int i = 0; i < 3; i++) gc_pool_join(&p, tasks[i]);
    assert_int_equal(atomic_load(&n), 3 * (round + 1));
  }
  /* Three at once at most, so three threads, however many rounds. */
  assert_int_equal(p.started_total, 3);
  gc_pool_destroy(&p);
}

static _Atomic int slow_done;
static void *slow_detached(void *arg) {
  (void)arg;
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  atomic_store(&slow_done, 1);
  return NULL;
}

static void destroy_waits_for_detached(void **state) {
  (void)state;
  gc_pool p;
  gc_pool_init(&p);
  atomic_store(&slow_done, 0);
  assert_int_equal(gc_pool_start(&p, NULL, "detached", slow_detached, NULL), 0);
  gc_pool_destroy(&p);
  assert_int_equal(atomic_load(&slow_done), 1);
}

static _Atomic int sigint_blocked, sigbus_blocked;
static void *read_mask(void *arg) {
  (void)arg;
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  atomic_store(&sigint_blocked, sigismember(&cur, SIGINT));
  atomic_store(&sigbus_blocked, sigismember(&cur, SIGBUS));
  return NULL;
}

static void pool_threads_block_async_signals(void **state) {
  (void)state;
  gc_pool p;
  gc_pool_init(&p);
  gc_task t;
  assert_int_equal(gc_pool_start(&p, &t, "mask", read_mask, NULL), 0);
  gc_pool_join(&p, t);
  assert_int_equal(atomic_load(&sigint_blocked), 1);
  assert_int_equal(atomic_load(&sigbus_blocked), 0); /* SIGBUS-mode faults */
  /* The caller's own mask is untouched. */
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  assert_int_equal(sigismember(&cur, SIGINT), 0);
  gc_pool_destroy(&p);
}

static void *burn_cpu(void *arg) {
  volatile uint64_t x = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  do {
    for (int i = 0; i < 100000; i++) x += (uint64_t)i;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  } while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 20000000L);
  (void)arg;
  return NULL;
}

static void tasks_are_charged(void **state) {
  (void)state;
  gc_pool p;
  gc_pool_init(&p);
  gc_task t;
  assert_int_equal(gc_pool_start(&p, &t, "burn", burn_cpu, NULL), 0);
  gc_pool_join(&p, t);
  /* 20 ms of CPU, at the rusage clock's tick granularity at worst. */
  assert_true(atomic_load(&p.user_ns) + atomic_load(&p.sys_ns) >= 10000000u);
  gc_pool_destroy(&p);
}

/* Collections of a collector with parallel markers and builders, and a
 * concurrent worker: after the first few, no thread is started. */
static void run_collections(const char *spec, fh_collect_kind kind, int hands_off_work) {
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(spec, "gc_threads=2", &ty, &t);
  test_ring ring;
  test_ring_build(t, &ty, &ring, 20000, 7, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(fh_collect(t, kind), 0);
  fh_gc_wait(h);
  fh_stats s0, s1;
  fh_get_stats(h, &s0);
  for (int i = 0; i < 30; i++) {
    for (int k = 0; k < 2000; k++) test_node(t, &ty, (uint64_t)k);
    assert_int_equal(fh_collect(t, kind), 0);
  }
  fh_gc_wait(h);
  fh_get_stats(h, &s1);
  char why[160];
  snprintf(why, sizeof why, "%s: %llu threads started before, %llu after 30 more collections",
           spec, (unsigned long long)s0.gc_threads_started,
           (unsigned long long)s1.gc_threads_started);
  /* The compactors hand work to a thread (their worker or releaser) every
   * cycle; mark-sweep sweeps a heap this small in the pause. */
  if ((hands_off_work && s0.gc_threads_started == 0) ||
      s1.gc_threads_started != s0.gc_threads_started)
    fail_msg("%s", why);
  if (getenv("FH_TEST_VERBOSE")) fh_dump(h, stderr);
  /* The collecting thread's pause time at least is charged. */
  assert_true(s1.gc_user_ns + s1.gc_sys_ns > s0.gc_user_ns + s0.gc_sys_ns);
  fh_pop_roots(t, 1); /* the ring's */
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void collections_reuse_threads(void **state) {
  (void)state;
  run_collections("mark_compact", FH_COLLECT_DEFAULT, 1);
  run_collections("mark_sweep", FH_COLLECT_DEFAULT, 0);
  if (test_have_uffd()) run_collections("concurrent_compact", FH_COLLECT_DEFAULT, 1);
}

/* A child of a heap whose pool has threads starts its own and collects. */
static void child_starts_its_own(void **state) {
  (void)state;
  test_skip_under_tsan("TSan does not support new threads after a multi-threaded fork");
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "gc_threads=2", &ty, &t);
  test_ring ring;
  test_ring_build(t, &ty, &ring, 20000, 7, 3);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(20);
    for (int i = 0; i < 5; i++)
      if (fh_collect(t, FH_COLLECT_DEFAULT) != 0) _exit(2);
    for (size_t i = 0; i < ring.n; i++) {
      tnode *n = ring.arr[i];
      if (n->value != i || n->check != test_check(i)) _exit(3);
    }
    fh_thread_detach(t);
    fh_heap_destroy(h); /* joins the child's pool threads */
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pool_runs_and_reuses),
      cmocka_unit_test(destroy_waits_for_detached),
      cmocka_unit_test(pool_threads_block_async_signals),
      cmocka_unit_test(tasks_are_charged),
      cmocka_unit_test(collections_reuse_threads),
      cmocka_unit_test(child_starts_its_own),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
