/* Critical sections against a thread that collects in a loop, with every
 * collector: fh_critical_begin returns the object's current address even
 * when it had to wait for a collection (which moves the object), sections
 * nest while a collector waits for them, and allocation inside a section
 * runs past the collection trigger until the heap is really full.
 *
 * Each scenario runs in a forked child bounded by alarm(): a deadlock or a
 * crash shows up as that child's exit status, not as a hung suite.  Under
 * TSan (no new threads after a multi-threaded fork) the scenarios run in
 * the test process itself.  FH_TEST_CRITICAL_ITERS scales the loops
 * (default 200). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "heap/heap.h"
#include "support_heap.h"

#define CHILD_SECONDS 20

typedef struct config {
  const char *collector; /* for test_collect_kind */
  const char *spec;
} config;

static const config configs[] = {
    {"semispace", "collector=semispace"},
    {"gen_semispace", "collector=gen_semispace"},
    {"mark_sweep", "collector=mark_sweep"},
    {"mark_compact", "collector=mark_compact"},
    {"concurrent_compact", "collector=concurrent_compact,uffd_sigbus=1"},
    {"concurrent_compact", "collector=concurrent_compact,uffd_sigbus=0"},
};

static int iterations(void) {
  const char *e = getenv("FH_TEST_CRITICAL_ITERS");
  int n = e ? atoi(e) : 0;
  return n > 0 ? n : 200;
}

/* Run scenario(cfg) in a child that must exit 0 within CHILD_SECONDS. */
static void run_isolated(int (*scenario)(void *), const config *cfg) {
  test_assert_child_ok(test_run_isolated(scenario, (void *)cfg, CHILD_SECONDS), cfg->spec);
}

/* A heap of cfg with the common types, the calling thread attached. */
static fh_heap *scenario_heap(const config *cfg, const char *heap_max, test_types *ty,
                              fh_thread **t) {
  char spec[256];
  snprintf(spec, sizeof spec, "%s,heap_max=%s", cfg->spec, heap_max);
  fh_heap *h = test_child_heap(spec);
  if (!h) return NULL;
  if (!test_register_types(h, ty)) {
    fprintf(stderr, "%s: types: %s\n", spec, fh_last_error());
    return NULL;
  }
  *t = fh_thread_attach(h);
  if (!*t) fprintf(stderr, "%s: attach: %s\n", spec, fh_last_error());
  return *t ? h : NULL;
}

/* ---- a collector thread ---------------------------------------------------- */

typedef struct collector_arg {
  fh_heap *h;
  const config *cfg;
  const test_types *ty;
  atomic_int stop;
  atomic_int failed;
  atomic_int collections;
} collector_arg;

static void *collector_loop(void *p) {
  collector_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  for (int i = 0; !atomic_load(&a->stop); i++) {
    for (int k = 0; k < 64; k++)
      if (!fh_alloc(t, a->ty->node, sizeof(tnode))) atomic_store(&a->failed, 1);
    if (fh_collect(t, test_collect_kind(a->cfg->collector, i)) != 0) {
      fprintf(stderr, "collector thread: %s\n", fh_last_error());
      atomic_store(&a->failed, 1);
    }
    atomic_fetch_add(&a->collections, 1);
  }
  fh_thread_detach(t);
  return NULL;
}

/* Wait (up to ~20 ms) until a collector has announced itself and waits for
 * critical sections to close: the moment a new section must not simply
 * open.  Returns whether it saw one. */
static int wait_gc_pending(fh_heap *h) {
  for (int i = 0; i < 2000; i++) {
    pthread_mutex_lock(&h->world_lock);
    int pending = h->gc_pending;
    pthread_mutex_unlock(&h->world_lock);
    if (pending) return 1;
    nanosleep(&(struct timespec){0, 10000}, NULL);
  }
  return 0;
}

#define BLOB_BYTES (3 * 4096 + 123) /* spans four pages */

static int blob_ok(const unsigned char *b, unsigned seed) {
  for (size_t i = 0; i < BLOB_BYTES; i++)
    if (b[i] != (unsigned char)(i * 7 + seed)) return 0;
  return 1;
}

/* Defects 5 and 6: begin while a collector is pending (it waits, the object
 * moves) and nested begin while a collector waits for this section. */
static int scenario_begin_while_collecting(void *arg) {
  const config *cfg = arg;
  test_types ty;
  fh_thread *t;
  fh_heap *h = scenario_heap(cfg, "64M", &ty, &t);
  SCENARIO_CHECK(h);
  unsigned char *blob = fh_alloc(t, ty.bytes, BLOB_BYTES);
  SCENARIO_CHECK(blob);
  for (size_t i = 0; i < BLOB_BYTES; i++) blob[i] = (unsigned char)(i * 7 + 5);
  fh_push_root(t, (void **)&blob);

  collector_arg a = {.h = h, .cfg = cfg, .ty = &ty};
  pthread_t th;
  SCENARIO_CHECK(pthread_create(&th, NULL, collector_loop, &a) == 0);
  int n = iterations(), waited = 0, nested_pending = 0, moved = 0;
  for (int i = 0; i < n; i++) {
    waited += wait_gc_pending(h);
    unsigned char *before = blob;
    unsigned char *p = fh_critical_begin(t, blob);
    SCENARIO_CHECK(p != NULL);
    moved += before != blob;
    /* blob is a root: the collectors updated it while begin waited. */
    SCENARIO_CHECK(p == blob);
    SCENARIO_CHECK(blob_ok(p, 5));
    SCENARIO_CHECK(fh_object_size(p) == BLOB_BYTES);
    /* A collector is (most likely) waiting for this section now; a nested
     * section must open anyway. */
    nested_pending += wait_gc_pending(h);
    unsigned char *q = fh_critical_begin(t, p);
    SCENARIO_CHECK(q == p);
    /* Allocation inside the section: no collection can run, none needed. */
    for (int k = 0; k < 32; k++) SCENARIO_CHECK(fh_alloc(t, ty.node, sizeof(tnode)));
    SCENARIO_CHECK(blob == p); /* nothing moved meanwhile */
    fh_critical_end(t, q);
    fh_critical_end(t, p);
    SCENARIO_CHECK(blob_ok(blob, 5));
    fh_safepoint(t);
  }
  atomic_store(&a.stop, 1);
  fh_enter_blocking(t);
  pthread_join(th, NULL);
  fh_leave_blocking(t);
  SCENARIO_CHECK(!atomic_load(&a.failed));
  SCENARIO_CHECK(blob_ok(blob, 5));
  fprintf(stderr, "%s: %d iterations, %d begins after a pending collection (%d moved the "
          "object), %d nested begins with one pending, %d collections\n",
          cfg->spec, n, waited, moved, nested_pending, atomic_load(&a.collections));
  /* The scenario must have exercised the waits it is about. */
  SCENARIO_CHECK(waited > 0 && nested_pending > 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

/* Seen (a): allocation inside a section runs past the trigger and fails
 * only when the heap has no room, with an error that says why. */
static int scenario_alloc_inside(void *arg) {
  const config *cfg = arg;
  test_types ty;
  fh_thread *t;
  /* 32 MiB for objects: semispace's heap_max covers its two halves. */
  fh_heap *h = scenario_heap(cfg, strstr(cfg->collector, "semispace") ? "64M" : "32M", &ty, &t);
  SCENARIO_CHECK(h);
  void *obj = fh_alloc(t, ty.bytes, 64);
  SCENARIO_CHECK(obj);
  fh_push_root(t, &obj);
  void *p = fh_critical_begin(t, obj);
  SCENARIO_CHECK(p == obj);
  /* 12 MiB of small objects: three times the 4 MiB first trigger. */
  size_t bytes = 0;
  while (bytes < (12u << 20)) {
    SCENARIO_CHECK(fh_alloc(t, ty.node, sizeof(tnode)));
    bytes += sizeof(tnode) + 8;
  }
  SCENARIO_CHECK(fh_alloc_nonmoving(t, ty.node, sizeof(tnode)));
  /* Then until the heap is really full. */
  while (fh_alloc(t, ty.bytes, 4000)) bytes += 4008;
  SCENARIO_CHECK(strstr(fh_last_error(), "critical section"));
  SCENARIO_CHECK(bytes > (20u << 20));
  SCENARIO_CHECK(p == obj);
  /* What stops the world is refused inside the section. */
  SCENARIO_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == -1 &&
                 strstr(fh_last_error(), "critical section"));
  SCENARIO_CHECK(fh_prefork(t) == -1 && strstr(fh_last_error(), "critical section"));
  SCENARIO_CHECK(fh_image_save(t, "/nonexistent/fh.img", &obj, 1) == -1 &&
                 strstr(fh_last_error(), "critical section"));
  fh_critical_end(t, p);
  /* Outside the section the garbage is collected and allocation works. */
  SCENARIO_CHECK(fh_collect(t, FH_COLLECT_DEFAULT) == 0);
  for (int i = 0; i < 1000; i++) SCENARIO_CHECK(fh_alloc(t, ty.bytes, 4000));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  return 0;
}

#define EACH_CONFIG(name, scenario)                                                   \
  static void name(void **state) {                                                    \
    (void)state;                                                                      \
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)                   \
      run_isolated(scenario, &configs[i]);                                            \
  }

EACH_CONFIG(test_begin_while_collecting, scenario_begin_while_collecting)
EACH_CONFIG(test_alloc_inside_critical, scenario_alloc_inside)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_begin_while_collecting),
      cmocka_unit_test(test_alloc_inside_critical),
  };
  return cmocka_run_group_tests_name("critical sections", tests, NULL, NULL);
}
