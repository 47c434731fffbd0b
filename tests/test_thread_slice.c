/* Per-thread time slices (heap/thread_slice.c): the requested slice is
 * what the kernel then reports, the thread's nice value and policy are
 * kept, and a thread outside the fair class is left alone.  The kernel
 * keeps a per-thread slice since Linux 6.12; before, it accepts the request
 * and reports its default, and the tests that read the slice back skip. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "heap/thread_slice.h"

typedef struct attr {
  uint32_t size, policy;
  uint64_t flags;
  int32_t nice;
  uint32_t priority;
  uint64_t runtime, deadline, period;
} attr;

/* What a case saw on its thread; asserted on the test's own thread
 * (cmocka's failures must not jump out of another thread). */
typedef struct seen {
  int setup;         /* setpriority/sched_setscheduler result */
  int rc;            /* thread_set_slice */
  int get_before, get_after;
  attr before, after;
  int keeps_slices;  /* the kernel reports the slice it was given */
} seen;

static int get_attr(attr *a) {
  *a = (attr){0};
  return (int)syscall(SYS_sched_getattr, 0, a, sizeof *a, 0);
}

static int kernel_keeps_slices(void) {
  attr a;
  if (get_attr(&a) != 0) return 0;
  uint64_t want = a.runtime == 300000 ? 400000 : 300000;
  if (thread_set_slice(want) != 0 || get_attr(&a) != 0) return 0;
  return a.runtime == want;
}

typedef struct job {
  int (*setup)(void); /* changes the thread first: 0 on success */
  seen out;
} job;

static void *run_job(void *arg) {
  job *j = arg;
  j->out.setup = j->setup ? j->setup() : 0;
  j->out.get_before = get_attr(&j->out.before);
  j->out.rc = thread_set_slice(100000);
  j->out.get_after = get_attr(&j->out.after);
  j->out.keeps_slices = kernel_keeps_slices();
  return NULL;
}

/* Whether this process may call sched_setattr at all: a seccomp filter
 * may refuse it (or sched_getattr).  Probed by setting the calling
 * thread's attributes to what they are, which any thread may do. */
static int setattr_allowed(void) {
  attr a;
  if (get_attr(&a) != 0) return 0;
  a.size = sizeof a;
  a.flags &= 1; /* SCHED_FLAG_RESET_ON_FORK */
  return syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

/* Each case runs on a new thread: what it changes goes with it.  Skipped
 * where the sandbox refuses the calls it needs (then thread_set_slice
 * returns -1, as documented, and there is nothing to check). */
static seen on_new_thread(int (*setup)(void)) {
  if (!setattr_allowed()) skip();
  job j = {.setup = setup};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, run_job, &j), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  if (j.out.setup != 0) skip(); /* nice or policy refused by the sandbox */
  assert_int_equal(j.out.get_before, 0);
  assert_int_equal(j.out.get_after, 0);
  return j.out;
}

static void test_sets_the_slice(void **state) {
  (void)state;
  seen s = on_new_thread(NULL);
  assert_int_equal(s.rc, 0);
  assert_int_equal(s.after.policy, SCHED_OTHER);
  if (!s.keeps_slices) skip(); /* before Linux 6.12 */
  assert_int_equal(s.after.runtime, 100000);
}

/* An embedder that runs its threads niced keeps them so: sched_setattr
 * writes the nice value too, so the helper must pass the current one.
 * One step nicer than the test runs (raising nice needs no privilege). */
static int nicer(void) {
  int now = getpriority(PRIO_PROCESS, 0);
  return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), now < 19 ? now + 1 : 19);
}

static void test_keeps_nice(void **state) {
  (void)state;
  int now = getpriority(PRIO_PROCESS, 0);
  seen s = on_new_thread(nicer);
  assert_int_equal(s.rc, 0);
  assert_int_equal(s.before.nice, now < 19 ? now + 1 : 19);
  assert_int_equal(s.after.nice, s.before.nice);
  assert_int_equal(s.after.policy, SCHED_OTHER);
}

/* A thread whose scheduling does not survive fork keeps that setting
 * (and without privilege, dropping it would make the kernel refuse). */
static int set_policy(int policy) {
  struct sched_param p = {0};
  return sched_setscheduler(0, policy, &p);
}

static int reset_on_fork(void) { return set_policy(SCHED_OTHER | SCHED_RESET_ON_FORK); }

static void test_keeps_reset_on_fork(void **state) {
  (void)state;
  seen s = on_new_thread(reset_on_fork);
  assert_int_equal(s.rc, 0);
  assert_true(s.after.flags & 1); /* SCHED_FLAG_RESET_ON_FORK */
  assert_int_equal(s.after.policy, SCHED_OTHER);
}

static int batch(void) { return set_policy(SCHED_BATCH); }

static void test_keeps_batch_policy(void **state) {
  (void)state;
  seen s = on_new_thread(batch);
  assert_int_equal(s.rc, 0);
  assert_int_equal(s.after.policy, SCHED_BATCH);
}

/* SCHED_IDLE runs only when nothing else wants the CPU: a short slice
 * would not change that, so it is refused and the thread left as it was. */
static int idle(void) { return set_policy(SCHED_IDLE); }

static void test_leaves_idle_threads_alone(void **state) {
  (void)state;
  seen s = on_new_thread(idle);
  assert_int_equal(s.rc, -1);
  assert_int_equal(s.after.policy, SCHED_IDLE);
  assert_int_equal(s.after.runtime, s.before.runtime);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sets_the_slice),
      cmocka_unit_test(test_keeps_nice),
      cmocka_unit_test(test_keeps_reset_on_fork),
      cmocka_unit_test(test_keeps_batch_policy),
      cmocka_unit_test(test_leaves_idle_threads_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
