/* Large reference arrays fixed after concurrent_compact's flip
 * (collectors/cc_large.h): mutators read and write such an array right
 * after the flip, while the GC worker is held back (every page they touch
 * is built on their fault), in both fault modes with verify=1; the large
 * object space stays as many VMAs as before; system calls of the flip
 * failing make it update the array in the pause; a pinned array is
 * updated in the pause and read(2) can write into it after the flip. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/sys.h"
#include "support_heap.h"
#include "uffd/uffd.h"

#define SLOTS ((size_t)128 << 10) /* 1 MiB of references: 257 pages */
#define MUTATORS 3

static test_types ty;

static fh_heap *large_heap(int sigbus) {
  char spec[256];
  snprintf(spec, sizeof spec,
           "collector=concurrent_compact,uffd_sigbus=%d,generational=0,heap_max=256M,"
           "min_alloc_trigger=200M,verify=1",
           sigbus);
  setenv("FH_MC_SLIDE", "0", 1); /* always flip (mc_policy.h), read when the state is made */
  fh_heap *h = test_heap(spec);
  assert_ptr_equal(h->collector, &concurrent_compact_collector);
  test_register(h, &ty);
  return h;
}

static void teardown_env(void) {
  unsetenv("FH_MC_SLIDE");
  unsetenv("FH_MC_WORKER_DELAY_MS");
}

/* arr[i] is a node with value i (and its check word), garbage between. */
static void **build_array(fh_thread *t, void ***root) {
  void **arr = fh_alloc(t, ty.array, SLOTS * sizeof(void *));
  assert_non_null(arr);
  *root = arr;
  fh_push_root(t, (void **)root);
  for (size_t i = 0; i < SLOTS; i++) {
    tnode *x = test_node(t, &ty, i);
    fh_write_ref(t, *root, &(*root)[i], x);
    if (i % 2) test_node(t, &ty, 0); /* garbage: the nodes move */
  }
  return *root;
}

static int array_ok(void **arr) {
  for (size_t i = 0; i < SLOTS; i++) {
    tnode *x = arr[i];
    if (!x || x->value != i || x->check != test_check(i)) return 0;
  }
  return 1;
}

typedef struct mut {
  fh_heap *h;
  void ***root;
  unsigned k;
  _Atomic int *go, *stop;
  int bad;
  size_t writes;
} mut;

/* Slots i with i % MUTATORS == k: read each (checked), replace every
 * fourth with a fresh node of the same value, from the end backwards so
 * that the mutators start on pages far from the header's. */
static void *mutator(void *p) {
  mut *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  assert_non_null(t);
  while (!atomic_load(a->go)) fh_safepoint(t);
  for (int round = 0; round < 3 && !atomic_load(a->stop); round++) {
    for (size_t i = a->k + MUTATORS * ((SLOTS - 1 - a->k) / MUTATORS);; i -= MUTATORS) {
      void **arr = *a->root;
      tnode *x = arr[i];
      if (!x || x->value != i || x->check != test_check(i)) a->bad = 1;
      if ((i / MUTATORS) % 4 == (unsigned)round) {
        tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
        if (!n) {
          a->bad = 1;
          break;
        }
        n->value = i;
        n->check = test_check(i);
        fh_write_ref(t, *a->root, &(*a->root)[i], n);
        a->writes++;
      }
      if (i % 256 == 0) fh_safepoint(t);
      if (i < MUTATORS) break;
    }
  }
  fh_thread_detach(t);
  return NULL;
}

static void mutators_after_flip(int sigbus) {
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1); /* the mutators' faults build the pages */
  fh_heap *h = large_heap(sigbus);
  fh_thread *t = fh_thread_attach(h);
  void **root;
  build_array(t, &root);
  large_object_space *los = &h->los;
  assert_true(los_contains(los, root));
  int vmas0 = -1;
  for (int cycle = 0; cycle < 3; cycle++) {
    _Atomic int go = 0, stop = 0;
    mut m[MUTATORS];
    pthread_t th[MUTATORS];
    for (unsigned k = 0; k < MUTATORS; k++) {
      m[k] = (mut){.h = h, .root = &root, .k = k, .go = &go, .stop = &stop};
      assert_int_equal(pthread_create(&th[k], NULL, mutator, &m[k]), 0);
    }
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_true(mc_phase_open(h));
    assert_int_equal(h->mc->large.last_objects, 1);
    assert_int_equal(h->mc->large.last_fallbacks, 0);
    assert_int_equal(h->mc->large.last_pages, SLOTS * sizeof(void *) / 4096);
    atomic_store(&go, 1);
    fh_enter_blocking(t);
    for (unsigned k = 0; k < MUTATORS; k++) pthread_join(th[k], NULL);
    fh_leave_blocking(t);
    fh_gc_wait(h);
    for (unsigned k = 0; k < MUTATORS; k++) {
      assert_false(m[k].bad);
      assert_true(m[k].writes > 0);
    }
    assert_true(array_ok(root));
    int vmas = fh_uffd_count_vmas((void *)los->space.begin, los->space.end - los->space.begin);
    if (cycle == 0) vmas0 = vmas;
    assert_int_equal(vmas, vmas0); /* registration and mremap leave no splits behind */
  }
  fh_stats st;
  fh_get_stats(h, &st);
  assert_true(st.uffd_faults > 0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  fh_dump(h, f);
  fclose(f);
  assert_non_null(strstr(text, "large reference arrays fixed after the flip, page by page: 3;"));
  free(text);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  teardown_env();
}

static void test_mutators_after_flip_sigbus(void **s) {
  (void)s;
  test_skip_without_uffd();
  mutators_after_flip(1);
}

static void test_mutators_after_flip_handler_thread(void **s) {
  (void)s;
  test_skip_without_uffd();
  mutators_after_flip(0);
}

/* The last call of `kind` in the flip pause fails (the flip's calls of that
 * kind, in order, end with cc_large_flip's): the array is updated in the
 * pause, intact, and the next cycle defers it again. */
static void fallback_when(sys_call kind) {
  fh_heap *h = large_heap(1);
  fh_thread *t = fh_thread_attach(h);
  void **root;
  build_array(t, &root);
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1); /* nothing after the pause counts */
  for (int i = 0; i < 2; i++) { /* the uffd and the tables exist from now on */
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    fh_gc_wait(h);
  }
  h->mc->worker_gate = 1;
  sys_fault_arm(kind, 0, 0, 0); /* count */
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  uint64_t n = sys_fault_calls(kind);
  sys_fault_disarm();
  assert_int_equal(h->mc->large.last_objects, 1);
  fh_gc_wait(h);
  assert_true(n > 0);
  sys_fault_arm(kind, n, 0, ENOMEM);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  uint64_t injected = sys_fault_injected();
  sys_fault_disarm();
  assert_int_equal(injected, 1);
  assert_int_equal(h->mc->large.last_objects, 0);
  assert_int_equal(h->mc->large.last_fallbacks, 1);
  assert_true(array_ok(root)); /* updated in the pause: no fault needed */
  fh_gc_wait(h);
  assert_true(array_ok(root));
  h->mc->worker_gate = 0;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(h->mc->large.last_objects, 1);
  fh_gc_wait(h);
  assert_true(array_ok(root));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  teardown_env();
}

static void test_fallback_mmap(void **s) {
  (void)s;
  test_skip_without_uffd();
  fallback_when(SYS_MMAP);
}

static void test_fallback_mremap(void **s) {
  (void)s;
  test_skip_without_uffd();
  fallback_when(SYS_MREMAP);
}

static void test_fallback_register(void **s) {
  (void)s;
  test_skip_without_uffd();
  fallback_when(SYS_UFFD_IOCTL);
}

/* A pinned array stays mapped: updated in the pause, and the kernel can
 * write into its last page right after the flip (in SIGBUS mode a missing
 * page would make read(2) fail with EFAULT).  An unpinned one beside it is
 * deferred. */
static void test_read_into_pinned_after_flip(void **s) {
  (void)s;
  test_skip_without_uffd();
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1);
  fh_heap *h = large_heap(1);
  fh_thread *t = fh_thread_attach(h);
  void **root, **other;
  build_array(t, &root);
  build_array(t, &other);
  assert_int_equal(fh_pin(t, root), 0);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  for (int cycle = 0; cycle < 2; cycle++) {
    assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
    assert_true(mc_phase_open(h));
    assert_int_equal(h->mc->large.last_objects, 1); /* `other` only */
    /* Slot SLOTS-1 := the reference in slot 0 (an address after the flip),
     * by the kernel, into the pinned array's last page. */
    void *v = root[0];
    assert_int_equal(write(fds[1], &v, sizeof v), (ssize_t)sizeof v);
    void *keep = root[SLOTS - 1];
    assert_int_equal(read(fds[0], &root[SLOTS - 1], sizeof v), (ssize_t)sizeof v);
    assert_ptr_equal(root[SLOTS - 1], v);
    root[SLOTS - 1] = keep;
    fh_gc_wait(h);
    assert_true(array_ok(root));
    assert_true(array_ok(other));
  }
  close(fds[0]);
  close(fds[1]);
  fh_unpin(t, root);
  fh_pop_roots(t, 2);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  teardown_env();
}

/* The from-space ledger is planned after the pause (from_ledger.h): pages
 * the mutator builds before the plan (here: all, the plan held back) are
 * noted, and the planner drops their readers, so from-space still goes
 * back during the phase.  Without that half, no page holding a live word
 * would ever be ready. */
static void test_ledger_planned_after_the_pause(void **s) {
  (void)s;
  test_skip_without_uffd();
  /* The plan waits long enough for a sanitizer build's walk over the ring
   * to finish first: pages built after the plan would go back in 8 MiB
   * batches only (this heap has fewer pages), and the count below would
   * miss them. */
  setenv("FH_MC_WORKER_DELAY_MS", "gate", 1);
  setenv("FH_MC_LEDGER_DELAY_MS", "600", 1);
  fh_heap *h = large_heap(1);
  fh_thread *t = fh_thread_attach(h);
  test_ring g;
  test_ring_build(t, &ty, &g, 60000, 1000000, 1);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  from_ledger *l = &h->mc->ledger;
  assert_true(mc_phase_open(h));
  size_t npages = l->npages;
  assert_int_equal(atomic_load(&l->planned), 0); /* left to the releaser */
  for (size_t i = 0; i < g.n; i++) { /* builds every page, before the plan */
    tnode *x = g.arr[i];
    assert_int_equal(x->value, i);
    assert_ptr_equal(x->next, g.arr[(i + 1) % g.n]);
  }
  /* The worker waits behind its gate until fh_gc_wait: the plan (the
   * releaser's, FH_MC_LEDGER_DELAY_MS after the pause) comes first, during
   * the phase, as it would with a worker that gets no CPU. */
  for (int i = 0; i < 20000 && !atomic_load(&l->planned); i++) usleep(1000);
  assert_true(atomic_load(&l->planned));
  fh_gc_wait(h);
  size_t released = atomic_load(&l->released_pages);
  assert_true(released * 4 >= npages * 3);
  for (size_t i = 0; i < g.n; i++) assert_int_equal(((tnode *)g.arr[i])->check, test_check(i));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  unsetenv("FH_MC_LEDGER_DELAY_MS");
  teardown_env();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutators_after_flip_sigbus),
      cmocka_unit_test(test_mutators_after_flip_handler_thread),
      cmocka_unit_test(test_fallback_mmap),
      cmocka_unit_test(test_fallback_mremap),
      cmocka_unit_test(test_fallback_register),
      cmocka_unit_test(test_read_into_pinned_after_flip),
      cmocka_unit_test(test_ledger_planned_after_the_pause),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
