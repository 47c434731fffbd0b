/* Userfaultfd ioctls failing during compaction (issue 14, defect 7).
 *
 * A workload of two mutators that keep checking and relinking graphs of
 * checked objects (mc_graph.h, verify=1) while the main thread runs
 * concurrent compactions (both fault modes), with the
 * system-call seam (heap/sys.h) failing the Nth ioctl on a userfaultfd,
 * once or from then on.  A first run only counts the ioctls; then N sweeps
 * the phase: creation and registration, the first pages, the middle, the
 * end (unregistration).  Every run is a forked child bounded by alarm(), so
 * a SIGBUS, an abort or a hang fails the test instead of the suite.  The
 * child checks every object during and after the cycles, then disarms the
 * seam and checks that the heap still collects (concurrently again),
 * allocates, and that the moving space is one VMA again.
 *
 * FH_UFFD_FAILURE_POINTS=N: how many failure points per sweep (default 8;
 * 0: every N from 1 to the count, the full sweep, minutes). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/sys.h"
#include "mc_graph.h"
#include "uffd/uffd.h"

/* Exit codes of a child. */
enum {
  CHILD_OK = 0,
  CHILD_BAD_GRAPH = 10,
  CHILD_COLLECT_NO_ERROR = 11, /* a collection failed without fh_last_error */
  CHILD_AFTER = 12,            /* the heap did not recover after disarm */
  CHILD_VMAS = 13,             /* the moving space stayed split */
  CHILD_SETUP = 14,
};

typedef struct mut {
  fh_heap *h;
  int id;
  _Atomic int *stop;
  _Atomic int ready;
  size_t failed;
  graph g;
} mut;

static void *mutator(void *p) {
  mut *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  fh_push_root(t, (void **)&a->g.table);
  graph_build(t, &graph_ty, &a->g, 1500 + 300 * (size_t)a->id);
  atomic_store(&a->ready, 1);
  for (unsigned r = 0; !atomic_load(a->stop) && !a->failed; r++) {
    a->failed = graph_check(&graph_ty, &a->g);
    for (size_t i = 0; i < a->g.n; i++) {
      tnode *n = a->g.table[i];
      fh_write_ref(t, n, (void **)&n->next, a->g.table[graph_next_of(i, a->g.n)]);
    }
    for (int i = 0; i < 100 && !a->failed; i++)
      if (!fh_alloc(t, graph_ty.bytes, 16 + (size_t)(i % 31) * 8)) {
        /* not a cmocka assert: this is a thread of a forked child */
        fprintf(stderr, "mutator %d: allocation failed: %s\n", a->id, fh_last_error());
        a->failed = (size_t)-3;
      }
    fh_safepoint(t);
    usleep(100); /* leave the collector a CPU on a 2-core box */
  }
  if (!a->failed) a->failed = graph_check(&graph_ty, &a->g);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static int collect_checked(fh_thread *t, fh_collect_kind k) {
  if (fh_collect(t, k) == 0) return 0;
  const char *e = fh_last_error();
  if (!e || !*e) _exit(CHILD_COLLECT_NO_ERROR);
  return -1;
}

/* The workload, in the child.  nth == 0: count only, and write the count
 * of uffd ioctls of the armed part to `out`. */
static int child(const char *collector, int sigbus, uint64_t nth, int persistent, int out) {
  /* cmocka's handlers, inherited, would turn a fatal SIGBUS into exit 255:
   * die of the signal instead, so the parent names it. */
  test_child_signals(30);
  char spec[256];
  snprintf(spec, sizeof spec,
           "collector=%s,uffd_sigbus=%d,heap_max=32M,min_alloc_trigger=24M,verify=1", collector,
           sigbus);
  fh_options o;
  fh_options_init(&o);
  if (fh_options_parse(&o, spec) < 0) return CHILD_SETUP;
  fh_heap *h = fh_heap_create(&o);
  if (!h) return CHILD_SETUP;
  test_register(h, &graph_ty);
  fh_thread *t = fh_thread_attach(h);
  fh_collect_kind kind = strcmp(collector, "mark_compact") == 0 ? FH_COLLECT_MARK_COMPACT
                                                                : FH_COLLECT_CONCURRENT_COMPACT;
  _Atomic int stop = 0;
  mut m[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    m[i] = (mut){.h = h, .id = i, .stop = &stop};
    pthread_create(&th[i], NULL, mutator, &m[i]);
  }
  for (int i = 0; i < 2; i++)
    while (!atomic_load(&m[i].ready)) fh_safepoint(t), usleep(1000);
  /* One cycle first so the uffd exists: later cycles reuse it. */
  collect_checked(t, kind);
  fh_gc_wait(h);
  sys_fault_arm(SYS_UFFD_IOCTL, nth, persistent, ENOMEM);
  for (int c = 0; c < 2; c++) {
    collect_checked(t, kind);
    fh_gc_wait(h);
  }
  uint64_t calls = sys_fault_calls(SYS_UFFD_IOCTL);
  sys_fault_disarm();
  if (getenv("FH_TEST_VERBOSE")) {
    fprintf(stderr, "uffd ioctl #%llu failing %s: %llu calls, %llu failed\n",
            (unsigned long long)nth, persistent ? "from then on" : "once",
            (unsigned long long)calls, (unsigned long long)sys_fault_injected());
    fh_dump(h, stderr);
  }
  if (out >= 0 && write(out, &calls, sizeof calls) != sizeof calls) return CHILD_SETUP;
  /* Recovered: collections work again, concurrently where they should. */
  for (int c = 0; c < 2; c++) {
    if (fh_collect(t, kind) != 0) return CHILD_AFTER;
    fh_gc_wait(h);
  }
  if (kind == FH_COLLECT_CONCURRENT_COMPACT && h->mc->mode_note &&
      !strstr(h->mc->mode_note, "concurrent"))
    return CHILD_AFTER;
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++)
    if (m[i].failed) return CHILD_BAD_GRAPH;
  if (!test_node(t, &graph_ty, 5)) return CHILD_AFTER;
  bump_space *b = &h->bump[h->active];
  if (fh_uffd_count_vmas((void *)b->space.begin, b->space.end - b->space.begin) != 1)
    return CHILD_VMAS;
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return CHILD_OK;
}

/* Run the child; its exit status (0: all good) and, when counting, the
 * number of ioctls seen. */
static void run_child(const char *collector, int sigbus, uint64_t nth, int persistent,
                      uint64_t *count) {
  int fds[2] = {-1, -1};
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    _exit(child(collector, sigbus, nth, persistent, fds[1]));
  }
  close(fds[1]);
  uint64_t calls = 0;
  ssize_t got = read(fds[0], &calls, sizeof calls);
  close(fds[0]);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("%s uffd_sigbus=%d, uffd ioctl #%llu failing %s: %s %d", collector, sigbus,
             (unsigned long long)nth, persistent ? "from then on" : "once",
             WIFSIGNALED(st) ? "killed by signal" : "exit status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  if (count) *count = got == (ssize_t)sizeof calls ? calls : 0;
}

static unsigned points(uint64_t total) {
  const char *e = getenv("FH_UFFD_FAILURE_POINTS");
  unsigned n = e && *e ? (unsigned)strtoul(e, NULL, 10) : 8;
  if (n == 0 || n > total) return (unsigned)total; /* every one */
  return n < 4 ? 4 : n;
}

/* With the worker held back (delay "5") the mutators' faults build nearly
 * every page; without ("0") the worker's runs (COPY, MOVE, the dense
 * prefix fixed in place) race them. */
static void sweep(const char *collector, int sigbus, const char *delay) {
  setenv("FH_MC_WORKER_DELAY_MS", delay, 1);
  uint64_t total = 0;
  run_child(collector, sigbus, 0, 0, &total);
  assert_true(total > 4);
  unsigned k = points(total);
  /* The first few (registration, the first pages), then spread to the
   * end (the last installs, unregistration), once and from then on. */
  for (unsigned i = 0; i < k; i++) {
    uint64_t nth = k == total ? i + 1 : i < 3 ? i + 1 : 1 + (total - 1) * (i - 2) / (k - 3);
    run_child(collector, sigbus, nth, 1, NULL);
    run_child(collector, sigbus, nth, 0, NULL);
  }
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

static void test_concurrent_sigbus(void **s) {
  (void)s;
  test_skip_without_uffd();
  sweep("concurrent_compact", 1, "5");
  sweep("concurrent_compact", 1, "0");
}

static void test_concurrent_handler_thread(void **s) {
  (void)s;
  test_skip_without_uffd();
  sweep("concurrent_compact", 0, "5");
  sweep("concurrent_compact", 0, "0");
}

/* (a) of the defect: one UFFDIO_COPY failing with ENOMEM in the middle of
 * the phase, with the worker held back so the mutators' faults install. */
static void test_one_copy_enomem_mid_phase(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_WORKER_DELAY_MS", "20", 1);
  for (int sigbus = 1; sigbus >= 0; sigbus--) {
    uint64_t total = 0;
    run_child("concurrent_compact", sigbus, 0, 0, &total);
    for (uint64_t nth = total / 3; nth <= total / 3 + 2; nth++)
      run_child("concurrent_compact", sigbus, nth, 0, NULL);
  }
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_copy_enomem_mid_phase),
      cmocka_unit_test(test_concurrent_sigbus),
      cmocka_unit_test(test_concurrent_handler_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
