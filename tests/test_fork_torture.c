/* Fork torture: a plain fork() (no hooks) while other mutator threads
 * allocate and mutate linked structures, for every collector and both
 * userfaultfd fault modes, forking from the main thread and from a mutator
 * thread, right after and during concurrent compactions (concurrent_compact)
 * and homogeneous compactions, foreground and background (mark_sweep).
 *
 * Each child turns verification on, verifies the heap (the absent threads'
 * TLABs, held-back allocation bits, batches and budgets must have been
 * accounted for), checks the forking thread's structure, allocates, collects
 * with every kind its heap runs, verifies and checks again, and _exits with
 * a status the parent asserts on.  The parent waits with a timeout (a hung
 * child is killed and fails the test), checks its own structure and goes on;
 * the mutators check theirs all along, and the parent verifies at the end.
 *
 * FH_TORTURE_ITERS sets the forks per configuration, exactly (`make
 * check-fork` runs 100 of each).  Unset, the default is 100 (30 under
 * sanitizers), but each configuration also stops after 5 s once it has
 * done 20, so that `make test` stays bounded on a loaded machine (idle,
 * 100 forks of each of the ten take about 17 s in all here).  Skipped
 * under TSan, which does not support a child of a multi-threaded process
 * that goes on to start threads (and the child's collections do), and which
 * would report the deliberately racy fork snapshot itself. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "heap/object.h"
#include "support_heap.h"

#define SLOTS 64  /* chains per structure */
#define CHAIN 4   /* nodes per chain */
#define CHILD_TIMEOUT_S 30
#define MIN_ITERS 20          /* forks per configuration, whatever the clock */
#define BUDGET_MS 5000        /* per configuration when FH_TORTURE_ITERS is unset */

#define NO_THREADS_IN_FORKED_CHILD                                                        \
  "it does not support threads started in the child of a multi-threaded fork"

typedef struct torture {
  fh_heap *h;
  test_types ty;
  const char *collector;
  int from_mutator;  /* fork from a mutator thread instead of the main one */
  int iters;
  _Atomic int stop, started;
  _Atomic int failed; /* first failure: line number; message in why */
  char why[256];
  _Atomic long forks, max_ms;
  uint64_t deadline_ms; /* 0: none (FH_TORTURE_ITERS given) */
} torture;

static void fail_with(torture *tt, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_with(torture *tt, int line, const char *fmt, ...) {
  int zero = 0;
  if (!atomic_compare_exchange_strong(&tt->failed, &zero, line)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tt->why, sizeof tt->why, fmt, ap);
  va_end(ap);
  atomic_store(&tt->stop, 1);
}

/* ---- a structure: SLOTS chains of CHAIN tnodes, values key*CHAIN + j ---- */

typedef struct structure {
  void **arr; /* a root of its thread */
  uint64_t next_key;
  unsigned seed;
} structure;

static tnode *new_node(fh_thread *t, const test_types *ty, uint64_t v) {
  tnode *n = fh_alloc(t, ty->node, sizeof(tnode));
  if (n) {
    n->value = v;
    n->check = test_check(v);
  }
  return n;
}

/* A fresh chain in slot i.  The chain under construction is a root while
 * the next node is allocated: a collection may move it. */
static int replace_chain(fh_thread *t, const test_types *ty, structure *s, size_t i) {
  uint64_t key = s->next_key++;
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  for (int j = CHAIN - 1; j >= 0; j--) {
    tnode *n = new_node(t, ty, key * CHAIN + (uint64_t)j);
    if (!n) {
      fh_pop_roots(t, 1);
      return -1;
    }
    fh_write_ref(t, n, (void **)&n->next, head);
    if (head) fh_write_ref(t, n, (void **)&n->other, head->next ? head->next : head);
    head = n;
  }
  fh_write_ref(t, s->arr, &s->arr[i], head);
  fh_pop_roots(t, 1);
  return 0;
}

static int structure_build(fh_thread *t, const test_types *ty, structure *s, unsigned seed) {
  s->seed = seed;
  s->next_key = (uint64_t)seed << 32;
  s->arr = fh_alloc(t, ty->array, SLOTS * sizeof(void *));
  if (!s->arr) return -1;
  fh_push_root(t, (void **)&s->arr);
  for (size_t i = 0; i < SLOTS; i++)
    if (replace_chain(t, ty, s, i) < 0) return -1;
  return 0;
}

/* 0 when every chain is whole; else the slot that is not, plus one. */
static size_t structure_bad(const structure *s) {
  for (size_t i = 0; i < SLOTS; i++) {
    tnode *n = s->arr[i];
    if (!n) return i + 1;
    uint64_t first = n->value;
    if (first % CHAIN) return i + 1;
    for (int j = 0; j < CHAIN; j++, n = n->next) {
      if (!n || n->value != first + (uint64_t)j || n->check != test_check(n->value)) return i + 1;
      if (j < CHAIN - 1 && (!n->other || n->other->check != test_check(n->other->value)))
        return i + 1;
    }
    if (n) return i + 1;
  }
  return 0;
}

static int structure_mutate(fh_thread *t, const test_types *ty, structure *s, int n) {
  for (int k = 0; k < n; k++)
    if (replace_chain(t, ty, s, (size_t)rand_r(&s->seed) % SLOTS) < 0) return -1;
  return 0;
}

/* ---- the child ---- */

static void child_main(torture *tt, fh_thread *t, structure *s) {
  alarm(CHILD_TIMEOUT_S); /* a deadlock dies of SIGALRM; the parent says so */
  fh_heap *h = tt->h;
  h->opt.verify = 1; /* every collection below verifies before and after */
  CHILD_CHECK(h->nthreads == 1);
  heap_verify(h, "in the child, right after fork");
  CHILD_CHECK(structure_bad(s) == 0);
  for (int round = 0; round < 3; round++) {
    CHILD_CHECK(structure_mutate(t, &tt->ty, s, SLOTS) == 0);
    for (int k = 0; k < 3000; k++) CHILD_CHECK(fh_alloc(t, tt->ty.node, sizeof(tnode)) != NULL);
    CHILD_CHECK(fh_collect(t, test_collect_kind(tt->collector, round + (int)(s->seed & 1))) == 0);
    fh_gc_wait(h);
    CHILD_CHECK(structure_bad(s) == 0);
  }
  heap_verify(h, "in the child, at the end");
  _exit(0);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for the child inside a blocking region (the mutators collect
 * meanwhile); kill it after CHILD_TIMEOUT_S + 10 s. */
static void wait_child(torture *tt, fh_thread *t, pid_t pid, int iter) {
  uint64_t t0 = now_ms();
  int status = 0;
  fh_enter_blocking(t);
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      fh_leave_blocking(t);
      fail_with(tt, __LINE__, "iteration %d: waitpid: %s", iter, strerror(errno));
      return;
    }
    if (now_ms() - t0 > (CHILD_TIMEOUT_S + 10) * 1000ull) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fh_leave_blocking(t);
      fail_with(tt, __LINE__, "iteration %d: child hung; killed", iter);
      return;
    }
    struct timespec ts = {0, 500000};
    nanosleep(&ts, NULL);
  }
  fh_leave_blocking(t);
  long ms = (long)(now_ms() - t0);
  if (ms > atomic_load(&tt->max_ms)) atomic_store(&tt->max_ms, ms);
  atomic_fetch_add(&tt->forks, 1);
  if (WIFSIGNALED(status))
    fail_with(tt, __LINE__, "iteration %d: child killed by signal %d%s", iter, WTERMSIG(status),
              WTERMSIG(status) == SIGALRM ? " (hung)" : "");
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_with(tt, __LINE__, "iteration %d: child exited with status %d", iter,
              WEXITSTATUS(status));
}

/* What happens just before fork i: a collection, sometimes. */
static void before_fork(torture *tt, fh_thread *t, int i) {
  fh_heap *h = tt->h;
  int r = 0;
  switch (i % 4) {
  case 0: /* nothing: fork while the others allocate */
    break;
  case 1: /* concurrent_compact: the phase still runs; mark_sweep: a homogeneous
           * compaction just ended; others: whatever the default is */
    r = fh_collect(t, strcmp(tt->collector, "mark_sweep") == 0 ? FH_COLLECT_HSPACE_COMPACT
                                                               : FH_COLLECT_DEFAULT);
    break;
  case 2: /* right after a collection finished entirely */
    r = fh_collect(t, test_collect_kind(tt->collector, i / 4));
    fh_enter_blocking(t);
    fh_gc_wait(h);
    fh_leave_blocking(t);
    break;
  case 3: /* mark_sweep: the background compaction thread is running */
    if (strcmp(tt->collector, "mark_sweep") == 0) {
      fh_set_background(h, 1);
      fh_set_background(h, 0);
    } else {
      r = fh_collect(t, FH_COLLECT_DEFAULT);
    }
    break;
  }
  if (r < 0) fail_with(tt, __LINE__, "iteration %d: fh_collect: %s", i, fh_last_error());
}

/* The forking thread's loop. */
static void fork_loop(torture *tt, fh_thread *t, structure *s) {
  for (int i = 0; i < tt->iters && !atomic_load(&tt->failed); i++) {
    /* the default run is bounded in time too; an explicit count is not */
    if (tt->deadline_ms && i >= MIN_ITERS && now_ms() > tt->deadline_ms) break;
    if (structure_mutate(t, &tt->ty, s, 8) < 0) {
      fail_with(tt, __LINE__, "iteration %d: allocation failed: %s", i, fh_last_error());
      return;
    }
    before_fork(tt, t, i);
    pid_t pid = fork();
    if (pid < 0) {
      fail_with(tt, __LINE__, "fork: %s", strerror(errno));
      return;
    }
    if (pid == 0) child_main(tt, t, s);
    wait_child(tt, t, pid, i);
    size_t bad = structure_bad(s);
    if (bad)
      fail_with(tt, __LINE__, "iteration %d: parent's structure broken at slot %zu", i, bad - 1);
  }
}

/* ---- threads ---- */

typedef struct mutator {
  torture *tt;
  int id, forker;
  pthread_t th;
} mutator;

static void *mutator_main(void *arg) {
  mutator *m = arg;
  torture *tt = m->tt;
  fh_thread *t = fh_thread_attach(tt->h);
  if (!t) {
    fail_with(tt, __LINE__, "attach: %s", fh_last_error());
    atomic_fetch_add(&tt->started, 1);
    return NULL;
  }
  structure s;
  if (structure_build(t, &tt->ty, &s, 1000u + (unsigned)m->id) < 0)
    fail_with(tt, __LINE__, "mutator %d: build: %s", m->id, fh_last_error());
  atomic_fetch_add(&tt->started, 1);
  if (m->forker) {
    fork_loop(tt, t, &s);
    atomic_store(&tt->stop, 1);
  } else {
    for (long round = 0; !atomic_load(&tt->stop); round++) {
      if (structure_mutate(t, &tt->ty, &s, 4) < 0) {
        fail_with(tt, __LINE__, "mutator %d: allocation failed: %s", m->id, fh_last_error());
        break;
      }
      /* garbage, in several sizes (TLAB refills, large objects) */
      for (int k = 0; k < 16; k++)
        (void)fh_alloc(t, tt->ty.bytes, (size_t)(8 + (rand_r(&s.seed) % 4) * 120));
      if (round % 64 == 0) (void)fh_alloc(t, tt->ty.bytes, 12000);
      /* mark_sweep: another thread starts background compactions too (a
       * fork must not wait for it while it waits for the fork) */
      if (m->id == 1 && round % 128 == 0 && strcmp(tt->collector, "mark_sweep") == 0) {
        fh_set_background(tt->h, 1);
        fh_set_background(tt->h, 0);
      }
      size_t bad = structure_bad(&s);
      if (bad) fail_with(tt, __LINE__, "mutator %d: structure broken at slot %zu", m->id, bad - 1);
      fh_safepoint(t);
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static int iterations(void) {
  const char *e = getenv("FH_TORTURE_ITERS");
  if (e && *e) return atoi(e) > 0 ? atoi(e) : 1;
  return test_sanitized() ? 30 : 100;
}

static void torture_run(const char *collector, const char *extra, int from_mutator) {
  test_skip_under_tsan(NO_THREADS_IN_FORKED_CHILD);
  static torture tt; /* children reach it after the fork */
  memset(&tt, 0, sizeof tt);
  char spec[256];
  snprintf(spec, sizeof spec,
           "collector=%s,heap_max=48M,non_moving_max=8M,min_alloc_trigger=1M,"
           "hspace_fragmentation_pct=0,hspace_min_interval_ms=0%s",
           collector, extra);
  tt.h = test_heap(spec);
  test_register(tt.h, &tt.ty);
  tt.collector = collector;
  tt.from_mutator = from_mutator;
  tt.iters = iterations();
  uint64_t t0 = now_ms();
  const char *given = getenv("FH_TORTURE_ITERS");
  tt.deadline_ms = given && *given ? 0 : t0 + BUDGET_MS;
  fh_thread *t = fh_thread_attach(tt.h);
  assert_non_null(t);
  structure s;
  assert_int_equal(structure_build(t, &tt.ty, &s, 7), 0);
  enum { NMUT = 3 };
  mutator m[NMUT + 1];
  int n = from_mutator ? NMUT + 1 : NMUT; /* the forker plus 3 others */
  for (int i = 0; i < n; i++) {
    m[i] = (mutator){.tt = &tt, .id = i, .forker = from_mutator && i == 0};
    assert_int_equal(pthread_create(&m[i].th, NULL, mutator_main, &m[i]), 0);
  }
  fh_enter_blocking(t);
  while (atomic_load(&tt.started) < n) sched_yield();
  fh_leave_blocking(t);
  if (from_mutator) {
    /* The main thread stays attached, in a blocking region: absent in the
     * children too. */
    fh_enter_blocking(t);
    pthread_join(m[0].th, NULL);
    fh_leave_blocking(t);
  } else {
    fork_loop(&tt, t, &s);
  }
  atomic_store(&tt.stop, 1);
  fh_enter_blocking(t);
  for (int i = from_mutator; i < n; i++) pthread_join(m[i].th, NULL);
  fh_leave_blocking(t);
  if (atomic_load(&tt.failed))
    fail_msg("%s%s (fork from %s): line %d: %s", collector, extra,
             from_mutator ? "a mutator" : "main", atomic_load(&tt.failed), tt.why);
  assert_int_equal(structure_bad(&s), 0);
  fh_gc_wait(tt.h);
  heap_verify(tt.h, "in the parent, at the end");
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_gc_wait(tt.h);
  assert_int_equal(structure_bad(&s), 0);
  print_message("%s%s from %s: %ld forks in %llu ms (slowest child %ld ms)\n", collector, extra,
                from_mutator ? "a mutator" : "main", atomic_load(&tt.forks),
                (unsigned long long)(now_ms() - t0), atomic_load(&tt.max_ms));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(tt.h);
}

/* Defect 4, deterministically: another thread is caught with a bump-space
 * range claimed but neither zeroed nor published (what bump_try records in
 * claim_lo/hi between its CAS and its publication), full of stale
 * forwarding headers from "the last collection".  The child must make it
 * walkable: verification passes and the child collects. */
typedef struct idler {
  fh_heap *h;
  fh_thread *t;
  _Atomic int ready, stop;
} idler;

static void *idler_main(void *arg) {
  idler *d = arg;
  d->t = fh_thread_attach(d->h);
  fh_enter_blocking(d->t);
  atomic_store(&d->ready, 1);
  while (!atomic_load(&d->stop)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  fh_leave_blocking(d->t);
  fh_thread_detach(d->t);
  return NULL;
}

static void claim_case(const char *collector) {
  test_skip_under_tsan(NO_THREADS_IN_FORKED_CHILD);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached(collector, "heap_max=32M,non_moving_max=8M", &ty, &t);
  structure s;
  assert_int_equal(structure_build(t, &ty, &s, 3), 0);
  idler d = {.h = h};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, idler_main, &d), 0);
  while (!atomic_load(&d.ready)) sched_yield();
  /* The idler's claim, as bump_try leaves it right after its CAS. */
  bump_space *b = &h->bump[h->active];
  size_t len = 3 * h->opt.tlab_size;
  uintptr_t p = bump_space_claim(b, len, b->space.end);
  assert_true(p != 0);
  for (uintptr_t q = p; q < p + len; q += 8)
    *(uint64_t *)q = hdr_make_forward((void *)(q + 64)); /* stale forwardings */
  d.t->claim_lo = p;
  d.t->claim_hi = p + len;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(CHILD_TIMEOUT_S);
    h->opt.verify = 1;
    CHILD_CHECK(h->nthreads == 1);
    heap_verify(h, "in the child, with an absent thread's claim");
    CHILD_CHECK(structure_bad(&s) == 0);
    for (int round = 0; round < 3; round++) {
      CHILD_CHECK(structure_mutate(t, &ty, &s, SLOTS) == 0);
      CHILD_CHECK(fh_collect(t, test_collect_kind(collector, round)) == 0);
      fh_gc_wait(h);
      CHILD_CHECK(structure_bad(&s) == 0);
    }
    _exit(0);
  }
  int status = 0;
  fh_enter_blocking(t);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  fh_leave_blocking(t);
  if (WIFSIGNALED(status)) fail_msg("child killed by signal %d", WTERMSIG(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The parent plays the idler finishing its claim. */
  obj_write_filler(p, len);
  d.t->claim_lo = d.t->claim_hi = 0;
  atomic_store(&d.stop, 1);
  fh_enter_blocking(t);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  heap_verify(h, "in the parent");
  assert_int_equal(structure_bad(&s), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_absent_claim_semispace(void **st) { (void)st; claim_case("semispace"); }
static void test_absent_claim_concurrent(void **st) { (void)st; claim_case("concurrent_compact"); }

/* ---- the forking thread never holds up a stop (review of issue 14) ---- */

typedef struct forkers {
  fh_heap *h;
  test_types ty;
  pthread_barrier_t bar;
} forkers;

/* Fork a child that exits at once, and reap it; -1 on a failed fork. */
static int fork_and_reap(void) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) _exit(0);
  int status;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0
                                                                                      : -1;
}

static void *forker_main(void *arg) {
  forkers *f = arg;
  fh_thread *t = fh_thread_attach(f->h);
  long bad = 0;
  for (int i = 0; i < 100 && t; i++) {
    for (int k = 0; k < 200; k++)
      if (!fh_alloc(t, f->ty.node, sizeof(tnode))) bad++;
    /* Both threads attached and running fork at once: the second waits
     * for the first's handler while the first stops the world. */
    fh_enter_blocking(t);
    pthread_barrier_wait(&f->bar);
    fh_leave_blocking(t);
    if (fork_and_reap() < 0) bad++;
  }
  if (t) fh_thread_detach(t);
  return (void *)bad;
}

static int two_forkers(void *arg) {
  forkers f = {.h = test_child_heap(arg)};
  if (!f.h || test_register_types(f.h, &f.ty) < 0) return 2;
  pthread_barrier_init(&f.bar, NULL, 2);
  pthread_t a, b;
  void *ra, *rb;
  pthread_create(&a, NULL, forker_main, &f);
  pthread_create(&b, NULL, forker_main, &f);
  pthread_join(a, &ra);
  pthread_join(b, &rb);
  fh_heap_destroy(f.h);
  return ra || rb ? 3 : 0;
}

/* Fork inside the forker's own critical section, inside and outside a
 * blocking region: the stop must not wait for that section. */
static int fork_in_critical(void *arg) {
  fh_heap *h = test_child_heap(arg);
  test_types ty;
  if (!h || test_register_types(h, &ty) < 0) return 2;
  fh_thread *t = fh_thread_attach(h);
  tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
  fh_push_root(t, (void **)&n);
  tnode *p = fh_critical_begin(t, n);
  if (!p) return 4;
  if (fork_and_reap() < 0) return 5; /* running, inside the section */
  fh_enter_blocking(t);
  int rc = fork_and_reap(); /* blocked, inside the section */
  fh_leave_blocking(t);
  fh_critical_end(t, p);
  if (rc < 0) return 6;
  if (fh_collect(t, FH_COLLECT_DEFAULT) < 0) return 7;
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

static void forker_case(int (*fn)(void *), const char *collector) {
  test_skip_under_tsan(NO_THREADS_IN_FORKED_CHILD);
  char spec[128];
  snprintf(spec, sizeof spec, "collector=%s,heap_max=16M,verify=1", collector);
  test_assert_child_ok(test_run_forked(fn, spec, 60), collector);
}

static void test_two_forkers_at_once(void **st) {
  (void)st;
  forker_case(two_forkers, "semispace");
  forker_case(two_forkers, "mark_sweep");
  forker_case(two_forkers, "concurrent_compact");
}

static void test_fork_inside_critical_section(void **st) {
  (void)st;
  forker_case(fork_in_critical, "mark_compact");
  forker_case(fork_in_critical, "concurrent_compact");
}

#define CONFIG(name, collector, extra)                                                    \
  static void test_##name##_main(void **st) { (void)st; torture_run(collector, extra, 0); } \
  static void test_##name##_mutator(void **st) { (void)st; torture_run(collector, extra, 1); }

CONFIG(semispace, "semispace", "")
CONFIG(mark_compact, "mark_compact", "")
CONFIG(mark_sweep, "mark_sweep", "")
CONFIG(concurrent_sigbus, "concurrent_compact", ",uffd_sigbus=1")
CONFIG(concurrent_thread, "concurrent_compact", ",uffd_sigbus=0")

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_semispace_main),
      cmocka_unit_test(test_semispace_mutator),
      cmocka_unit_test(test_mark_compact_main),
      cmocka_unit_test(test_mark_compact_mutator),
      cmocka_unit_test(test_mark_sweep_main),
      cmocka_unit_test(test_mark_sweep_mutator),
      cmocka_unit_test(test_concurrent_sigbus_main),
      cmocka_unit_test(test_concurrent_sigbus_mutator),
      cmocka_unit_test(test_concurrent_thread_main),
      cmocka_unit_test(test_concurrent_thread_mutator),
      cmocka_unit_test(test_absent_claim_semispace),
      cmocka_unit_test(test_absent_claim_concurrent),
      cmocka_unit_test(test_two_forkers_at_once),
      cmocka_unit_test(test_fork_inside_critical_section),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
