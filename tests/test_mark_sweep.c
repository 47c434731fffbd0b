/* Mark-sweep on malloc spaces (collector=mark_sweep): allocation goes to
 * the main malloc space, a collection frees exactly the unreachable objects
 * of the main malloc space and the non-moving space, statistics follow, and
 * several mutator threads can allocate and mutate under verify=1. */
#include <pthread.h>
#include <string.h>

#include "support_heap.h"

#include "collectors/collector.h"
#include "heap/heap.h"
#include "heap/object.h"

#define MS_SPEC "collector=mark_sweep,heap_max=64M,non_moving_max=16M"

static int in_main(fh_heap *h, const void *p) {
  return space_contains(&heap_main_malloc(h)->space, p);
}

static void test_alloc_lands_in_main_malloc_space(void **state) {
  (void)state;
  fh_heap *h = test_heap(MS_SPEC);
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *n = test_node(t, &ty, 7);
  assert_true(in_main(h, n));
  assert_int_equal(((uintptr_t)n - 8) % 16, 0);
  assert_int_equal(fh_object_size(n), sizeof(tnode));
  assert_int_equal(fh_object_type(n), ty.node);
  assert_null(n->next); /* zeroed payload */
  /* Large and odd sizes too (100000 bytes is a large object: its own
   * pages in the large-object space). */
  void *big = fh_alloc(t, ty.bytes, 100000);
  assert_non_null(big);
  assert_true(los_contains(&h->los, big));
  assert_int_equal(fh_object_size(big), 100000);
  for (size_t i = 0; i < 100000; i++) assert_int_equal(((unsigned char *)big)[i], 0);
  /* The inline path never bump-allocates on this heap. */
  assert_int_equal(bump_space_used(&h->bump[h->active]), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

typedef struct count_ctx {
  fh_heap *h;
  size_t objects, dead_seen;
  uint64_t dead_marker;
} count_ctx;

static void count_obj(void *obj, void *ctx) {
  count_ctx *c = ctx;
  c->objects++;
  if (fh_object_size(obj) == sizeof(tnode) && ((tnode *)obj)->value == c->dead_marker)
    c->dead_seen++;
}

static size_t count_objects(fh_heap *h, fh_space *s, uint64_t dead_marker, size_t *dead) {
  count_ctx c = {h, 0, 0, dead_marker};
  s->ops->walk(s, count_obj, &c);
  if (dead) *dead = c.dead_seen;
  return c.objects;
}

/* Every dead object is freed and no live one: a list of live nodes (some in
 * the non-moving space) interleaved with garbage of many sizes. */
static void test_sweep_frees_exactly_the_dead(void **state) {
  (void)state;
  /* Stop-the-world marking: the reuse check at the end counts on the
   * triggered cycles freeing everything dead, which a concurrent cycle
   * does not (what is allocated while it marks lives until the next). */
  fh_heap *h = test_heap(MS_SPEC ",verify=1,concurrent_mark=0");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  const uint64_t DEAD = 0xdeadull;
  size_t live = 0, dead = 0;
  for (uint64_t i = 0; i < 20000; i++) {
    tnode *n = (i % 7 == 3) ? fh_alloc_nonmoving(t, ty.node, sizeof(tnode)) : test_node(t, &ty, i);
    assert_non_null(n);
    n->value = i;
    n->check = test_check(i);
    fh_write_ref(t, n, (void **)&n->next, head);
    head = n;
    live++;
    /* garbage: a dead node and a dead byte array of a varying size */
    tnode *g = test_node(t, &ty, DEAD);
    fh_write_ref(t, g, (void **)&g->next, head); /* dead -> live is fine */
    assert_non_null(fh_alloc(t, ty.bytes, (i * 37) % 3000));
    dead += 2;
  }
  malloc_space *ms = heap_main_malloc(h);
  fh_stats before;
  fh_get_stats(h, &before);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  size_t dead_left = 1;
  size_t objs = count_objects(h, &ms->space, DEAD, &dead_left);
  size_t nm_objs = count_objects(h, &h->non_moving.space, DEAD, NULL);
  assert_int_equal(dead_left, 0);
  assert_int_equal(objs + nm_objs, live); /* every live one kept, nothing else */
  /* Contents intact, in order. */
  uint64_t expect = 19999;
  for (tnode *n = head; n; n = n->next, expect--) {
    assert_int_equal(n->value, expect);
    assert_int_equal(n->check, test_check(expect));
  }
  assert_int_equal(expect, (uint64_t)-1);
  fh_stats after;
  fh_get_stats(h, &after);
  assert_true(after.collections > before.collections);
  assert_true(after.bytes_freed > before.bytes_freed);
  assert_int_equal(after.bytes_moved, before.bytes_moved);
  /* used equals the sum of the survivors' sizes */
  assert_int_equal(atomic_load(&ms->used), objs * malloc_object_bytes(sizeof(tnode)));
  /* freed memory is reused: allocating the same garbage again does not grow the range much */
  uintptr_t frontier = malloc_space_frontier(ms);
  for (int i = 0; i < 20000; i++) assert_non_null(fh_alloc(t, ty.bytes, (i * 37) % 3000));
  assert_true(malloc_space_frontier(ms) - frontier < (8u << 20));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Triggered collections sweep after their pause, the mutator a few words
 * before each 4 KiB it allocates (sweep as you allocate) and the sweeper
 * thread from the other end: a live list interleaved with garbage stays
 * intact through many such sweeps, checked while they are usually still
 * pending (most of the 40 checks, when tried), and an explicit collection
 * at the end finds exactly the live bytes. */
static void test_sweep_as_you_allocate_keeps_the_live(void **state) {
  (void)state;
  /* 512K: a concurrent cycle's remark restarts the trigger's count, so
   * 1M gave only two cycles of this run's 3.5 MB. */
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=32M,min_alloc_trigger=512K");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  malloc_space *ms = heap_main_malloc(h);
  enum { LIVE = 4000 };
  uint64_t made = 0;
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < 2000; i++) {
      if (made < LIVE && i % 20 == 0) {
        tnode *n = test_node(t, &ty, made++);
        fh_write_ref(t, n, (void **)&n->next, head);
        head = n;
      }
      /* garbage of a few sizes, most of it nodes like GCBench's */
      assert_non_null(i % 4 ? (void *)test_node(t, &ty, 0xdeadull)
                            : fh_alloc(t, ty.bytes, (size_t)(i % 200)));
    }
    uint64_t expect = made - 1;
    for (tnode *n = head; n; n = n->next, expect--) {
      assert_int_equal(n->value, expect);
      assert_int_equal(n->check, test_check(expect));
    }
    assert_int_equal(expect, (uint64_t)-1);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections >= 3);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_false(malloc_space_sweep_pending(ms));
  assert_int_equal(atomic_load(&ms->used), made * malloc_object_bytes(sizeof(tnode)));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Garbage alone drives collections: allocating 20x the heap with a small
 * live set must succeed, and the heap stays small. */
static void test_triggered_collections_reclaim(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=16M");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  void *keep = NULL;
  fh_push_root(t, &keep);
  keep = fh_alloc(t, ty.array, 64 * sizeof(void *));
  for (int i = 0; i < 400000; i++) {
    void *o = fh_alloc(t, ty.bytes, 16 + (size_t)(i % 1500));
    assert_non_null(o);
    if (i % 1000 == 0) fh_write_ref(t, keep, &((void **)keep)[(i / 1000) % 64], o);
  }
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections >= 5);
  assert_true(heap_used_bytes(h) < (16u << 20));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* ---- runs and a deterministic trigger (issue 17 point 5) ---- */

static void count_cause(fh_heap *h, const fh_gc_event *e, void *user) {
  (void)h;
  unsigned *n = user; /* [0]: triggered, [1]: allocation failures, [2]: other */
  if (!e->end) return;
  if (!strcmp(e->cause, "allocation")) n[0]++;
  else if (!strcmp(e->cause, "allocation failure")) n[1]++;
  else n[2]++;
}

/* A GCBench-like run on a fresh heap near its limit (live ~60% of
 * heap_max, as Whippet's mt-gcbench at 2x): how many collections it took,
 * by cause. */
static void churn(unsigned causes[3]) {
  /* Stop-the-world marking: a concurrent cycle's length depends on the
   * scheduler, and near the limit mutators can fill the heap while it
   * marks (an allocation failure finishes it). */
  fh_heap *h =
      test_heap("collector=mark_sweep,heap_max=6M,min_alloc_trigger=256K,concurrent_mark=0");
  test_types ty;
  test_register(h, &ty);
  fh_set_gc_callback(h, count_cause, causes);
  fh_thread *t = fh_thread_attach(h);
  tnode *keep[256] = {0}, *old = NULL;
  for (int i = 0; i < 256; i++) fh_push_root(t, (void **)&keep[i]);
  fh_push_root(t, (void **)&old);
  /* 3.4 MiB that stays: the trigger is capped by what heap_max leaves. */
  for (uint64_t i = 0; i < 70000; i++) {
    tnode *n = test_node(t, &ty, i);
    fh_write_ref(t, n, (void **)&n->next, old);
    old = n;
  }
  for (uint64_t i = 0; i < 600000; i++) {
    tnode *n = test_node(t, &ty, i);
    assert_non_null(n);
    /* A sliding window of live lists (~3.5 MiB), the rest garbage. */
    int slot = (int)(i % 256);
    if (i % 3 == 0) {
      if ((i / 256) % 64 == 0) keep[slot] = NULL;
      fh_write_ref(t, n, (void **)&n->next, keep[slot]);
      keep[slot] = n;
    }
    if (i % 5 == 0) assert_non_null(fh_alloc(t, ty.bytes, (size_t)(i % 96)));
  }
  fh_pop_roots(t, 257);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

/* Collections of a single-threaded program come from the allocation
 * trigger alone, and so do not depend on how far the background sweeper
 * got: `used` drops to the marked bytes in the pause, so the room an
 * allocation sees is the same in every run.  Same count three times, no
 * "allocation failure" collection. */
static void test_trigger_is_deterministic(void **state) {
  (void)state;
  unsigned first[3] = {0};
  churn(first);
  assert_true(first[0] >= 10);
  assert_int_equal(first[1], 0);
  for (int run = 0; run < 2; run++) {
    unsigned again[3] = {0};
    churn(again);
    assert_int_equal(again[0], first[0]);
    assert_int_equal(again[1], 0);
  }
}

/* Small objects come from runs: an object's bytes are carved by the heap,
 * not jemalloc; a run whose objects died is reused (its holes) before
 * jemalloc is asked for more, and what marking found live is never
 * overwritten (verify=1 also checks `used` after every sweep). */
static void test_runs_reuse_holes(void **state) {
  (void)state;
  fh_heap *h = test_heap("collector=mark_sweep,heap_max=64M,verify=1");
  test_types ty;
  test_register(h, &ty);
  fh_thread *t = fh_thread_attach(h);
  malloc_space *ms = heap_main_malloc(h);
  tnode *head = NULL;
  fh_push_root(t, (void **)&head);
  enum { N = 60000 };
  for (uint64_t i = 0; i < N; i++) {
    tnode *n = test_node(t, &ty, i);
    if (i % 4 == 0) {
      fh_write_ref(t, n, (void **)&n->next, head);
      head = n;
    }
  }
  size_t runs = atomic_load(&ms->runs);
  assert_true(runs >= N * malloc_object_bytes(sizeof(tnode)) / MS_RUN_BYTES);
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  uintptr_t frontier = malloc_space_frontier(ms);
  /* Three quarters died: as many objects again fit in their holes. */
  for (uint64_t i = 0; i < N / 2; i++) assert_non_null(test_node(t, &ty, 0xdeadull));
  assert_true(atomic_load(&ms->runs) <= runs);
  assert_int_equal(malloc_space_frontier(ms), frontier);
  uint64_t expect = N - 4;
  for (tnode *n = head; n; n = n->next, expect -= 4) {
    assert_int_equal(n->value, expect);
    assert_int_equal(n->check, test_check(expect));
  }
  assert_int_equal(expect, (uint64_t)-4);
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
}

static void test_mark_sweep_refuses_moving_kinds(void **state) {
  (void)state;
  fh_heap *h = test_heap(MS_SPEC);
  fh_thread *t = fh_thread_attach(h);
  assert_int_equal(fh_collect(t, FH_COLLECT_SEMISPACE), -1);
  assert_non_null(strstr(fh_last_error(), "malloc spaces"));
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  /* A semi-space heap has no malloc spaces to compact, but can mark-sweep. */
  h = test_heap("collector=semispace,heap_max=16M,verify=1");
  test_types ty;
  test_register(h, &ty);
  t = fh_thread_attach(h);
  tnode *root = test_node(t, &ty, 1);
  fh_push_root(t, (void **)&root);
  tnode *nm = fh_alloc_nonmoving(t, ty.node, sizeof(tnode));
  fh_write_ref(t, root, (void **)&root->next, nm);
  for (int i = 0; i < 1000; i++) test_node(t, &ty, 99);
  assert_int_equal(fh_collect(t, FH_COLLECT_HSPACE_COMPACT), -1);
  assert_non_null(strstr(fh_last_error(), "mark_sweep"));
  assert_int_equal(fh_collect(t, FH_COLLECT_MARK_SWEEP), 0);
  assert_ptr_equal(root->next, nm);
  assert_true(h->non_moving.space.ops->is_object(&h->non_moving.space, nm));
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  /* hspace_compact as background needs mark_sweep */
  fh_options o;
  fh_options_init(&o);
  assert_int_equal(fh_options_parse(&o, "collector=semispace,background_collector=hspace_compact"), 0);
  assert_null(fh_heap_create(&o));
  assert_non_null(strstr(fh_last_error(), "needs collector=mark_sweep"));
}

/* Several mutators build and drop lists, share a global root, collect
 * explicitly now and then; verify=1 checks every reference each time. */
#define NTHREADS 4
typedef struct stress_arg {
  fh_heap *h;
  const test_types *ty;
  void **shared;
  int id;
  int explicit_kind;
} stress_arg;

static void *stress_thread(void *p) {
  stress_arg *a = p;
  fh_thread *t = fh_thread_attach(a->h);
  tnode *mine = NULL;
  fh_push_root(t, (void **)&mine);
  for (int round = 0; round < 30; round++) {
    mine = NULL;
    for (uint64_t i = 0; i < 2000; i++) {
      tnode *n = test_node(t, a->ty, (uint64_t)a->id << 32 | i);
      fh_write_ref(t, n, (void **)&n->next, mine);
      /* a global root shared by the threads: atomic accesses (the collector
       * reads it with the world stopped, ordered by the handshake).  Another
       * thread's new object is published with release and read with
       * acquire, as any embedder must: verify=1's barrier reads its header. */
      fh_write_ref(t, n, (void **)&n->other, __atomic_load_n(a->shared, __ATOMIC_ACQUIRE));
      mine = n;
      if (i % 97 == 0) fh_alloc(t, a->ty->bytes, 5000); /* garbage */
      if (i % 500 == 0) __atomic_store_n(a->shared, (void *)n, __ATOMIC_RELEASE);
    }
    uint64_t expect = 1999;
    for (tnode *n = mine; n; n = n->next, expect--) {
      if (n->value != ((uint64_t)a->id << 32 | expect) || n->check != test_check(n->value))
        fail_msg("thread %d: list corrupted at %llu", a->id, (unsigned long long)expect);
    }
    if (round % 5 == a->id % 5 && fh_collect(t, a->explicit_kind) < 0)
      fail_msg("thread %d: collection failed: %s", a->id, fh_last_error());
  }
  fh_pop_roots(t, 1);
  fh_thread_detach(t);
  return NULL;
}

void run_stress(const char *spec, int explicit_kind);
void run_stress(const char *spec, int explicit_kind) {
  fh_heap *h = test_heap(spec);
  static test_types ty;
  test_register(h, &ty);
  static void *shared;
  shared = NULL;
  fh_root_add(h, &shared);
  pthread_t th[NTHREADS];
  stress_arg args[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    args[i] = (stress_arg){h, &ty, &shared, i, explicit_kind};
    pthread_create(&th[i], NULL, stress_thread, &args[i]);
  }
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  fh_stats s;
  fh_get_stats(h, &s);
  assert_true(s.collections > 0);
  fh_root_remove(h, &shared);
  fh_heap_destroy(h);
}

static void test_multithreaded_stress(void **state) {
  (void)state;
  run_stress("collector=mark_sweep,heap_max=32M,verify=1,min_alloc_trigger=2M", FH_COLLECT_MARK_SWEEP);
}

/* The same mutators, with explicit homogeneous compactions moving every
 * object under them between rounds (and collections triggered by
 * allocation in between). */
static void test_multithreaded_stress_with_compaction(void **state) {
  (void)state;
  run_stress("collector=mark_sweep,heap_max=32M,verify=1,min_alloc_trigger=2M,"
             "hspace_min_interval_ms=0", FH_COLLECT_HSPACE_COMPACT);
}

/* Without verify=1 triggered collections sweep on the sweeper thread after
 * their pause, so explicit compactions and collections meet sweeps still
 * running (they wait for them); the lists check themselves. */
static void test_multithreaded_stress_concurrent_sweep(void **state) {
  (void)state;
  run_stress("collector=mark_sweep,heap_max=32M,min_alloc_trigger=1M,hspace_min_interval_ms=0",
             FH_COLLECT_HSPACE_COMPACT);
  run_stress("collector=mark_sweep,heap_max=32M,min_alloc_trigger=1M", FH_COLLECT_MARK_SWEEP);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_lands_in_main_malloc_space),
      cmocka_unit_test(test_sweep_frees_exactly_the_dead),
      cmocka_unit_test(test_sweep_as_you_allocate_keeps_the_live),
      cmocka_unit_test(test_triggered_collections_reclaim),
      cmocka_unit_test(test_mark_sweep_refuses_moving_kinds),
      cmocka_unit_test(test_trigger_is_deterministic),
      cmocka_unit_test(test_runs_reuse_holes),
      cmocka_unit_test(test_multithreaded_stress),
      cmocka_unit_test(test_multithreaded_stress_with_compaction),
      cmocka_unit_test(test_multithreaded_stress_concurrent_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
