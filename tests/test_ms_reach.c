/* Mark-sweep reachability (collector=mark_sweep): every unreachable object
 * is freed and no reachable one, through every kind of root and through the
 * non-moving space; deep structures do not recurse; the allocation trigger
 * keeps the heap bounded; collections the heap cannot run are refused. */
#include <pthread.h>
#include <string.h>

#include "heap/heap.h"
#include "heap/object.h"
#include "support_heap.h"

static void *global_root;

static void scan_one(fh_visit_fn visit, void *ctx, void *user) { visit((void **)user, ctx); }

static int is_object(fh_heap *h, void *p) {
  malloc_space *m = heap_main_malloc(h);
  if (space_contains(&m->space, p)) return m->space.ops->is_object(&m->space, p);
  return h->non_moving.space.ops->is_object(&h->non_moving.space, p);
}

static void test_sweep_frees_exactly_the_dead(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  enum { N = 6000 };
  /* Every object's raw address is remembered in native memory the
   * collector ignores, so we can ask afterwards whether it still exists. */
  void **all = fh_malloc(h, N * sizeof(void *));
  uint8_t *live = fh_malloc(h, N);
  assert_non_null(all);
  assert_non_null(live);
  /* An array rooted on the thread's stack holds every 3rd node; node i
   * with i % 3 == 1 hangs off node i-1 (reachable through a reference);
   * i % 3 == 2 is garbage, except every 30th, which hangs off a pinned
   * non-moving object reachable only from a global root; every 50th is
   * reachable only through the embedder's scanner. */
  void **arr = fh_alloc(t, ty.array, (N / 3) * sizeof(void *));
  fh_push_root(t, (void **)&arr);
  tnode *pinned = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  global_root = pinned;
  fh_root_add(h, &global_root);
  void *scanned = NULL;
  fh_set_root_scanner(h, scan_one, &scanned);
  tnode *nm_garbage = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  tnode *prev = NULL;
  for (int i = 0; i < N; i++) {
    tnode *n = test_node(t, &ty, (uint64_t)i);
    all[i] = n;
    if (i % 3 == 0) {
      fh_write_ref(t, arr, &arr[i / 3], n);
      live[i] = 1;
    } else if (i % 3 == 1) {
      fh_write_ref(t, prev, (void **)&prev->next, n);
      live[i] = 1;
    } else if (i % 30 == 2) {
      fh_write_ref(t, n, (void **)&n->next, pinned->next);
      fh_write_ref(t, pinned, (void **)&pinned->next, n);
      live[i] = 1;
    } else if (i % 50 == 5) {
      fh_write_ref(t, n, (void **)&n->other, scanned);
      scanned = n;
      live[i] = 1;
    } else {
      /* garbage that points at live objects must not keep them... or
       * itself alive */
      fh_write_ref(t, n, (void **)&n->other, prev);
    }
    prev = n;
  }
  fh_write_ref(t, nm_garbage, (void **)&nm_garbage->next, all[2]);
  fh_stats before, after;
  fh_get_stats(h, &before);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  fh_get_stats(h, &after);
  size_t live_bytes = 0, dead_bytes = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(is_object(h, all[i]), live[i]);
    if (live[i]) {
      tnode *n = all[i];
      assert_int_equal(n->value, (uint64_t)i);
      assert_int_equal(n->check, test_check((uint64_t)i));
      live_bytes += malloc_object_bytes(sizeof(tnode));
    } else {
      dead_bytes += malloc_object_bytes(sizeof(tnode));
    }
  }
  /* nothing moved: the array still holds the same addresses */
  for (int i = 0; i < N; i += 3) assert_ptr_equal(arr[i / 3], all[i]);
  assert_true(is_object(h, pinned));
  assert_false(is_object(h, nm_garbage));
  assert_true(after.bytes_freed - before.bytes_freed >=
              dead_bytes + non_moving_object_bytes(sizeof(tnode)));
  /* The root array is in the malloc space unless it is a large object. */
  assert_int_equal(malloc_space_used(heap_main_malloc(h)),
                   live_bytes + (los_contains(&h->los, arr)
                                     ? 0 : malloc_object_bytes((N / 3) * sizeof(void *))));
  assert_true(after.collections == before.collections + 1);
  fh_root_remove(h, &global_root);
  fh_set_root_scanner(h, NULL, NULL);
  fh_pop_roots(t, 1);
  fh_free(h, all);
  fh_free(h, live);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_deep_list_does_not_recurse(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=512M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  enum { N = 2000000 };
  for (uint64_t i = 0; i < N; i++) {
    tnode *n = fh_alloc(t, ty.node, sizeof(tnode));
    assert_non_null(n);
    n->value = i;
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
  }
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  uint64_t count = 0, expect = N;
  for (tnode *n = head; n; n = n->next) assert_int_equal(n->value, --expect), count++;
  assert_int_equal(count, N);
  head = NULL;
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(malloc_space_used(heap_main_malloc(h)), 0);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_trigger_bounds_the_heap(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,min_alloc_trigger=4M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep = test_node(t, &ty, 42);
  fh_push_root(t, (void **)&keep);
  /* 400 MiB of garbage through a 64 MiB heap: collections must run, free
   * the garbage, and the space must reuse its memory. */
  for (int i = 0; i < 400 * 1024; i++) assert_non_null(fh_alloc(t, ty.bytes, 1000));
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections >= 10);
  assert_true(s.bytes_freed >= (uint64_t)300 << 20);
  assert_int_equal(keep->value, 42);
  assert_true(malloc_space_resident(heap_main_malloc(h)) < ((size_t)32 << 20));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_refused_collections(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=16M");
  fh_thread *t = fh_thread_attach(h);
  /* bump-space collectors know nothing of malloc spaces */
  assert_int_equal(fh_collect(t, FH_COLLECT_SEMISPACE), -1);
  assert_non_null(strstr(fh_last_error(), "mark_sweep"));
  fh_thread_detach(t);
  fh_heap_destroy(h);

  h = test_heap("collector=semispace,heap_max=16M");
  t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), -1);
  assert_non_null(strstr(fh_last_error(), "collector=mark_sweep"));
  fh_thread_detach(t);
  fh_heap_destroy(h);

  /* homogeneous compaction as the background collector of a heap without
   * malloc spaces is refused at creation */
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "collector=semispace,background_collector=hspace_compact"),
                   0);
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "mark_sweep"));
}

/* Triggered collections sweep the main malloc space on a sweeper thread
 * while the mutators run.  Objects allocated during that sweep (some into
 * regions it has just freed) must survive it, and dead ones must all be
 * gone once the phase ends.  Three threads keep rings of checked lists
 * alive and replace them continually, so a wrongly freed object is reused
 * by a later allocation and its check value breaks. */
typedef struct sweep_arg {
  fh_heap *h;
  const test_types *ty;
  int id;
  int errors;
} sweep_arg;

static void *concurrent_sweep_thread(void *p) {
  sweep_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  enum { RING = 8, LEN = 300 };
  void **ring = NULL;
  fh_push_root(t, (void **)&ring);
  ring = fh_alloc(t, a->ty->array, RING * sizeof(void *));
  for (int round = 0; round < 400; round++) {
    tnode *head = NULL;
    fh_push_root(t, (void **)&head);
    for (int i = 0; i < LEN; i++) {
      uint64_t v = (uint64_t)a->id << 40 | (uint64_t)round << 16 | (uint64_t)i;
      tnode *n = test_node(t, a->ty, v);
      fh_write_ref(t, n, (void **)&n->next, head);
      head = n;
      fh_alloc(t, a->ty->bytes, 64 + (size_t)(i * 13 % 900)); /* garbage */
    }
    fh_write_ref(t, ring, &ring[round % RING], head);
    fh_pop_roots(t, 1);
    /* check every list still in the ring */
    for (int k = 0; k < RING && k <= round; k++) {
      int len = 0;
      for (tnode *n = ring[k]; n; n = n->next, len++)
        if (n->check != test_check(n->value) || (n->value >> 40) != (uint64_t)a->id) a->errors++;
      if (len != LEN) a->errors++;
    }
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

static void test_concurrent_sweep(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,min_alloc_trigger=1M");
  static test_types ty;
  test_register(h, &ty);
  enum { NT = 3 };
  pthread_t th[NT];
  sweep_arg args[NT];
  for (int i = 0; i < NT; i++) {
    args[i] = (sweep_arg){h, &ty, i + 1, 0};
    assert_int_equal(pthread_create(&th[i], NULL, concurrent_sweep_thread, &args[i]), 0);
  }
  for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < NT; i++) assert_int_equal(args[i].errors, 0);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections >= 10);
  /* Once the last sweep ends, nothing is left but garbage of no thread: a
   * final explicit collection frees everything. */
  fh_gc_wait(h);
  fh_thread *t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_int_equal(malloc_space_used(heap_main_malloc(h)), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Memory freed by a sweep and handed out again reads as zero, for small
 * payloads (zeroed by the heap) and large ones (MALLOCX_ZERO). */
static void test_reused_memory_is_zeroed(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  static const size_t sizes[] = {0, 1, 7, 8, 24, 100, 256, 257, 1000, 5000, 70000};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 3000; i++) {
      size_t n = sizes[i % NS];
      unsigned char *o = fh_alloc(t, ty.bytes, n);
      assert_non_null(o);
      for (size_t k = 0; k < n; k++)
        if (o[k]) fail_msg("round %d: byte %zu of a fresh %zu-byte object is %#x", round, k, n, o[k]);
      memset(o, 0xA5, n); /* garbage for the next round to reuse */
    }
    assert_int_equal(fh_collect(t, round % 2 ? FH_COLLECT_MARK_SWEEP : FH_COLLECT_DEFAULT), 0);
  }
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sweep_frees_exactly_the_dead),
      cmocka_unit_test(test_deep_list_does_not_recurse),
      cmocka_unit_test(test_trigger_bounds_the_heap),
      cmocka_unit_test(test_refused_collections),
      cmocka_unit_test(test_concurrent_sweep),
      cmocka_unit_test(test_reused_memory_is_zeroed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
