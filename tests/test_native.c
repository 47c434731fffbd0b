/* fh_malloc / fh_free: native memory that is never moved or swept, counted
 * by the heap (bringing the next collection forward, shown in fh_get_stats),
 * with bad frees refused. */
#include <string.h>

#include "support_heap.h"

#include "heap/heap.h"
#include "heap/sys.h"

#include <errno.h>
#include <pthread.h>

static const fh_space_stats *native_stats(fh_stats *s) {
  for (unsigned i = 0; i < s->nspaces; i++)
    if (strstr(s->spaces[i].name, "native")) return &s->spaces[i];
  return NULL;
}

static void test_malloc_free_and_stats(void **state) {
  (void)state;
  const char *specs[] = {"collector=mark_sweep,heap_max=16M", "collector=semispace,heap_max=16M"};
  for (int k = 0; k < 2; k++) {
    fh_heap *h = test_heap(specs[k]);
    fh_stats s;
    fh_get_stats(h, &s);
    const fh_space_stats *ns = native_stats(&s);
    assert_non_null(ns);
    assert_int_equal(ns->used, 0);
    char *p[100];
    for (int i = 0; i < 100; i++) {
      p[i] = fh_malloc(h, (size_t)i * 100);
      assert_non_null(p[i]);
      assert_int_equal((uintptr_t)p[i] % 16, 0);
      for (int j = 0; j < i * 100; j++) assert_int_equal(p[i][j], 0); /* zeroed */
      memset(p[i], i, (size_t)i * 100);
    }
    fh_get_stats(h, &s);
    ns = native_stats(&s);
    assert_true(ns->used >= 99 * 50 * 100);
    assert_true(ns->resident > 0);
    for (int i = 0; i < 100; i++)
      for (int j = 0; j < i * 100; j++) assert_int_equal((unsigned char)p[i][j], i);
    /* outside the heap's reservation: collections never look at it */
    for (int i = 0; i < 100; i++)
      assert_true((uintptr_t)p[i] - h->resv_begin >= h->resv_size);
    for (int i = 0; i < 100; i++) fh_free(h, p[i]);
    fh_get_stats(h, &s);
    assert_int_equal(native_stats(&s)->used, 0);
    fh_free(h, NULL); /* nothing */
    fh_heap_destroy(h);
  }
}

static void test_bad_frees_are_refused(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=16M");
  char *p = fh_malloc(h, 64);
  assert_non_null(p);
  fh_free(h, p + 16); /* not a block start */
  assert_non_null(strstr(fh_last_error(), "not an allocated block"));
  int local;
  fh_free(h, &local);
  assert_non_null(strstr(fh_last_error(), "not returned by fh_malloc"));
  fh_free(h, p);
  fh_free(h, p); /* twice */
  assert_non_null(strstr(fh_last_error(), "freed twice"));
  fh_stats s;
  fh_get_stats(h, &s);
  assert_int_equal(native_stats(&s)->used, 0);
  assert_null(fh_malloc(h, (size_t)1 << 40));
  assert_non_null(strstr(fh_last_error(), "fh_malloc"));
  assert_null(fh_malloc(NULL, 8));
  fh_heap_destroy(h);
}

/* Native memory survives every collection untouched, even when only a heap
 * object remembers it (as raw bytes the collectors never read as refs). */
static void test_survives_collections(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=16M,verify=1,hspace_min_interval_ms=0");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  char *buf = fh_malloc(h, 100000);
  memset(buf, 0x5a, 100000);
  /* a reference slot holding a native pointer: ignored by marking, by
   * compaction and by verification, since it is outside the heap */
  void *holder = fh_alloc(t, ty.array, 2 * sizeof(void *));
  fh_push_root(t, &holder);
  fh_write_ref(t, holder, &((void **)holder)[0], buf);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), 0);
  assert_ptr_equal(((void **)holder)[0], buf);
  for (int i = 0; i < 100000; i++) assert_int_equal((unsigned char)buf[i], 0x5a);
  fh_free(h, buf);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Heavy native allocation brings the next collection forward: with no
 * managed allocation in between, the first fh_alloc after 64 MiB of
 * fh_malloc collects. */
static void test_native_bytes_bring_collection_forward(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    fh_heap *h = test_heap(k ? "collector=semispace,heap_max=256M,tlab_size=4k"
                             : "collector=mark_sweep,heap_max=256M");
    test_types ty;
    test_register(h, &ty);
    fh_thread *t = fh_thread_attach(h);
    /* one managed allocation per native MiB: without the native bytes the
     * trigger (at least min_alloc_trigger = 4 MiB of managed bytes) is never reached */
    fh_stats s0, s1;
    fh_get_stats(h, &s0);
    for (int i = 0; i < 64; i++) {
      void *p = fh_malloc(h, 1 << 20);
      assert_non_null(p);
      fh_free(h, p); /* freed at once: the pressure still counts, as ART's does */
      for (int j = 0; j < 4096 / 48 + 1; j++) test_node(t, &ty, 1);
    }
    fh_get_stats(h, &s1);
    assert_true(s1.collections > s0.collections);
    fh_thread_detach(t);
    fh_heap_destroy(h);
  }
}

/* The native space is made by the first fh_malloc, not by fh_heap_create
 * (no reservation, no jemalloc arena before); until then it is listed,
 * empty, and refuses every free.  A first fh_malloc whose mapping fails
 * returns NULL with the error and leaves nothing behind: the next one
 * makes it.  Threads racing to the first fh_malloc all get memory. */
static void *first_mallocs(void *arg) {
  fh_heap *h = arg;
  for (int i = 0; i < 100; i++) {
    char *p = fh_malloc(h, 64);
    if (!p) return (void *)1;
    memset(p, 1, 64);
    fh_free(h, p);
  }
  return NULL;
}

static void test_made_on_first_use(void **state) {
  (void)state;
  fh_heap *h = test_heap("heap_max=16M");
  assert_int_equal(h->native_resv, 0);
  assert_int_equal(atomic_load(&h->native_made), 0);
  fh_stats s;
  fh_get_stats(h, &s);
  const fh_space_stats *ns = native_stats(&s);
  assert_non_null(ns);
  assert_int_equal(ns->used, 0);
  assert_int_equal(ns->resident, 0);
  int local;
  fh_free(h, &local);
  assert_non_null(strstr(fh_last_error(), "not returned by fh_malloc"));
  sys_fault_arm(SYS_MMAP, 1, 0, ENOMEM);
  assert_null(fh_malloc(h, 64));
  sys_fault_disarm();
  assert_non_null(strstr(fh_last_error(), "fh_malloc"));
  assert_int_equal(h->native_resv, 0);
  char *p = fh_malloc(h, 64);
  assert_non_null(p);
  assert_int_not_equal(h->native_resv, 0);
  fh_free(h, p);
  fh_get_stats(h, &s);
  assert_int_equal(native_stats(&s)->used, 0);
  fh_heap_destroy(h);

  for (int round = 0; round < 5; round++) {
    h = test_heap("heap_max=16M");
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, first_mallocs, h), 0);
    for (int i = 0; i < 4; i++) {
      void *r;
      pthread_join(th[i], &r);
      assert_null(r);
    }
    fh_get_stats(h, &s);
    assert_int_equal(native_stats(&s)->used, 0);
    fh_heap_destroy(h);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_free_and_stats),
      cmocka_unit_test(test_bad_frees_are_refused),
      cmocka_unit_test(test_survives_collections),
      cmocka_unit_test(test_native_bytes_bring_collection_forward),
      cmocka_unit_test(test_made_on_first_use),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
